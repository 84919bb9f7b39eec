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

        // Marginal VaR is the derivative of VaR in each position's value: check it by a finite difference.
        const double bump = 1.0;
        var bumped = (double[])Values.Clone();
        bumped[2] += bump;
        var shifted = PortfolioRiskModel.Assess(bumped, Cash, LastReturns(250), RiskSettings.Default);
        var totalBumped = shifted.Figures.Single(f => f.Method == VarMethod.Parametric && f.Confidence == 0.99).ValueAtRisk;
        Assert.Equal(totalBumped - total, report.Positions[2].MarginalVar * bump, 1e-6);
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

/// <summary>Shape-aware and simulated VaR, ratios (values from tests/reference/risk_reference.py, scipy.stats / integrate.quad).</summary>
public class DistributionalRiskTests
{
    private static readonly double[] Values = [100_000, 200_000, 300_000, 400_000];

    private static RiskReport Assess(RiskSettings settings) => PortfolioRiskModel.Assess(Values, 50_000, RiskReferenceTests.LastReturns(250), settings);

    [Fact]
    public void Moments_Cornish_Fisher_and_ratios_match_scipy()
    {
        var report = Assess(RiskSettings.Default with { Methods = [VarMethod.CornishFisher] });
        Assert.Equal(-0.23325878169234127, report.PnlMoments.Skewness, 1e-12);
        Assert.Equal(0.8143249185661285, report.PnlMoments.ExcessKurtosis, 1e-12);
        var cf95 = report.Figures.Single(f => f.Confidence == 0.95);
        var cf99 = report.Figures.Single(f => f.Confidence == 0.99);
        Assert.Equal(18790.058774392477, cf95.ValueAtRisk, 1e-7);
        // CVaR: our closed form against scipy's numerical quad of the tail quantile function (quad is good to ~1e-8 relative here).
        Assert.Equal(25518.92097604512, cf95.ConditionalValueAtRisk, 1e-3);
        Assert.Equal(29596.411750365263, cf99.ValueAtRisk, 1e-7);
        Assert.Equal(36229.42838360234, cf99.ConditionalValueAtRisk, 1e-3);
        Assert.Equal(1.0953453319758346, report.DiversificationRatio, 1e-12);
        Assert.Equal(1.6543891433399827, report.SharpeRatio, 1e-10);
        Assert.Equal(2.4460773513859158, report.SortinoRatio, 1e-10);
    }

    [Fact]
    public void Cornish_Fisher_reduces_to_the_normal_quantile_without_skew_or_kurtosis()
    {
        var figure = CornishFisher.Figure(1.0, 0, 0, 0.99, 1);
        var normal = PortfolioRiskModel.Parametric(1.0, 0.99, 1);
        Assert.Equal(normal.ValueAtRisk, figure.ValueAtRisk, 1e-14);
        Assert.Equal(normal.ConditionalValueAtRisk, figure.ConditionalValueAtRisk, 1e-12);
    }

    [Theory]
    [InlineData(0.95)]
    [InlineData(0.99)]
    public void Monte_Carlo_VaR_is_within_its_standard_error_of_the_analytic_value(double confidence)
    {
        const int scenarios = 100_000;
        var report = Assess(RiskSettings.Default with { Methods = [VarMethod.MonteCarlo, VarMethod.Parametric], MonteCarloScenarios = scenarios, Seed = 11 });
        var mc = report.Figures.Single(f => f.Method == VarMethod.MonteCarlo && f.Confidence == confidence);
        var analytic = report.Figures.Single(f => f.Method == VarMethod.Parametric && f.Confidence == confidence);
        // Standard error of a sample quantile: √(α(1−α)/N) / f(q), with f the normal density of the P&L at q.
        var sigma = analytic.ValueAtRisk / MathNet.Numerics.Distributions.Normal.InvCDF(0, 1, confidence);
        var z = analytic.ValueAtRisk / sigma;
        var standardError = Math.Sqrt(confidence * (1 - confidence) / scenarios) / (MathNet.Numerics.Distributions.Normal.PDF(0, 1, z) / sigma);
        Assert.True(Math.Abs(mc.ValueAtRisk - analytic.ValueAtRisk) <= 3 * standardError, $"MC {mc.ValueAtRisk:F1} vs analytic {analytic.ValueAtRisk:F1}, SE {standardError:F1}");
        Assert.InRange(mc.ConditionalValueAtRisk / analytic.ConditionalValueAtRisk, 0.97, 1.03);
    }

