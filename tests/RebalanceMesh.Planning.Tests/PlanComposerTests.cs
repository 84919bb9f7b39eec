using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

public class PlanComposerTests
{
    /// <summary>Answers from a fixed covariance of A, B, C and counts what it is asked.</summary>
    private sealed class CountingMarket : IPlanningMarketData
    {
        public List<string[]> Requests { get; } = [];

        public Task<CovarianceEstimate> EstimateCovarianceAsync(IReadOnlyList<string> instruments, int lookbackDays, CancellationToken cancellationToken)
        {
            Requests.Add([.. instruments]);
            var full = new CovarianceEstimate(["A", "B", "C"], new double[,] { { 0.04, 0.01, 0.0 }, { 0.01, 0.09, 0.02 }, { 0.0, 0.02, 0.16 } }, [0.05, 0.06, 0.07]);
            return Task.FromResult(full.Restrict(instruments));
        }

        public Task<IReadOnlyDictionary<string, double>> HalfSpreadsAsync(IReadOnlyList<string> instruments, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyDictionary<string, double>>(new Dictionary<string, double>());
    }

    /// <summary>A rule written outside the planner: cash in every currency above a ceiling triggers a rebalance.</summary>
    private sealed record MaxCashWeight(double Ceiling) : ITriggerRule
    {
        public void Measure(in TriggerInput input, List<DriftReason> reasons)
        {
            var cash = input.Marked.TotalCashWeight;
            reasons.Add(new DriftReason("max_cash", string.Empty, cash, Ceiling, cash > Ceiling, $"cash {cash:P2} vs ceiling {Ceiling:P2}"));
        }
    }

    [Fact]
    public async Task A_new_trigger_rule_is_one_part_that_the_monitor_and_the_pipeline_both_measure()
    {
        // 57 A at 100 and 4,300 cash: A is 57 % against a 60 % target, inside its ±5 pp band; cash is 43 %, over a
        // 30 % ceiling. Only the new part can trigger, and force is off.
        var snapshot = new PortfolioSnapshot("p", [new Holding("A", 57m)], 4_300m, 1);
        var marks = new Dictionary<string, InstrumentMark> { ["A"] = InstrumentMark.Spot(100m) };
        var bands = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.6 }, TradeRules.Default, new DriftBands(0.05));
        var withRule = bands.With(new MaxCashWeight(0.30));

        Assert.False(PlanComposer.Assess(snapshot, bands, marks).Bands.Breached);
        var assessed = PlanComposer.Assess(snapshot, withRule, marks, describeAll: false);
        var reason = Assert.Single(assessed.Reasons, r => r.Rule == "max_cash");
        Assert.True(reason.Breached);
        Assert.Equal(0.43, reason.Measured, 12);

        // The monitor's fast path does not speak for a policy with a rule it does not know.
        Assert.NotNull(BandScreen.TryCompile(snapshot, bands, _ => 0));
        Assert.Null(BandScreen.TryCompile(snapshot, withRule, _ => 0));

