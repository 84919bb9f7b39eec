using MathNet.Numerics.Distributions;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using MathNet.Numerics.LinearAlgebra;

namespace RebalanceMesh.Risk.Core;

/// <summary>How VaR is computed.</summary>
public enum VarMethod
{
    /// <summary>Revalue the positions under each historical day's returns.</summary>
    Historical,
    /// <summary>Delta-normal from the sample covariance.</summary>
    Parametric,
    /// <summary>Normal quantile corrected for the skewness and kurtosis of historical P&amp;L.</summary>
    CornishFisher,
    /// <summary>Seeded Monte Carlo under multivariate normal returns.</summary>
    MonteCarlo,
}

/// <summary>Measurement settings.</summary>
/// <param name="HorizonDays">Horizon in trading days; 1-day figures are scaled by √horizon.</param>
/// <param name="MonteCarloScenarios">Scenarios of the Monte Carlo method.</param>
/// <param name="Seed">Seed of the Monte Carlo generator.</param>
public sealed record RiskSettings(double HorizonDays, IReadOnlyList<double> ConfidenceLevels, IReadOnlyList<VarMethod> Methods, int MonteCarloScenarios = 10_000, int Seed = 42)
{
    public static RiskSettings Default { get; } = new(1, [0.95, 0.99], [VarMethod.Historical, VarMethod.Parametric]);
}

/// <summary>VaR and CVaR as positive losses in currency.</summary>
public sealed record VarFigure(VarMethod Method, double Confidence, double ValueAtRisk, double ConditionalValueAtRisk);

/// <summary>One position's risk.</summary>
/// <param name="ComponentVar">Euler component of the parametric VaR at the highest confidence; components sum to it.</param>
/// <param name="MarginalVar">∂VaR/∂Vᵢ: VaR added per unit of currency added to the position.</param>
public sealed record PositionRiskFigure(string InstrumentId, double MarketValue, double Weight, double AnnualVolatility, double ComponentVar, double MarginalVar);

/// <summary>A portfolio's measured risk.</summary>
/// <param name="AnnualVariance">Annualised variance of portfolio value, in currency squared.</param>
/// <param name="DiversificationRatio">Σ |Vᵢ|σᵢ / σ_p.</param>
/// <param name="SharpeRatio">Annualised mean over volatility of the holdings' historical daily returns (zero risk-free rate).</param>
/// <param name="SortinoRatio">Annualised mean over downside deviation (below zero) of the same returns.</param>
/// <param name="Correlation">Correlation matrix of the holdings' returns, computed on first use (O(T·n²)).</param>
public sealed record RiskReport(
    double NetValue,
    double AnnualVolatility,
    double HorizonVolatility,
    double AnnualVariance,
    IReadOnlyList<VarFigure> Figures,
    IReadOnlyList<PositionRiskFigure> Positions,
    int Observations,
    double GrossLeverage,
    double DiversificationRatio,
    double SharpeRatio,
    double SortinoRatio,
    Moments PnlMoments,
    Lazy<Matrix<double>> Correlation);

