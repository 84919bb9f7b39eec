using MathNet.Numerics.LinearAlgebra;
using RebalanceMesh.Risk.Core;

namespace RebalanceMesh.Risk.Tests;

public class StressTestingTests
{
    [Fact]
    public void Shocks_revalue_each_position_with_specific_shocks_winning()
    {
        var outcome = StressTesting.ApplyShocks("crash", ["A", "B"], [1_000, 500], 100, [new PriceShock("", -0.3), new PriceShock("B", 0.1)]);
        Assert.Equal([-300.0, 50.0], outcome.PositionPnl);
        Assert.Equal(-250.0, outcome.Pnl);
        Assert.Equal(1_350.0, outcome.NetValueAfter);
    }

    [Fact]
    public void Full_correlation_breakdown_makes_VaR_the_sum_of_standalone_VaRs()
    {
        var covariance = Matrix<double>.Build.DenseOfArray(new[,] { { 0.0004, -0.0001 }, { -0.0001, 0.0009 } });
        var stressed = StressTesting.CorrelationBreakdown(covariance, 1.0);
        Assert.Equal(0.02 * 0.03, stressed[0, 1], 15);          // ρ = 1 with the volatilities kept
        Assert.Equal(0.0004, stressed[0, 0], 15);
        var half = StressTesting.CorrelationBreakdown(covariance, 0.5);
        var rho = -0.0001 / (0.02 * 0.03);
        Assert.Equal((rho + (0.5 * (1 - rho))) * 0.02 * 0.03, half[0, 1], 15);
        Assert.All(half.Evd().EigenValues, e => Assert.True(e.Real >= -1e-18));
    }

    [Fact]
    public void Worst_windows_are_the_worst_non_overlapping_ones()
    {
        // One asset worth 100; 2-day log-return sums: −0.1, −0.3, −0.05, −0.25 → worst rows 1–2, then rows 3–4.
        double[,] returns = { { 0.1 }, { -0.2 }, { -0.1 }, { 0.05 }, { -0.3 } };
        var windows = StressTesting.WorstWindows([100], returns, 2, 3);
        Assert.Equal([(1, 2), (3, 4)], windows.Select(w => (w.StartIndex, w.EndIndex)));
        Assert.Equal(100 * double.ExpM1(-0.3), windows[0].Pnl, 12);
        Assert.Equal(100 * double.ExpM1(-0.25), windows[1].Pnl, 12);
    }
}

public class NormalSamplerTests
{
    [Fact]
    public void Draws_are_standard_normal_by_moments_tails_and_Kolmogorov_Smirnov()
    {
        const int n = 1_000_000;
        var sampler = new NormalSampler(123);
        var draws = new double[n];
        sampler.Fill(draws);
        var mean = draws.Average();
        var variance = draws.Sum(d => (d - mean) * (d - mean)) / (n - 1);
        Assert.InRange(mean, -4 / Math.Sqrt(n), 4 / Math.Sqrt(n));                       // 4 standard errors
        Assert.InRange(variance, 1 - (4 * Math.Sqrt(2.0 / n)), 1 + (4 * Math.Sqrt(2.0 / n)));
        var beyond3 = draws.Count(d => Math.Abs(d) > 3) / (double)n;                        // 0.0026998
        Assert.InRange(beyond3, 0.0026998 - (4 * Math.Sqrt(0.0027 / n)), 0.0026998 + (4 * Math.Sqrt(0.0027 / n)));
        Assert.Contains(draws, d => d > 3.6);                                                // the tail beyond the base strip is reached

        Array.Sort(draws);
        double ks = 0;
        for (var i = 0; i < n; i += 97)
        {
            var cdf = MathNet.Numerics.Distributions.Normal.CDF(0, 1, draws[i]);
            ks = Math.Max(ks, Math.Max(Math.Abs(cdf - ((double)i / n)), Math.Abs(cdf - ((double)(i + 1) / n))));
        }

        Assert.True(ks < 1.95 / Math.Sqrt(n), $"KS distance {ks}");                          // 0.1 % critical value
    }

    [Fact]
    public void The_same_seed_gives_the_same_sequence()
    {
        var a = new NormalSampler(9);
        var b = new NormalSampler(9);
        Assert.Equal(Enumerable.Range(0, 1000).Select(_ => a.Next()), Enumerable.Range(0, 1000).Select(_ => b.Next()));
    }
}

public class MarginTests
{
    [Fact]
    public void Standard_margin_by_hand()
    {
        var rates = new MarginRates();
        var (initial, maintenance) = MarginModel.Standard(
        [
            new MarginPosition(MarginKind.Spot, 50_000, 0, false),          // fully paid: nothing
            new MarginPosition(MarginKind.DeltaOne, 100_000, 0, true),      // 10 % / 5 % of notional
            new MarginPosition(MarginKind.Option, 20_000, 1_500, false),    // long option: paid by its premium
            new MarginPosition(MarginKind.Option, 40_000, -800, true),      // short option: premium + 15 % / 10 %
        ], rates);
        Assert.Equal(10_000 + 800 + 6_000, initial, 9);
        Assert.Equal(5_000 + 800 + 4_000, maintenance, 9);
    }

    [Fact]
    public void Portfolio_margin_is_the_worst_grid_loss()
    {
        var pnl = MarginModel.Grid.Select(g => (-100_000 * g.Price) + (20_000 * g.Volatility)).ToArray(); // long delta, long vega
        var (maintenance, initial, price, volatility) = MarginModel.Portfolio(pnl);
        Assert.Equal((0.15, -0.30), (price, volatility));
        Assert.Equal(15_000 + 6_000, maintenance, 9);
        Assert.Equal(1.25 * maintenance, initial, 9);
        Assert.Equal(0, MarginModel.Portfolio(MarginModel.Grid.Select(_ => 1.0).ToArray()).Maintenance);
    }
}

public class LoanRiskTests
{
    [Fact]
    public void Health_factor_drop_distance_and_liquidation_price_by_hand()
    {
        // 10 ETH at 2,000 with LT 0.8 against 8,000 of debt: HF = 16,000 / 8,000 = 2; liquidated after a 50 % fall, at 1,000.
        var figure = LoanRiskModel.Evaluate([new CollateralHolding("ETH", 10, 2_000, 0.8)], 8_000, 0.25);
        Assert.Equal(2.0, figure.HealthFactor, 14);
        Assert.Equal(0.5, figure.DropToLiquidation, 14);
        Assert.Equal(1_000.0, figure.LiquidationPrice, 10);
        Assert.Equal(Math.Log(2) / 0.25, figure.DistanceToLiquidationSd, 12);
        Assert.Equal(0.0, LoanRiskModel.Evaluate([new CollateralHolding("ETH", 10, 2_000, 0.8)], 20_000, 0.25).DistanceToLiquidationSd);
    }

    [Fact]
    public void Stressed_health_factor_moves_collateral_and_debt()
    {
        var hf = LoanRiskModel.StressedHealthFactor([new CollateralHolding("ETH", 10, 2_000, 0.8)], [("USDC", 8_000)], id => id == "ETH" ? -0.3 : 0.0);
        Assert.Equal(16_000 * 0.7 / 8_000, hf, 14);
    }
}
