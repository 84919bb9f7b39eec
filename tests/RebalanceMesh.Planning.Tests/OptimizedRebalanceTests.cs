using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>The optimiser inside plan building: universe, overlays, costs on legs (hand-computed cases).</summary>
public class OptimizedRebalanceTests
{
    private static readonly Dictionary<string, InstrumentMark> Marks = new()
    {
        ["A"] = InstrumentMark.Spot(100m),
        ["B"] = InstrumentMark.Spot(50m),
        ["C"] = InstrumentMark.Spot(20m),
        // A put on A worth 10 a unit with a delta of −0.4 (−40 of A per unit), held as an overlay.
        ["A-P"] = new InstrumentMark(10m, DeltaExposure: -40, Underlying: "A"),
    };

    private static readonly double[,] Covariance = { { 0.04, 0, 0 }, { 0, 0.04, 0 }, { 0, 0, 0.04 } };

    private static TargetPolicy Policy(OptimizerPolicy optimizer) =>
        TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.3, ["C"] = 0.2 }, TradeRules.Default with { NoTrade = new HashSet<string> { "A-P" } },
            new DriftBands(0.05), optimizer);

    private static OptimizerPolicy Settings(double? turnoverCap = null, IReadOnlyList<DeltaBand>? bands = null) =>
        new(OptimizerObjective.TrackingError, 1, 10, 1, new Dictionary<string, decimal>(), turnoverCap, null, new Dictionary<string, (double, double)>(), 0, bands ?? []);

    private static MarkedPortfolio Marked(TargetPolicy policy, decimal putQuantity = 0) =>
        PortfolioMarking.Mark(
            new PortfolioSnapshot("p", new[] { new Holding("A", 70), new Holding("B", 40), new Holding("C", 50), new Holding("A-P", putQuantity) }.Where(h => h.Quantity != 0).ToArray(), 0m, 1),
            policy,
            Marks);

    [Fact]
    public void A_binding_turnover_cap_shares_the_budget_by_marginal_benefit()
    {
        // Weights 70/20/10 % against targets 50/30/20 %, σ² = 0.04 each, fee 10 bp, turnover ≤ 20 %. Each trade stops
        // where 2·0.04·|w − w*| = fee + λ; with the budget binding, 0.4 − 3s = 0.2 for s = (fee + λ)/0.08 → s = 1/15:
        // A 70 % → 56.67 %, B and C +3.33 %.
        var policy = Policy(Settings(turnoverCap: 0.2));
        var marked = Marked(policy);
        var optimized = OptimizedRebalance.Choose(marked, policy, new OptimizerMarket(["A", "B", "C"], Covariance, new Dictionary<string, double>()));
        Assert.Equal(0.7 - (0.2 - (1.0 / 15)), optimized.Weights["A"], 7);
        Assert.Equal(0.2 + (0.1 - (1.0 / 15)), optimized.Weights["B"], 7);
        Assert.Equal(0.1 + (0.1 - (1.0 / 15)), optimized.Weights["C"], 7);
        Assert.Equal(0.2, optimized.Result.Turnover, 7);
        Assert.Equal(OptimizedRebalance.Rule, optimized.Reason.Rule);
        Assert.Contains("turnover 20.00 % of cap 20.00 %", optimized.Reason.Message);

        // The plan trades whole units toward those weights and prices each leg at the fee: sells first.
        var proposal = RebalancePlanner.Propose(marked, policy, force: false, optimized);
        Assert.Equal([("A", TradeSide.Sell, 13m), ("B", TradeSide.Buy, 6m), ("C", TradeSide.Buy, 16m)],
            proposal.Legs.Select(l => (l.InstrumentId, l.Side, l.Quantity)));
        Assert.Equal(0.001m * 1_300m, proposal.Legs[0].EstimatedCost);
        Assert.True(proposal.CashAfter >= 0);
    }

    [Fact]
    public void A_delta_band_counts_the_overlay_the_optimiser_does_not_trade()
    {
        // 50 puts on A add −2,000 of A delta (−0.2 of net value 10,500): net A delta within 0.40 ± 0.01 forces A's
        // weight to about 0.59, above its 0.5 target.
        var policy = Policy(Settings(bands: [new DeltaBand("A", 0.40, 0.01)]));
        var marked = Marked(policy, putQuantity: 50);
        Assert.Equal(["A", "B", "C"], OptimizedRebalance.Universe(marked, policy));
        var optimized = OptimizedRebalance.Choose(marked, policy, new OptimizerMarket(["A", "B", "C"], Covariance, new Dictionary<string, double>()));
        var overlay = -2_000.0 / (double)marked.NetValue;
        var netDelta = optimized.Weights["A"] + overlay;
        Assert.InRange(netDelta, 0.39 - 1e-9, 0.41 + 1e-9);
        Assert.Equal(0.39, netDelta, 7); // the band's lower edge: as close to target weight as the band allows
    }

    [Fact]
    public void Costs_per_leg_include_half_spread_and_impact()
    {
        var optimized = new OptimizedWeights(new Dictionary<string, double>(), new Dictionary<string, (double, double)> { ["A"] = (0.0015, 0.02) }, new DriftReason("optimizer", "", 0, 0, false, ""), null!);
        // t = 1,000 / 100,000 = 1 %: 0.0015·0.01 + 0.02·0.01^1.5 = 0.000015 + 0.00002 → 3.5 per 100,000.
        Assert.Equal(3.5m, optimized.CostOf("A", 1_000m, 100_000m));
        Assert.Equal(0m, optimized.CostOf("B", 1_000m, 100_000m));
    }
}