/// <summary>
/// Risk of a linear portfolio (positions held as currency values) from daily log returns.
/// Historical VaR revalues each position as V·(e^r − 1) per day and takes the loss quantile with linear
/// interpolation between order statistics (numpy's default); CVaR is the mean loss at or beyond VaR.
/// Parametric VaR is z_α·σ with σ² = Vᵀ Σ V; CVaR = σ·φ(z_α)/(1 − α). Both scale by √horizon.
/// </summary>
public static class PortfolioRiskModel
{
    /// <param name="positionValues">Exposure to each risk factor (column of <paramref name="returns"/>) in currency.</param>
    /// <param name="historicalAdjustment">
    /// Per historical day, what full revaluation of non-linear positions (options) adds to the linear P&amp;L of their
    /// delta exposure; null for linear portfolios. Historical and Cornish–Fisher figures use it; the parametric and
    /// Monte Carlo figures are delta-normal.
    /// </param>
    public static RiskReport Assess(IReadOnlyList<double> positionValues, double cash, ReturnMatrix returns, RiskSettings settings, IReadOnlyList<double>? historicalAdjustment = null, double? netValueOverride = null, CancellationToken cancellationToken = default)
    {
        var n = returns.Count;
        if (positionValues.Count != n)
        {
            throw new ArgumentException("One value per instrument is required.", nameof(positionValues));
        }

        var values = Vector<double>.Build.DenseOfEnumerable(positionValues);
        var netValue = netValueOverride ?? values.Sum() + cash;
        var gross = values.Select(Math.Abs).Sum();

        // Everything but Monte Carlo and the correlation matrix needs only O(T·n) work: with centred returns Rc and
        // y = Rc·V, VᵀSV = yᵀy/(T−1) and S·V = Rcᵀy/(T−1). The full n×n covariance is built only when asked for.
        var (sigmaV, assetVariance, dailyVariance) = LinearMoments(returns.Values, positionValues);
        var covariance = new Lazy<Matrix<double>>(() => CovarianceEstimator.Sample(returns.Values));
        var dailySigma = Math.Sqrt(dailyVariance);
        var sqrtHorizon = Math.Sqrt(settings.HorizonDays);
        var annualVariance = dailyVariance * RiskMath.TradingDaysPerYear;

        var figures = new List<VarFigure>();
        var pnl = HistoricalPnl(values, returns);
        if (historicalAdjustment is not null)
        {
            for (var t = 0; t < pnl.Length; t++)
            {
                pnl[t] += historicalAdjustment[t];
            }
        }
        var moments = Moments.Of(pnl);
        double[]? simulated = null;
        foreach (var method in settings.Methods)
        {
            if (method == VarMethod.MonteCarlo)
            {
                simulated ??= MonteCarloVar.SimulatePnl(positionValues, covariance.Value, settings.MonteCarloScenarios, settings.Seed, cancellationToken);
            }

            foreach (var confidence in settings.ConfidenceLevels)
            {
                figures.Add(method switch
                {
                    VarMethod.Historical => Historical(pnl, confidence, sqrtHorizon),
                    // Losses are −P&L: their skewness is the P&L's with the sign flipped.
                    VarMethod.CornishFisher => CornishFisher.Figure(dailySigma, -moments.Skewness, moments.ExcessKurtosis, confidence, sqrtHorizon),
                    VarMethod.MonteCarlo => MonteCarloVar.Figure(simulated!, confidence, sqrtHorizon),
                    _ => Parametric(dailySigma, confidence, sqrtHorizon),
                });
            }
        }

        var topConfidence = settings.ConfidenceLevels.Count > 0 ? settings.ConfidenceLevels.Max() : 0.99;
        var z = Normal.InvCDF(0, 1, topConfidence);
        var marginal = sigmaV;
        var positions = new PositionRiskFigure[n];
        for (var i = 0; i < n; i++)
        {
            var marginalVar = dailySigma > 0 ? marginal[i] / dailySigma * z * sqrtHorizon : 0.0;
            var component = values[i] * marginalVar;
            positions[i] = new PositionRiskFigure(
                returns.Instruments[i],
                values[i],
                netValue != 0 ? values[i] / netValue : 0,
                Math.Sqrt(assetVariance[i] * RiskMath.TradingDaysPerYear),
                component,
                marginalVar);
        }

        var relative = netValue > 0 ? dailySigma / netValue : 0;
        var standalone = Enumerable.Range(0, n).Sum(i => Math.Abs(values[i]) * Math.Sqrt(assetVariance[i]));
        var (sharpe, sortino) = RatiosOf(pnl, netValue);
        return new RiskReport(
            netValue,
            relative * Math.Sqrt(RiskMath.TradingDaysPerYear),
            relative * sqrtHorizon,
            annualVariance,
            figures,
            positions,
            returns.Days,
            netValue > 0 ? gross / netValue : 0,
            dailySigma > 0 ? standalone / dailySigma : 0,
            sharpe,
            sortino,
            moments,
            new Lazy<Matrix<double>>(() => CovarianceEstimator.Correlation(covariance.Value)));
    }

