using System.Globalization;
using RebalanceMesh.Risk.Core;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Risk.Tests;

/// <summary>
/// Against numpy/scipy: the values below were printed by tests/reference/risk_reference.py (Debian python3-numpy
/// 1.24.2, python3-scipy 1.10.1) on the shipped EuStockMarkets data.
/// </summary>
public class RiskReferenceTests
{
    private static readonly double[] Values = [100_000, 200_000, 300_000, 400_000];
    private const double Cash = 50_000;

    internal static ReturnMatrix LastReturns(int count)
    {
        var lines = File.ReadAllLines(Path.Combine(RepoPaths.Root, "data", "eustockmarkets.csv")).Skip(1).ToArray();
        var rows = lines.TakeLast(count + 1).Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        string[] instruments = ["DAX", "SMI", "CAC", "FTSE"];
        var closes = instruments.Select((_, j) => (IReadOnlyList<(int, double)>)rows.Select((row, day) => (day, row[j])).ToArray()).ToArray();
        return ReturnMatrix.FromCloses(instruments, closes, count);
    }

    [Fact]
    public void Sample_and_EWMA_covariances_match_numpy()
    {
        var returns = LastReturns(250);
        Assert.Equal(250, returns.Days);
        var sample = CovarianceEstimator.Sample(returns.Values) * RiskMath.TradingDaysPerYear;
        var ewma = CovarianceEstimator.Ewma(returns.Values, 0.94) * RiskMath.TradingDaysPerYear;
        Assert.Equal(0.05477384713882918, sample[0, 0], 1e-14);
        Assert.Equal(0.02367656152557445, sample[1, 3], 1e-14);
        Assert.Equal(0.06106925436434617, ewma[0, 0], 1e-14);
        Assert.Equal(0.036894732063383506, ewma[2, 3], 1e-14);
    }

    [Fact]
    public void Volatility_VaR_and_CVaR_match_numpy_and_scipy()
    {
        var report = PortfolioRiskModel.Assess(Values, Cash, LastReturns(250), RiskSettings.Default);
        Assert.Equal(0.1677265176718118, report.AnnualVolatility, 1e-12);
        VarFigure Figure(VarMethod method, double confidence) => report.Figures.Single(f => f.Method == method && f.Confidence == confidence);
        AssertClose(19544.361013904516, Figure(VarMethod.Historical, 0.95).ValueAtRisk);
        AssertClose(24506.57364200546, Figure(VarMethod.Historical, 0.95).ConditionalValueAtRisk);
        AssertClose(27770.939573785618, Figure(VarMethod.Historical, 0.99).ValueAtRisk);
        AssertClose(31549.674051166334, Figure(VarMethod.Historical, 0.99).ConditionalValueAtRisk);
        AssertClose(18248.115274691743, Figure(VarMethod.Parametric, 0.95).ValueAtRisk);
        AssertClose(22883.872749054684, Figure(VarMethod.Parametric, 0.95).ConditionalValueAtRisk);
        AssertClose(25808.657669564036, Figure(VarMethod.Parametric, 0.99).ValueAtRisk);
        AssertClose(29568.063399511724, Figure(VarMethod.Parametric, 0.99).ConditionalValueAtRisk);
    }

    [Fact]
    public void Euler_components_sum_to_the_parametric_VaR()
    {
        var report = PortfolioRiskModel.Assess(Values, Cash, LastReturns(250), RiskSettings.Default);
        var total = report.Figures.Single(f => f.Method == VarMethod.Parametric && f.Confidence == 0.99).ValueAtRisk;
        Assert.Equal(total, report.Positions.Sum(p => p.ComponentVar), 1e-8);
    }

    [Fact]
    public void Horizon_scales_by_the_square_root_of_time()
    {
        var oneDay = PortfolioRiskModel.Assess(Values, Cash, LastReturns(250), RiskSettings.Default);
        var tenDay = PortfolioRiskModel.Assess(Values, Cash, LastReturns(250), RiskSettings.Default with { HorizonDays = 10 });
        Assert.Equal(oneDay.Figures[0].ValueAtRisk * Math.Sqrt(10), tenDay.Figures[0].ValueAtRisk, 1e-8);
    }

    private static void AssertClose(double expected, double actual) => Assert.Equal(expected, actual, Math.Abs(expected) * 1e-12);
}

public class RiskMathTests
{
    [Theory]
    // Hand-computed type-7 quantiles of [1, 2, 3, 4]: h = 3p.
    [InlineData(0.0, 1.0)]
    [InlineData(0.5, 2.5)]
    [InlineData(0.9, 3.7)]
    [InlineData(1.0, 4.0)]
    public void Quantile_interpolates_linearly(double p, double expected) =>
        Assert.Equal(expected, RiskMath.Quantile([1, 2, 3, 4], p), 12);

    [Fact]
    public void Historical_VaR_of_a_hand_made_sample()
    {
        // P&L −10…+9 in steps of 1: losses sorted are −9…10; the 95 % type-7 quantile is at h = 19·0.95 = 18.05 → 9.05.
        var pnl = Enumerable.Range(-10, 20).Select(x => (double)x).ToArray();
        var figure = PortfolioRiskModel.Historical(pnl, 0.95, 1);
        Assert.Equal(9.05, figure.ValueAtRisk, 12);
        Assert.Equal(10.0, figure.ConditionalValueAtRisk, 12); // only the loss of 10 is at or beyond 9.05
    }

    [Fact]
    public void Returns_are_aligned_on_common_days()
    {
        IReadOnlyList<(int, double)> a = [(1, 100), (2, 110), (3, 121), (5, 133.1)];
        IReadOnlyList<(int, double)> b = [(1, 10), (3, 12), (4, 13), (5, 12)];
        var returns = ReturnMatrix.FromCloses(["A", "B"], [a, b], 10);
        Assert.Equal(2, returns.Days); // common days 1, 3, 5
        Assert.Equal(Math.Log(121.0 / 100), returns.Values[0, 0], 14);
        Assert.Equal(Math.Log(12.0 / 12), returns.Values[1, 1], 14);
    }

    [Fact]
    public void Too_little_history_is_a_failed_precondition()
    {
        var ex = Assert.Throws<RebalanceMesh.Domain.DomainException>(() => ReturnMatrix.FromCloses(["A"], [[(1, 1.0)]], 10));
        Assert.Equal(RebalanceMesh.Domain.DomainErrorKind.FailedPrecondition, ex.Kind);
    }

    [Fact]
    public void Covariances_are_positive_semidefinite()
    {
        var returns = RiskReferenceTests.LastReturns(30);
        foreach (var matrix in new[] { CovarianceEstimator.Sample(returns.Values), CovarianceEstimator.Ewma(returns.Values, 0.94) })
        {
            Assert.All(matrix.Evd().EigenValues, e => Assert.True(e.Real >= -1e-15));
        }
    }
}
