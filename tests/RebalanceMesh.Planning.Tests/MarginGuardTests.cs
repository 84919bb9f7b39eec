using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>The margin guard on hand-computed books of perpetuals (multiplier 1, maintenance 5 %).</summary>
public class MarginGuardTests
{
    private static readonly MarginBand Band = new(Target: 2.0, ActBelow: 1.5, EmergencyBelow: 1.1, MaintenanceRate: 0.05);

    private static InstrumentMark Perp(decimal price) => new(price, Margined: true, Multiplier: 1m, DeltaExposure: (double)price, Underlying: price.ToString(System.Globalization.CultureInfo.InvariantCulture));

    [Fact]
    public void Losing_positions_close_first_ranked_by_margin_freed_per_unit_of_loss()
    {
        // X at 100: long 100 from 110 (loss 10 a contract); Y at 200: short 50 from 190 (loss 10 a contract); Z at 50:
        // long 100 from 40 (in profit). Cash 1,500: net value 1,500 − 1,000 − 500 + 1,000 = 1,000.
        // Maintenance 5 % of (10,000 + 10,000 + 5,000) = 1,250: ratio 0.8 < 1.5 (and below the emergency 1.1).
        // Freed per unit of loss: X 5 / 10 = 0.5, Y 10 / 10 = 1 → Y first. No costs: k = (2 × 1,250 − 1,000) / (U × 0.1).
        // Y: U 200 → k = 75, capped at its 50: M 750, ratio 1.3333. X: k = (1,500 − 1,000) / 10 = 50 → M 500, ratio 2.
        var marks = new Dictionary<string, InstrumentMark> { ["X"] = Perp(100m), ["Y"] = Perp(200m), ["Z"] = Perp(50m) };
        var portfolio = new PortfolioSnapshot("p", [new Holding("X", 100m, 110m, "SIM-A"), new Holding("Y", -50m, 190m, "SIM-B"), new Holding("Z", 100m, 40m)], 1_500m, 1);
        var marked = PortfolioMarking.Mark(portfolio, null, marks);
        Assert.Equal(1_000m, marked.NetValue);

        var plan = MarginGuard.Plan(marked, portfolio.Holdings, marks, Band, costRate: 0m);
        Assert.True(plan.Emergency);
        Assert.Equal(0.8, plan.Reasons[0].Measured, 12);
        Assert.Equal([("Y", "SIM-B", TradeSide.Buy, 50m), ("X", "SIM-A", TradeSide.Sell, 50m)], plan.Legs.Select(l => (l.Instrument, l.Venue, l.Side, l.Quantity)));
        Assert.Contains("margin ratio 0.8000 → 1.3333", plan.Legs[0].Reason);
        Assert.Contains("margin ratio 1.3333 → 2.0000", plan.Legs[1].Reason);

        // Carried out: losses realised into cash, the rest unchanged; the ratio is at the target.
        var after = MarginGuard.Apply(portfolio, plan, 0m);
        Assert.Equal(1_500m - 500m - 500m, after.Cash); // Y: 50 × (190 − 200); X: 50 × (100 − 110)
        Assert.Equal([new Holding("X", 50m, 110m, "SIM-A"), new Holding("Z", 100m, 40m)], after.Holdings);
        var again = MarginGuard.Plan(PortfolioMarking.Mark(after, null, marks), after.Holdings, marks, Band, 0m);
        Assert.Equal(2.0, again.Reasons[0].Measured, 12);
        Assert.False(again.Acts);
    }

    [Fact]
    public void Costs_are_paid_out_of_equity_and_a_target_beyond_reach_is_said()
    {
        // One long of 100 X at 100 from 100, cash 600: E 600, M 500, ratio 1.2. Costs 10 bp: per contract closed E
        // falls 0.1 and M 5: k = ⌈(2 × 500 − 600) / (100 × (0.1 − 0.001))⌉ = ⌈40.404⌉ = 41 → E 595.9, M 295, 2.02.
        var marks = new Dictionary<string, InstrumentMark> { ["X"] = Perp(100m) };
        var portfolio = new PortfolioSnapshot("p", [new Holding("X", 100m, 100m)], 600m, 1);
        var plan = MarginGuard.Plan(PortfolioMarking.Mark(portfolio, null, marks), portfolio.Holdings, marks, Band, costRate: 0.001m);
        Assert.False(plan.Emergency);
        Assert.Equal(41m, Assert.Single(plan.Legs).Quantity);
        var after = MarginGuard.Apply(portfolio, plan, 0.001m);
        Assert.Equal(600m - 4.1m, after.Cash);

        // With costs above the target's margin rate (T·m = 0.1 < c = 0.2) nothing helps: the guard says so.
        var hopeless = MarginGuard.Plan(PortfolioMarking.Mark(portfolio, null, marks), portfolio.Holdings, marks, Band, costRate: 0.2m);
        Assert.Empty(hopeless.Legs);
        Assert.Contains(hopeless.Reasons, r => r.Message.Contains("out of reach", StringComparison.Ordinal));

        // Inside the band: nothing to do; no margined position: no plan at all.
        var healthy = portfolio with { Cash = 2_000m };
        Assert.False(MarginGuard.Plan(PortfolioMarking.Mark(healthy, null, marks), healthy.Holdings, marks, Band, 0m).Acts);
        var spot = new PortfolioSnapshot("p", [new Holding("S", 1m)], 0m, 1);
        var spotMarks = new Dictionary<string, InstrumentMark> { ["S"] = InstrumentMark.Spot(10m) };
        Assert.Empty(MarginGuard.Plan(PortfolioMarking.Mark(spot, null, spotMarks), spot.Holdings, spotMarks, Band, 0m).Reasons);
    }

    [Fact]
    public async Task In_an_emergency_the_plan_is_the_margin_legs_alone()
    {
        var marks = new Dictionary<string, InstrumentMark> { ["X"] = Perp(100m), ["A"] = InstrumentMark.Spot(10m) };
        var portfolio = new PortfolioSnapshot("p", [new Holding("X", 100m, 110m)], 1_500m, 1); // E 500, M 500: ratio 1
        var policy = new TargetPolicy(new Dictionary<string, double> { ["A"] = 0.5 }, 0.05, 0, 0, RebalanceTarget.Target, 0m, new Dictionary<string, decimal>(), 0, Margin: Band);
        var composed = await PlanComposer.ComposeAsync(portfolio, policy, marks, force: true, new SharedMarketData(new NoMarket()), TimeProvider.System, CancellationToken.None);
        Assert.True(composed.Emergency);
        Assert.NotEmpty(composed.MarginLegs);
        Assert.False(composed.Proposal.HasTrades);
        Assert.Equal(100m - composed.MarginLegs[0].Quantity, composed.Snapshot.QuantityOf("X"));
    }

    private sealed class NoMarket : IPlanningMarketData
    {
        public Task<CovarianceEstimate> EstimateCovarianceAsync(IReadOnlyList<string> instruments, int lookbackDays, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("not needed");

        public Task<IReadOnlyDictionary<string, double>> HalfSpreadsAsync(IReadOnlyList<string> instruments, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("not needed");
    }
}
