namespace RebalanceMesh.Planning.Core;

/// <summary>When a backtested strategy rebalances.</summary>
public enum BacktestTrigger
{
    /// <summary>Never after the first day (buy and hold).</summary>
    Never,
    /// <summary>Every <see cref="BacktestStrategy.CalendarDays"/> trading days, to target.</summary>
    Calendar,
    /// <summary>When the policy's bands are breached (the monitor's rule), as the policy says.</summary>
    Bands,
}

/// <summary>A strategy to replay: a name, its trigger and the policy it trades with.</summary>
public sealed record BacktestStrategy(string Name, BacktestTrigger Trigger, TargetPolicy Policy, int CalendarDays = 21);

/// <summary>One strategy's daily net values and summary statistics.</summary>
/// <param name="AnnualReturn">Geometric, 252 trading days a year.</param>
/// <param name="Sharpe">Annualised mean / volatility of daily returns (zero risk-free rate).</param>
/// <param name="MaxDrawdown">Largest fall from a previous peak, as a fraction.</param>
/// <param name="Turnover">Σ traded notional / average net value, over the whole run.</param>
/// <param name="TrackingError">Annualised volatility of the daily return difference to the target portfolio rebalanced every day at no cost.</param>
/// <param name="Weights">Each day's weights at the close (after any rebalance), in the order of the instruments.</param>
public sealed record BacktestResult(
    string Name,
    IReadOnlyList<decimal> NetValues,
    IReadOnlyList<double[]> Weights,
    int Rebalances,
    decimal Costs,
    double AnnualReturn,
    double AnnualVolatility,
    double Sharpe,
    double MaxDrawdown,
    double Turnover,
    double TrackingError);

/// <summary>
/// Replays strategies over daily closes with the production planning code: each day the portfolio is marked at the
/// close, the trigger is evaluated (the policy's bands through <see cref="DriftEvaluator"/>, a calendar, or never),
/// and a rebalance is proposed by <see cref="RebalancePlanner"/> — lots, minimum notionals, cash never negative — and
/// filled at the close with the policy's cost estimate through <see cref="PortfolioLedger"/>. Every strategy is also
/// compared with the target portfolio rebalanced every day at no cost (its tracking error).
/// </summary>
public static class Backtester
{
    /// <param name="closes">Daily closes, one row per day (oldest first), one column per instrument.</param>
    public static IReadOnlyList<BacktestResult> Run(IReadOnlyList<string> instruments, IReadOnlyList<double[]> closes, decimal capital, IReadOnlyList<BacktestStrategy> strategies)
    {
        if (closes.Count < 2 || closes.Any(row => row.Length != instruments.Count || row.Any(v => !(v > 0))))
        {
            throw new ArgumentException("At least two days of positive closes, one per instrument, are required.", nameof(closes));
        }

        return strategies.Select(s => Replay(instruments, closes, capital, s)).ToArray();
    }

    private static BacktestResult Replay(IReadOnlyList<string> instruments, IReadOnlyList<double[]> closes, decimal capital, BacktestStrategy strategy)
    {
        var policy = strategy.Policy;
        var costRate = (decimal)policy.EstimatedCostBps / 10_000m;
        var portfolio = new PortfolioSnapshot(strategy.Name, [], capital, 0);
        var values = new List<decimal>();
        var weights = new List<double[]>();
        var benchmarkReturns = new List<double>();
        int rebalances = 0, sinceLast = 0;
        decimal costs = 0, traded = 0;
        for (var day = 0; day < closes.Count; day++)
        {
            var prices = instruments.Select((id, j) => (id, p: decimal.Round((decimal)closes[day][j], 6))).ToDictionary(x => x.id, x => x.p, StringComparer.Ordinal);
            var marked = PortfolioMarking.Mark(portfolio, policy, prices);
            sinceLast++;
            var due = day == 0 || strategy.Trigger switch
            {
                BacktestTrigger.Calendar => sinceLast >= strategy.CalendarDays,
                BacktestTrigger.Bands => DriftEvaluator.Evaluate(marked, policy).Breached,
                _ => false,
            };
            if (due)
            {
                // The first day and calendar dates trade to target; band breaches trade as the policy says (to target or
                // to the band edge).
                var proposal = RebalancePlanner.Propose(marked, policy, force: day == 0 || strategy.Trigger != BacktestTrigger.Bands);
                foreach (var leg in proposal.Legs)
                {
                    portfolio = PortfolioLedger.ApplyFill(portfolio, leg.InstrumentId, leg.Side, leg.Quantity, leg.ReferencePrice, leg.EstimatedCost);
                    costs += leg.EstimatedCost;
                    traded += leg.Notional;
                }

                if (proposal.HasTrades)
                {
                    rebalances += day == 0 ? 0 : 1;
                    sinceLast = 0;
                }

                marked = PortfolioMarking.Mark(portfolio, policy, prices);
            }

            values.Add(marked.NetValue);
            weights.Add(instruments.Select(id => marked.Find(id)?.Weight ?? 0).ToArray());
            if (day > 0)
            {
                // The target portfolio rebalanced daily at no cost: Σ w*ᵢ·rᵢ (cash earns nothing).
                benchmarkReturns.Add(instruments.Select((id, j) => policy.TargetOf(id) * ((closes[day][j] / closes[day - 1][j]) - 1)).Sum());
            }
        }

        var returns = values.Zip(values.Skip(1), (a, b) => (double)(b / a) - 1).ToArray();
        var mean = returns.Average();
        var volatility = StandardDeviation(returns) * Math.Sqrt(252);
        var years = returns.Length / 252.0;
        var peak = values[0];
        double drawdown = 0;
        foreach (var value in values)
        {
            peak = Math.Max(peak, value);
            drawdown = Math.Max(drawdown, (double)((peak - value) / peak));
        }

        var tracking = StandardDeviation(returns.Zip(benchmarkReturns, (r, b) => r - b).ToArray()) * Math.Sqrt(252);
        return new BacktestResult(
            strategy.Name,
            values,
            weights,
            rebalances,
            costs,
            Math.Pow((double)(values[^1] / values[0]), 1 / years) - 1,
            volatility,
            volatility > 0 ? mean * 252 / volatility : 0,
            drawdown,
            (double)(traded / values.Average()),
            tracking);
    }

    private static double StandardDeviation(IReadOnlyList<double> values)
    {
        if (values.Count < 2)
        {
            return 0;
        }

        var mean = values.Average();
        return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
    }
}
