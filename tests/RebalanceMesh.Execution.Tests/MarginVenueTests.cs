using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Simulators;

namespace RebalanceMesh.Execution.Tests;

/// <summary>The margin venue's rules against hand-computed cases.</summary>
public sealed class MarginVenueTests
{
    private static readonly MarginTerms Terms = new(MaintenanceRate: 0.05m, LiquidationFeeRate: 0.01m, InitialRate: 0.10m);

    private static MarginAccountState ShortPerp(decimal collateral = 1_000m) =>
        new("SIM-B", "p1", "EUR", collateral, [new MarginPosition("DAX-PERP", -10m, 100m, 1m)]);

    [Fact]
    public void Equity_maintenance_and_ratio_by_hand()
    {
        // Short 10 from 100 with 1,000 of collateral. At 190: E = 1,000 − 90 × 10 = 100, M = 10 × 190 × 5 % = 95.
        var account = ShortPerp();
        Assert.Equal(100m, MarginVenue.Equity(account, _ => 190m));
        Assert.Equal(95m, MarginVenue.Maintenance(account, _ => 190m, Terms));
        Assert.Equal(100.0 / 95.0, MarginVenue.Ratio(account, _ => 190m, Terms), 12);
        Assert.Equal(double.PositiveInfinity, MarginVenue.Ratio(account with { Positions = [] }, _ => 190m, Terms));
    }

    [Fact]
    public void Above_maintenance_nothing_is_liquidated()
    {
        var (after, calls) = MarginVenue.Liquidate(ShortPerp(), _ => 190m, Terms);
        Assert.Empty(calls);
        Assert.Equal((1_000m, -10m, 0), (after.Collateral, after.Positions.Single().Quantity, after.Liquidations));
    }

    [Fact]
    public void Below_maintenance_the_venue_closes_at_the_mark_just_enough_to_restore_the_initial_margin()
    {
        // At 195: E = 1,000 − 950 = 50 < M = 97.5; initial margin I = 10 × 195 × 10 % = 195. Closing c contracts costs
        // c × 195 × 1 % of fee and frees c × 195 × 10 % of initial margin: c = (195 − 50) / (195 × 9 %) = 8.262108…,
        // rounded up to 8.26210827. Realised (195 − 100) × −8.26210827 = −784.90028565, fee 16.1111111265:
        // collateral 198.9886032235; 1.73789173 short stay at entry 100, E = 33.8888888735 ≥ I = 33.888888735 — a
        // margin ratio of 2.
        var (after, calls) = MarginVenue.Liquidate(ShortPerp(), _ => 195m, Terms);
        var call = Assert.Single(calls);
        Assert.Equal(("DAX-PERP", 8.26210827m, 195m, 16.1111111265m, -784.90028565m), (call.Instrument, call.ClosedQuantity, call.Price, call.Fee, call.RealizedPnl));
        Assert.Equal(50.0 / 97.5, call.RatioBefore, 12);
        Assert.Equal(2.0, call.RatioAfter, 7);
        Assert.Equal((198.9886032235m, -1.73789173m, 100m, 1), (after.Collateral, after.Positions.Single().Quantity, after.Positions.Single().EntryPrice, after.Liquidations));
        Assert.True(MarginVenue.Equity(after, _ => 195m) >= MarginVenue.Initial(after, _ => 195m, Terms));
    }

    [Fact]
    public void An_account_whose_equity_is_gone_loses_the_whole_position()
    {
        // At 205: E = 1,000 − 1,050 = −50. No partial close restores it: all 10 close, realised −1,050, fee 20.5,
        // collateral −70.5 (the venue books it as it is; there is no insurance fund).
        var (after, calls) = MarginVenue.Liquidate(ShortPerp(), _ => 205m, Terms);
        var call = Assert.Single(calls);
        Assert.Equal((10m, 20.5m, -1_050m), (call.ClosedQuantity, call.Fee, call.RealizedPnl));
        Assert.Equal(double.PositiveInfinity, call.RatioAfter);
        Assert.Equal((-70.5m, 0), (after.Collateral, after.Positions.Count));
    }