    /// <summary>S·V, the diagonal of S and VᵀSV of the unbiased sample covariance S, in O(T·n) without forming S.</summary>
    public static (double[] CovarianceTimesValues, double[] AssetVariances, double PortfolioVariance) LinearMoments(double[,] returns, IReadOnlyList<double> values)
    {
        var t = returns.GetLength(0);
        var n = returns.GetLength(1);
        var v = values as double[] ?? values.ToArray();
        var means = new double[n];
        for (var i = 0; i < t; i++)
        {
            TensorPrimitives.Add(means, Row(returns, i), means);
        }

        TensorPrimitives.Multiply(means, 1.0 / t, means);

        // y = Rc·V, Σ Rc² per column, and Rcᵀy, one vectorised pass per row each.
        var y = new double[t];
        var centred = new double[n];
        var squares = new double[n];
        var sv = new double[n];
        double portfolio = 0;
        for (var i = 0; i < t; i++)
        {
            TensorPrimitives.Subtract(Row(returns, i), means, centred);
            var yi = TensorPrimitives.Dot<double>(centred, v);
            y[i] = yi;
            portfolio += yi * yi;
            TensorPrimitives.MultiplyAdd(centred, centred, squares, squares);
            TensorPrimitives.MultiplyAdd(centred, yi, sv, sv);
        }

        var scale = 1.0 / (t - 1);
        TensorPrimitives.Multiply(sv, scale, sv);
        TensorPrimitives.Multiply(squares, scale, squares);
        return (sv, squares, Math.Max(portfolio * scale, 0));
    }

    private static ReadOnlySpan<double> Row(double[,] matrix, int row) =>
        MemoryMarshal.CreateReadOnlySpan(ref matrix[row, 0], matrix.GetLength(1));

    /// <summary>Annualised Sharpe and Sortino of daily P&amp;L as returns on net value, zero risk-free rate and target.</summary>
    public static (double Sharpe, double Sortino) RatiosOf(IReadOnlyList<double> pnl, double netValue)
    {
        if (netValue <= 0 || pnl.Count < 2)
        {
            return (0, 0);
        }

        var returns = pnl.Select(p => p / netValue).ToArray();
        var mean = returns.Average();
        var sd = Math.Sqrt(returns.Sum(r => (r - mean) * (r - mean)) / (returns.Length - 1));
        var downside = Math.Sqrt(returns.Sum(r => r < 0 ? r * r : 0) / returns.Length);
        var annualise = Math.Sqrt(RiskMath.TradingDaysPerYear);
        return (sd > 0 ? mean / sd * annualise : 0, downside > 0 ? mean / downside * annualise : 0);
    }

    /// <summary>Daily P&amp;L of the positions under each day's returns, full revaluation of linear holdings: Σⱼ Vⱼ(e^{rⱼ} − 1).</summary>
    public static double[] HistoricalPnl(Vector<double> values, ReturnMatrix returns)
    {
        var growth = returns.Growth;
        var v = values.AsArray() ?? values.ToArray();
        var pnl = new double[returns.Days];
        for (var t = 0; t < pnl.Length; t++)
        {
            pnl[t] = TensorPrimitives.Dot(Row(growth, t), v);
        }

        return pnl;
    }

    public static VarFigure Historical(double[] pnl, double confidence, double horizonScale)
    {
        var losses = pnl.Select(p => -p).Order().ToArray();
        var valueAtRisk = RiskMath.Quantile(losses, confidence);
        var tail = losses.Where(l => l >= valueAtRisk).ToArray();
        var conditional = tail.Length > 0 ? tail.Average() : valueAtRisk;
        return new VarFigure(VarMethod.Historical, confidence, valueAtRisk * horizonScale, conditional * horizonScale);
    }

    public static VarFigure Parametric(double dailySigma, double confidence, double horizonScale)
    {
        var z = Normal.InvCDF(0, 1, confidence);
        var sigma = dailySigma * horizonScale;
        return new VarFigure(VarMethod.Parametric, confidence, z * sigma, sigma * Normal.PDF(0, 1, z) / (1 - confidence));
    }
}

/// <summary>Small numeric building blocks shared by the risk models.</summary>
public static class RiskMath
{
    /// <summary>Trading days per year used to annualise daily figures.</summary>
    public const double TradingDaysPerYear = 252.0;

    /// <summary>Quantile of sorted data with linear interpolation between order statistics (numpy's default, Hyndman–Fan type 7).</summary>
    public static double Quantile(IReadOnlyList<double> sorted, double p)
    {
        if (sorted.Count == 0)
        {
            throw new ArgumentException("No data.", nameof(sorted));
        }

        var h = (sorted.Count - 1) * p;
        var lower = (int)Math.Floor(h);
        var upper = Math.Min(lower + 1, sorted.Count - 1);
        return sorted[lower] + ((h - lower) * (sorted[upper] - sorted[lower]));
    }
}