    [Fact]
    public void Monte_Carlo_reproduces_with_its_seed()
    {
        var a = Assess(RiskSettings.Default with { Methods = [VarMethod.MonteCarlo], MonteCarloScenarios = 5_000, Seed = 3 });
        var b = Assess(RiskSettings.Default with { Methods = [VarMethod.MonteCarlo], MonteCarloScenarios = 5_000, Seed = 3 });
        var c = Assess(RiskSettings.Default with { Methods = [VarMethod.MonteCarlo], MonteCarloScenarios = 5_000, Seed = 4 });
        Assert.Equal(a.Figures[0].ValueAtRisk, b.Figures[0].ValueAtRisk);
        Assert.NotEqual(a.Figures[0].ValueAtRisk, c.Figures[0].ValueAtRisk);
    }
}

/// <summary>Shrinkage and volatility forecasts against scikit-learn and scipy (tests/reference/risk_reference.py).</summary>
public class VolatilityModelTests
{
    [Fact]
    public void Ledoit_Wolf_matches_scikit_learn()
    {
        var (covariance, shrinkage) = LedoitWolf.Estimate(RiskReferenceTests.LastReturns(250).Values);
        Assert.Equal(0.02208081979299688, shrinkage, 1e-12);
        Assert.Equal(0.05426074950235267, covariance[0, 0] * 252, 1e-14);
        Assert.Equal(0.0230611485826616, covariance[1, 3] * 252, 1e-14);
        Assert.All(covariance.Evd().EigenValues, e => Assert.True(e.Real > 0));
    }

    [Fact]
    public void GARCH_maximum_likelihood_matches_scipy()
    {
        var dax = File.ReadAllLines(Path.Combine(RebalanceMesh.Testing.RepoPaths.Root, "data", "eustockmarkets.csv")).Skip(1)
            .Select(l => double.Parse(l.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var returns = dax.Zip(dax.Skip(1), (a, b) => Math.Log(b / a)).TakeLast(1000).ToArray();
        var fit = VolatilityForecaster.FitGarch(returns);
        // The likelihood surface is flat near its top: the maximum is what must agree; parameters to a few digits.
        Assert.True(fit.LogLikelihood >= 3211.997391285273 - 1e-6, $"log-likelihood {fit.LogLikelihood:R} below scipy's 3211.997391285273");
        Assert.Equal(3211.997391285273, fit.LogLikelihood, 1e-3);
        Assert.Equal(0.05323491260184166, fit.Alpha, 2e-3);
        Assert.Equal(0.9398328071245592, fit.Beta, 2e-3);
        Assert.Equal(9.018762333603683e-07, fit.Omega, 2e-7);
    }

    [Fact]
    public void GARCH_term_structure_reverts_to_the_long_run_variance()
    {
        // Hand case: ω = 2e-6, α = 0.1, β = 0.8 → V_L = 2e-5; next variance 4e-5.
        var fit = new GarchFit(2e-6, 0.1, 0.8, 0, 4e-5);
        var curve = fit.TermStructure(3);
        // σ²: 4e-5, 2e-5 + 0.9·2e-5 = 3.8e-5, 2e-5 + 0.81·2e-5 = 3.62e-5.
        Assert.Equal(Math.Sqrt(252 * 4e-5), curve[0], 14);
        Assert.Equal(Math.Sqrt(252 / 2.0 * (4e-5 + 3.8e-5)), curve[1], 14);
        Assert.Equal(Math.Sqrt(252 / 3.0 * (4e-5 + 3.8e-5 + 3.62e-5)), curve[2], 14);
        Assert.True(fit.TermStructure(2_000)[^1] < curve[0]);
    }

    [Fact]
    public void EWMA_variance_weights_the_newest_return_most()
    {
        // λ = 0.5 over [0.01, 0.02, 0.04]: weights 0.25, 0.5, 1 → (0.25e-4 + 0.5·4e-4 + 16e-4) / 1.75.
        Assert.Equal((0.25e-4 + 2e-4 + 16e-4) / 1.75, VolatilityForecaster.EwmaVariance([0.01, 0.02, 0.04], 0.5), 15);
    }
}