    [Fact]
    public void A_top_up_in_time_prevents_the_liquidation()
    {
        // 100 more collateral: E = 150 ≥ M = 97.5 at 195.
        var (after, calls) = MarginVenue.Liquidate(MarginVenue.TopUp(ShortPerp(), 100m), _ => 195m, Terms);
        Assert.Empty(calls);
        Assert.Equal(1_100m, after.Collateral);
        Assert.Throws<ArgumentOutOfRangeException>(() => MarginVenue.TopUp(ShortPerp(), 0m));
    }

    [Fact]
    public void The_largest_position_goes_first_and_liquidation_stops_once_maintenance_is_covered()
    {
        // Long 20 A at entry 100 (now 80) and long 5 B at entry 100 (now 100), collateral 450.
        // E = 450 − 400 = 50; M = (20 × 80 + 5 × 100) × 5 % = 105, I = 210 → A first (notional 1,600 > 500); restoring
        // the initial margin would take (210 − 50) / (80 × 9 %) = 22.2 > 20 contracts, so all of A closes: realised
        // −400, fee 16: collateral 450 − 400 − 16 = 34 = E; M = 25 → ratio 1.36, covered: B stays.
        var account = new MarginAccountState("SIM-A", "p1", "EUR", 450m, [new MarginPosition("A", 20m, 100m, 1m), new MarginPosition("B", 5m, 100m, 1m)]);
        var marks = new Dictionary<string, decimal> { ["A"] = 80m, ["B"] = 100m };
        var (after, calls) = MarginVenue.Liquidate(account, i => marks[i], Terms);
        var call = Assert.Single(calls);
        Assert.Equal(("A", -20m, -400m, 16m), (call.Instrument, call.ClosedQuantity, call.RealizedPnl, call.Fee));
        Assert.Equal(34m / 25m, (decimal)call.RatioAfter, 10);
        Assert.Equal((34m, "B"), (after.Collateral, after.Positions.Single().Instrument));
    }

    [Fact]
    public void Collateral_leaves_only_while_what_stays_covers_the_initial_margin()
    {
        // At 100: E = 1,000, initial 10 × 100 × 10 % = 100 → up to 900 may leave.
        var (after, reason) = MarginVenue.Withdraw(ShortPerp(), 900m, _ => 100m, Terms);
        Assert.Equal((100m, string.Empty), (after!.Collateral, reason));
        Assert.Contains("initial margin", MarginVenue.Withdraw(ShortPerp(), 900.01m, _ => 100m, Terms).Reason);
        Assert.Contains("only 1000", MarginVenue.Withdraw(ShortPerp(), 1_001m, _ => 100m, Terms).Reason);
        Assert.Null(MarginVenue.Withdraw(ShortPerp(), 0m, _ => 100m, Terms).After);
    }

    [Fact]
    public void Fills_average_the_entry_realise_on_reduction_and_flip()
    {
        var account = new MarginAccountState("SIM-A", "p1", "EUR", 1_000m, []);
        account = MarginVenue.ApplyFill(account, "X", 5m, 100m, 1m, 2m);   // long 5 @ 100, fee 1
        account = MarginVenue.ApplyFill(account, "X", 5m, 110m, 1m, 2m);   // long 10 @ 105, fee 1
        Assert.Equal((10m, 105m, 998m), (account.Positions.Single().Quantity, account.Positions.Single().EntryPrice, account.Collateral));

        account = MarginVenue.ApplyFill(account, "X", -4m, 120m, 1m, 2m);  // realise (120 − 105) × 4 × 2 = 120, fee 1
        Assert.Equal((6m, 105m, 1_117m), (account.Positions.Single().Quantity, account.Positions.Single().EntryPrice, account.Collateral));

        account = MarginVenue.ApplyFill(account, "X", -8m, 100m, 1m, 2m);  // close 6: (100 − 105) × 6 × 2 = −60; short 2 @ 100
        Assert.Equal((-2m, 100m, 1_056m), (account.Positions.Single().Quantity, account.Positions.Single().EntryPrice, account.Collateral));

        account = MarginVenue.ApplyFill(account, "X", 2m, 90m, 0m, 2m);    // close the short: (90 − 100) × −2 × 2 = +40
        Assert.Equal((0, 1_096m), (account.Positions.Count, account.Collateral));
    }
}

