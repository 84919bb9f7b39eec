using MathNet.Numerics.LinearAlgebra;

namespace RebalanceMesh.Risk.Core;

/// <summary>A relative price move of one instrument (empty id: every instrument), e.g. −0.3 for −30 %.</summary>
public sealed record PriceShock(string InstrumentId, double RelativeChange);

/// <summary>P&amp;L of a scenario, in total and per position.</summary>
public sealed record StressOutcome(string Name, double Pnl, IReadOnlyList<double> PositionPnl, double NetValueAfter);

/// <summary>A historical window and the P&amp;L today's positions would have made over it.</summary>
public sealed record HistoricalWindow(int StartIndex, int EndIndex, double Pnl, IReadOnlyList<double> PositionPnl);

/// <summary>Stress tests of a linear portfolio (positions as currency values).</summary>
public static class StressTesting
{
    /// <summary>The relative move of each instrument under a set of shocks: a specific shock wins over an all-instrument one.</summary>
    public static Func<string, double> MoveOf(IReadOnlyList<PriceShock> shocks)
    {
        var all = shocks.LastOrDefault(s => s.InstrumentId.Length == 0)?.RelativeChange ?? 0;
        var specific = shocks.Where(s => s.InstrumentId.Length > 0).GroupBy(s => s.InstrumentId).ToDictionary(g => g.Key, g => g.Last().RelativeChange, StringComparer.Ordinal);
        return id => specific.TryGetValue(id, out var move) ? move : all;
    }

    /// <summary>Revalues each linear position under the shocks.</summary>
    public static StressOutcome ApplyShocks(string name, IReadOnlyList<string> instruments, IReadOnlyList<double> values, double cash, IReadOnlyList<PriceShock> shocks)
    {
        var move = MoveOf(shocks);
        var pnl = instruments.Select((id, i) => values[i] * move(id)).ToArray();
        var total = pnl.Sum();
        return new StressOutcome(name, total, pnl, values.Sum() + cash + total);
    }

    /// <summary>
    /// Correlation breakdown: every correlation pushed toward 1 by <paramref name="towardOne"/> ∈ [0, 1],
    /// ρ' = ρ + λ(1 − ρ) — a convex combination of two correlation matrices, so still positive semi-definite — with
    /// the volatilities kept. Returns the stressed daily covariance.
    /// </summary>
    public static Matrix<double> CorrelationBreakdown(Matrix<double> dailyCovariance, double towardOne)
    {
        var n = dailyCovariance.RowCount;
        var sd = Enumerable.Range(0, n).Select(i => Math.Sqrt(Math.Max(dailyCovariance[i, i], 0))).ToArray();
        var correlation = CovarianceEstimator.Correlation(dailyCovariance);
        return Matrix<double>.Build.Dense(n, n, (i, j) =>
            i == j ? dailyCovariance[i, i] : (correlation[i, j] + (towardOne * (1 - correlation[i, j]))) * sd[i] * sd[j]);
    }

    /// <summary>
    /// The <paramref name="count"/> worst non-overlapping windows of <paramref name="windowDays"/> days in the history,
    /// each revalued with today's positions: Vᵢ·(e^{Σ rᵢ} − 1) over the window.
    /// </summary>
    public static IReadOnlyList<HistoricalWindow> WorstWindows(IReadOnlyList<double> values, double[,] returns, int windowDays, int count)
    {
        var days = returns.GetLength(0);
        var n = values.Count;
        if (windowDays < 1 || windowDays > days)
        {
            return [];
        }

        // Prefix sums of log returns per asset make every window O(n).
        var prefix = new double[days + 1, n];
        for (var t = 0; t < days; t++)
        {
            for (var j = 0; j < n; j++)
            {
                prefix[t + 1, j] = prefix[t, j] + returns[t, j];
            }
        }

        var windows = new List<HistoricalWindow>(days - windowDays + 1);
        for (var start = 0; start + windowDays <= days; start++)
        {
            var pnl = new double[n];
            for (var j = 0; j < n; j++)
            {
                pnl[j] = values[j] * double.ExpM1(prefix[start + windowDays, j] - prefix[start, j]);
            }

            windows.Add(new HistoricalWindow(start, start + windowDays - 1, pnl.Sum(), pnl));
        }

        var chosen = new List<HistoricalWindow>();
        foreach (var window in windows.OrderBy(w => w.Pnl))
        {
            if (chosen.Count == count)
            {
                break;
            }

            if (chosen.All(c => window.EndIndex < c.StartIndex || window.StartIndex > c.EndIndex))
            {
                chosen.Add(window);
            }
        }

        return chosen;
    }
}