        // The pipeline rebalances on it, back to target: buy 3 A; without the part nothing trades.
        var composed = await PlanComposer.ComposeAsync(snapshot, withRule, marks, force: false, new CountingMarket(), TimeProvider.System, CancellationToken.None);
        Assert.Contains(composed.Proposal.Evaluation.Reasons, r => r.Rule == "max_cash" && r.Breached);
        var leg = Assert.Single(composed.Proposal.Legs);
        Assert.Equal(("A", TradeSide.Buy, 3m), (leg.InstrumentId, leg.Side, leg.Quantity));
        Assert.False((await PlanComposer.ComposeAsync(snapshot, bands, marks, force: false, new CountingMarket(), TimeProvider.System, CancellationToken.None)).Proposal.HasTrades);
        Assert.Throws<ArgumentException>(() => TargetPolicy.Of(bands.Targets, TradeRules.Default, new DriftBands(0.05), new DriftBands(0.1)));
    }

    [Fact]
    public async Task One_estimate_serves_every_later_request_it_covers()
    {
        var inner = new CountingMarket();
        var shared = new SharedMarketData(inner);
        var all = await shared.EstimateCovarianceAsync(["A", "B", "C"], 250, CancellationToken.None);
        var pair = await shared.EstimateCovarianceAsync(["C", "A"], 250, CancellationToken.None);
        Assert.Single(inner.Requests);
        Assert.Equal(0.16, pair.AnnualCovariance[0, 0]);
        Assert.Equal(0.0, pair.AnnualCovariance[0, 1]);
        Assert.Equal(0.04, pair.AnnualCovariance[1, 1]);
        Assert.Equal([0.07, 0.05], pair.AnnualMeans);
        Assert.Same(all, await shared.EstimateCovarianceAsync(["A", "B", "C"], 250, CancellationToken.None));

        // Another lookback is another estimate.
        await shared.EstimateCovarianceAsync(["A"], 60, CancellationToken.None);
        Assert.Equal(2, shared.Fetches);
    }

    [Fact]
    public async Task A_computed_model_its_volatility_limit_and_the_optimiser_share_one_covariance()
    {
        // Inverse volatility over A, B (σ 20 %, 30 %): 0.9 × (5, 3.33)/(8.33) = 0.54, 0.36; a 15 % volatility limit
        // then scales the invested share; the optimiser trades the same universe. One estimate is fetched.
        var inner = new CountingMarket();
        var market = new SharedMarketData(inner);
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.45, ["B"] = 0.45 }, TradeRules.Default with { EstimatedCostBps = 10 },
            new DriftBands(0.02),
            new OptimizerPolicy(OptimizerObjective.TrackingError, 1, 10, 1, new Dictionary<string, decimal>(), null, null, new Dictionary<string, (double, double)>(), 0, []),
            new RiskLimits(0, 0.15, 0),
            new TargetModelSpec(TargetModel.InverseVolatility));
        var (resolved, reasons) = await PlanComposer.ResolvePolicyAsync(policy, market, CancellationToken.None);
        Assert.Equal(0.54 / 0.9, resolved.Targets["A"] / (resolved.Targets["A"] + resolved.Targets["B"]), 12);
        Assert.Contains(reasons, r => r.Rule == PlanComposer.TargetModelRule);
        Assert.Equal(0.15, RiskLimitRules.Volatility(resolved.Targets, resolved.Part<RiskLimits>()!.Model!), 9);

        var snapshot = new PortfolioSnapshot("p", [], 100_000m, 1);
        var marks = new Dictionary<string, InstrumentMark> { ["A"] = InstrumentMark.Spot(100m), ["B"] = InstrumentMark.Spot(50m) };
        var composed = await PlanComposer.ComposeAsync(snapshot, resolved, marks, force: true, market, TimeProvider.System, CancellationToken.None);
        Assert.NotNull(composed.Optimized);
        Assert.True(composed.Proposal.HasTrades);
        Assert.Single(inner.Requests);
    }

    [Fact]
    public void Each_hedge_follows_the_last_leg_on_its_underlying_and_hedges_of_untraded_underlyings_go_first()
    {
        // Legs: sell A, sell B, buy A, buy C. A call on A counts as A; hedges on A (after leg 2), on C (after leg 3),
        // and on D (no leg: first).
        var marked = new MarkedPortfolio(
        [
            new MarkedPosition("A", 1, 1, 1, 0), new MarkedPosition("B", 1, 1, 1, 0), new MarkedPosition("C", 1, 1, 1, 0),
            new MarkedPosition("A-CALL", 1, 1, 1, 0, Underlying: "A"),
        ], 0, 4);
        PlannedLeg Leg(string id) => new("L", 0, id, TradeSide.Buy, 1, 1, 1, 0, 0, 0);
        HedgeLeg Hedge(string underlying) => new(underlying, underlying + "-PERP", TradeSide.Sell, 1, 1, 1, 0, 0, string.Empty);
        PlannedLeg[] legs = [Leg("A"), Leg("B"), Leg("A-CALL"), Leg("C")];
        HedgeLeg[] hedges = [Hedge("A"), Hedge("C"), Hedge("D")];
        Assert.Equal(
            [(false, 2), (true, 0), (true, 1), (true, 2), (false, 0), (true, 3), (false, 1)],
            PlanComposer.Interleave(legs, hedges, marked));
    }
}