/// <summary>The resting (maker) order's fill rule against hand-computed quotes.</summary>
public sealed class RestingOrderTests
{
    private static readonly VenueSpec Venue = new("SIM-A", TakerFeeBps: 10, MakerFeeBps: 2, ParticipationCap: 0.5);

    [Fact]
    public void A_resting_order_fills_only_when_the_market_comes_to_it_at_its_price_with_the_maker_fee()
    {
        var away = new VenueQuote("SIM-A", 99.9m, 100.1m, 100m, 100m);
        Assert.Equal(99.9m, RestingOrder.PostPrice(OrderSide.Buy, away));
        Assert.Equal(100.1m, RestingOrder.PostPrice(OrderSide.Sell, away));
        Assert.Equal(0m, SimulatedRestingOrder.Fill("o", OrderSide.Buy, 99.9m, 30m, Venue, away).FilledQuantity);

        // The ask comes down to 99.9 showing 40: half of it (the cap), 20, fills at 99.9; fee 20 × 99.9 × 2 bp.
        var crossed = new VenueQuote("SIM-A", 99.8m, 99.9m, 100m, 40m);
        var fill = SimulatedRestingOrder.Fill("o", OrderSide.Buy, 99.9m, 30m, Venue, crossed);
        Assert.Equal((20m, 99.9m, 0.3996m), (fill.FilledQuantity, fill.Price, fill.Fee));
        Assert.Equal(5m, SimulatedRestingOrder.Fill("o", OrderSide.Buy, 99.9m, 30m, Venue, crossed, taken: 15m).FilledQuantity);   // the same quote, partly used
        Assert.Equal(0m, SimulatedRestingOrder.Fill("o", OrderSide.Buy, 99.9m, 30m, Venue, crossed, taken: 20m).FilledQuantity);
        Assert.Equal(3m, SimulatedRestingOrder.Fill("o", OrderSide.Buy, 99.9m, 3m, Venue, crossed).FilledQuantity);                // no more than is open

        // A resting sell at 100.1 fills when the bid reaches it; a venue that is down fills nothing.
        Assert.Equal(10m, SimulatedRestingOrder.Fill("o", OrderSide.Sell, 100.1m, 10m, Venue, new VenueQuote("SIM-A", 100.1m, 100.2m, 60m, 60m)).FilledQuantity);
        Assert.Equal(0m, SimulatedRestingOrder.Fill("o", OrderSide.Buy, 99.9m, 30m, Venue with { Available = false }, crossed).FilledQuantity);
    }
}

/// <summary>Spot units in a venue account.</summary>
public sealed class VenueSpotTests
{
    [Fact]
    public void Sells_are_limited_to_the_units_held_and_fills_move_them()
    {
        var account = new MarginAccountState("SIM-A", "p1", "EUR", 0m, [], Spot: new Dictionary<string, decimal> { ["DAX"] = 5m });
        Assert.Null(MarginVenue.SpotSellRefusal(account, "DAX", 5m));
        Assert.Equal("insufficient balance: the SIM-A account holds 5 DAX, the order sells 5.5", MarginVenue.SpotSellRefusal(account, "DAX", 5.5m));
        Assert.Contains("holds 0 SMI", MarginVenue.SpotSellRefusal(account, "SMI", 1m));

        var after = MarginVenue.ApplySpotFill(MarginVenue.ApplySpotFill(account, "DAX", -5m), "SMI", 3m);
        Assert.Equal((0m, 3m), (after.SpotUnits("DAX"), after.SpotUnits("SMI")));
        Assert.Throws<InvalidOperationException>(() => MarginVenue.ApplySpotFill(after, "SMI", -4m));
    }
}
