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

    /// <summary>Short 10 DAX-PERP from 100 in the SIM-B margin account (170 of collateral), marked at 110.</summary>
    private static PortfolioSnapshot IsolatedShort(decimal cash) =>
        new("p", [new Holding("DAX-PERP", -10m, 100m, "SIM-B")], cash, 1, MarginAccounts: [new MarginCollateral("SIM-B", 170m)]);

    [Fact]
    public void A_margin_account_is_margined_on_its_own_and_topped_up_from_free_cash()
    {
        // Account SIM-B: E = 170 + (110 − 100) × −10 = 70, M = 10 × 110 × 5 % = 55, ratio 1.2727 < 1.5. Top-up to the
        // target 2: 2 × 55 − 70 = 40. Net value counts the collateral: 1,000 + 170 − 100 = 1,070.
        var marks = new Dictionary<string, InstrumentMark> { ["DAX-PERP"] = Perp(110m) };
        var portfolio = IsolatedShort(1_000m);
        var marked = PortfolioMarking.Mark(portfolio, null, marks);
        Assert.Equal(1_070m, marked.NetValue);

        var plan = MarginGuard.Plan(marked, portfolio.Holdings, marks, Band, 0m, portfolio.MarginAccountList, portfolio.Cash);
        var reason = Assert.Single(plan.Reasons);
        Assert.Equal(("SIM-B", 70.0 / 55.0, true), (reason.InstrumentId, reason.Measured, reason.Breached));
        Assert.False(plan.Emergency);
        Assert.Empty(plan.Legs);
        Assert.Equal(("SIM-B", 40m), (Assert.Single(plan.TopUpList).Venue, plan.TopUpList[0].Amount));

        var after = MarginGuard.Apply(portfolio, plan, 0m);
        Assert.Equal((960m, 210m), (after.Cash, after.MarginAccountList.Single().Collateral));
        Assert.False(MarginGuard.Plan(PortfolioMarking.Mark(after, null, marks), after.Holdings, marks, Band, 0m, after.MarginAccountList, after.Cash).Acts);
    }

    [Fact]
    public void What_free_cash_cannot_restore_is_done_by_closing_in_that_account()
    {
        // Only 25 of cash: E = 95 after the top-up, 15 short of 2 × 55. Without costs each contract closed frees
        // 110 × 2 × 5 % = 11 → 2 contracts: M 44, ratio 95 / 44 = 2.159. The buy realises 2 × (110 − 100) × −1 = −20 in
        // the account: collateral 170 + 25 − 20 = 175; 8 short remain.
        var marks = new Dictionary<string, InstrumentMark> { ["DAX-PERP"] = Perp(110m) };
        var portfolio = IsolatedShort(25m);
        var plan = MarginGuard.Plan(PortfolioMarking.Mark(portfolio, null, marks), portfolio.Holdings, marks, Band, 0m, portfolio.MarginAccountList, portfolio.Cash);
        Assert.Equal(25m, Assert.Single(plan.TopUpList).Amount);
        Assert.Equal(("DAX-PERP", "SIM-B", TradeSide.Buy, 2m), (Assert.Single(plan.Legs).Instrument, plan.Legs[0].Venue, plan.Legs[0].Side, plan.Legs[0].Quantity));
        Assert.Contains("margin ratio of the SIM-B account 1.7273 → 2.1591", plan.Legs[0].Reason);

        var after = MarginGuard.Apply(portfolio, plan, 0m);
        Assert.Equal((0m, 175m, -8m), (after.Cash, after.MarginAccountList.Single().Collateral, after.Holdings.Single().Quantity));
    }

    [Fact]
    public void Without_free_cash_collateral_moves_from_another_venues_account_beyond_its_own_target()
    {
        // No cash; SIM-B needs 40 (as above). SIM-A holds 1,000 of collateral and no position: all of it is beyond its
        // target, so 40 move from SIM-A to SIM-B and nothing is closed.
        var marks = new Dictionary<string, InstrumentMark> { ["DAX-PERP"] = Perp(110m) };
        var portfolio = IsolatedShort(0m) with { MarginAccounts = [new MarginCollateral("SIM-A", 1_000m), new MarginCollateral("SIM-B", 170m)] };
        var plan = MarginGuard.Plan(PortfolioMarking.Mark(portfolio, null, marks), portfolio.Holdings, marks, Band, 0m, portfolio.MarginAccountList, portfolio.Cash);
        Assert.Empty(plan.TopUpList);
        Assert.Empty(plan.Legs);
        Assert.Equal(("SIM-A", "SIM-B", 40m), (Assert.Single(plan.TransferList).FromVenue, plan.TransferList[0].ToVenue, plan.TransferList[0].Amount));

        var after = MarginGuard.Apply(portfolio, plan, 0m);
        Assert.Equal([new MarginCollateral("SIM-A", 960m), new MarginCollateral("SIM-B", 210m)], after.MarginAccountList);
        Assert.Equal(0m, after.Cash);
        Assert.Throws<ArgumentException>(() => PortfolioLedger.ApplyCollateralTransfer(portfolio, "SIM-C", "SIM-B", 1m)); // no account there
    }

    [Fact]
    public void A_venue_liquidation_settles_in_its_account_or_in_cash_without_one()
    {
        // SIM-B closed the short of 10 at 195: realised −950, fee 24.375 → collateral 170 − 974.375 (the venue's insurance
        // takes what is below zero; planning books what the venue reports).
        var liquidated = PortfolioLedger.ApplyMarginLiquidation(IsolatedShort(1_000m), "SIM-B", "DAX-PERP", 10m, -950m, 24.375m);
        Assert.Empty(liquidated.Holdings);
        Assert.Equal((1_000m, 170m - 974.375m), (liquidated.Cash, liquidated.MarginAccountList.Single().Collateral));

        var noAccount = new PortfolioSnapshot("p", [new Holding("DAX-PERP", -10m, 100m, "SIM-A")], 1_000m, 1);
        var settled = PortfolioLedger.ApplyMarginLiquidation(noAccount, "SIM-A", "DAX-PERP", 4m, -40m, 4m);
        Assert.Equal((956m, -6m, 100m), (settled.Cash, settled.Holdings.Single().Quantity, settled.Holdings.Single().EntryPrice!.Value));
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
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5 }, TradeRules.Default, new DriftBands(0.05), Band);
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
