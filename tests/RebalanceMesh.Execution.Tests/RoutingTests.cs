using RebalanceMesh.Execution.Core;

using RebalanceMesh.Execution.Simulators;

namespace RebalanceMesh.Execution.Tests;

public class RoutingTests
{
    private static readonly VenueSpec[] Venues = [new("A", 10, 0), new("B", 2, 0), new("C", 5, 0, Available: false)];

    [Fact]
    public void Buys_go_to_the_lowest_all_in_price_not_the_lowest_quote()
    {
        // A asks 100.00 with 10 bps → 100.10; B asks 100.05 with 2 bps → 100.07002: B is cheaper all-in.
        var quotes = new[] { new VenueQuote("A", 99.9m, 100.00m, 50, 50), new VenueQuote("B", 99.8m, 100.05m, 50, 50) };
        var orders = SmartOrderRouter.Route(new LegOrder("p", "L1", "X", OrderSide.Buy, 10), Venues, quotes);
        var order = Assert.Single(orders);
        Assert.Equal("B", order.VenueId);
        Assert.Equal(100.05m * 1.0002m, order.AllInPrice);
    }

    [Fact]
    public void Sells_go_to_the_highest_all_in_bid_and_split_by_displayed_size()
    {
        // Sell all-in: A 100·0.999 = 99.9, B 99.95·0.9998 = 99.93001 → B first (size 30), then A.
        var quotes = new[] { new VenueQuote("A", 100m, 101m, 100, 100), new VenueQuote("B", 99.95m, 101m, 30, 30) };
        var orders = SmartOrderRouter.Route(new LegOrder("p", "L1", "X", OrderSide.Sell, 50), Venues, quotes);
        Assert.Equal([("B", 30m), ("A", 20m)], orders.Select(o => (o.VenueId, o.Quantity)));
        Assert.Equal(["p:L1:1", "p:L1:2"], orders.Select(o => o.ClientOrderId));
    }

    [Fact]
    public void Quantity_beyond_every_book_is_not_routed()
    {
        // B shows 5 at the touch and nothing deeper: 5 of 12 are routed, the rest is the executor's to report.
        var quotes = new[] { new VenueQuote("B", 99m, 100m, 5, 5) };
        var order = Assert.Single(SmartOrderRouter.Route(new LegOrder("p", "L1", "X", OrderSide.Buy, 12), Venues, quotes));
        Assert.Equal(5m, order.Quantity);
    }

    [Fact]
    public void Books_are_walked_across_venues_cheapest_level_first_within_each_participation_cap()
    {
        // A: asks 100.00 × 10, 100.02 × 15, 100.04 × 20 (2 bp steps, +50 % size a level), no fee.
        // B: asks 100.01 × 10, 100.03 × 15, … with a 1 bp fee: all-in 100.02, 100.04, …
        // Buy 40: A 100.00 (10), B 100.02 all-in ties A 100.02 → A first by name (15), then B 100.02 (10), then A 100.04
        // and B 100.04 … A is capped at half its 45 displayed = 22.5.
        var book = new BookProfile(Levels: 3, LevelStepBps: 2, SizeGrowth: 0.5);
        var venues = new[] { new VenueSpec("A", 0, 0, Book: book, ParticipationCap: 0.5), new VenueSpec("B", 1, 0, Book: book) };
        var quotes = new[] { new VenueQuote("A", 99.98m, 100.00m, 10, 10), new VenueQuote("B", 99.99m, 100.01m, 10, 10) };
        var children = SmartOrderRouter.Route(new LegOrder("p", "L1", "X", OrderSide.Buy, 40), venues, quotes);
        Assert.Equal([("A", 22.5m), ("B", 17.5m)], children.Select(c => (c.VenueId, c.Quantity)));
        Assert.Equal(decimal.Round(((10m * 100m) + (12.5m * 100.02m)) / 22.5m, 8), children[0].ExpectedPrice);
        var b = OrderBook.FromQuote(quotes[1], book);
        Assert.Equal(decimal.Round(((10m * 100.01m) + (7.5m * b.Asks[1].Price)) / 17.5m, 8), children[1].ExpectedPrice);

        // Each child's limit is the deepest level its routing walked: the venue fills it the same, and no worse.
        Assert.Equal([100.02m, b.Asks[1].Price], children.Select(c => c.WorstPrice));
        Assert.Equal([100.00m, 100.01m], children.Select(c => c.BestPrice));
        foreach (var (child, quote) in children.Zip(quotes))
        {
            var venue = venues.First(v => v.VenueId == child.VenueId);
            var limited = SimulatedVenue.Execute(child, OrderSide.Buy, venue, quote, child.WorstPrice);
            Assert.Equal((child.Quantity, child.ExpectedPrice), (limited.FilledQuantity, limited.Price));
        }

        // The venue fills an order by walking the same book: 30 at A takes 10 + 15 + 5.
        var (filled, price) = OrderBook.FromQuote(quotes[0], book).Walk(OrderSide.Buy, 30);
        Assert.Equal((30m, decimal.Round(((10m * 100m) + (15m * 100.02m) + (5m * 100.04m)) / 30m, 8)), (filled, price));
        Assert.Equal(45m, OrderBook.FromQuote(quotes[0], book).Depth(OrderSide.Buy));
        Assert.Equal(25m, OrderBook.FromQuote(quotes[0], book).Depth(OrderSide.Buy, limit: 100.03m));
    }

    [Fact]
    public void A_partial_fill_leaves_the_rest_expired_and_order_states_only_move_forward()
    {
        var venue = new VenueSpec("A", 10, 0, Book: new BookProfile(Levels: 2, LevelStepBps: 10, SizeGrowth: 0));
        var quote = new VenueQuote("A", 99m, 100m, 10, 10);
        var order = new ChildOrder("p:L1:1", "A", 30m, 100m, 100.1m, 100m, 100m);
        var partial = SimulatedVenue.Execute(order, OrderSide.Buy, venue, quote, limitPrice: 100.05m); // only the touch is within
        Assert.Equal((10m, 100m), (partial.FilledQuantity, partial.Price));
        Assert.Equal(OrderStates.State.PartiallyFilled, OrderStates.AfterExecution(partial, 30m));
        Assert.Equal(OrderStates.State.Expired, OrderStates.AfterExecution(SimulatedVenue.Execute(order, OrderSide.Buy, venue, quote, limitPrice: 99m), 30m));
        Assert.Equal(OrderStates.State.Filled, OrderStates.AfterExecution(SimulatedVenue.Execute(order with { Quantity = 20m }, OrderSide.Buy, venue, quote), 20m));
        Assert.Equal(OrderStates.State.Rejected, OrderStates.AfterExecution(SimulatedVenue.Execute(order, OrderSide.Buy, venue with { Available = false }, quote), 30m));
        Assert.True(OrderStates.CanMove(OrderStates.State.New, OrderStates.State.Sent));
        Assert.True(OrderStates.CanMove(OrderStates.State.New, OrderStates.State.Cancelled));
        Assert.False(OrderStates.CanMove(OrderStates.State.Filled, OrderStates.State.Sent));
        Assert.False(OrderStates.CanMove(OrderStates.State.Sent, OrderStates.State.New));
        Assert.All(Enum.GetValues<OrderStates.State>().Where(OrderStates.IsFinal), final => Assert.DoesNotContain(Enum.GetValues<OrderStates.State>(), next => OrderStates.CanMove(final, next)));
    }

    [Fact]
    public void Unavailable_venues_and_missing_quotes_get_nothing()
    {
        var quotes = new[] { new VenueQuote("C", 1m, 1.01m, 5, 5) };
        Assert.Empty(SmartOrderRouter.Route(new LegOrder("p", "L1", "X", OrderSide.Buy, 1), Venues, quotes));
    }

    [Fact]
    public void Client_order_ids_are_deterministic() =>
        Assert.Equal(ClientOrderIds.For("plan-1", "L2", 3), ClientOrderIds.For("plan-1", "L2", 3));

    [Fact]
    public void Simulated_venue_fills_at_the_touch_and_charges_its_fee()
    {
        var order = new ChildOrder("p:L1:1", "A", 10m, 100m, 100.1m, 100m, 100m);
        var fill = SimulatedVenue.Execute(order, OrderSide.Buy, Venues[0], new VenueQuote("A", 99m, 100m, 10, 10));
        Assert.True(fill.Accepted);
        Assert.Equal((10m, 100m, 1m), (fill.FilledQuantity, fill.Price, fill.Fee)); // 10 bps of 1000
        var rejected = SimulatedVenue.Execute(order, OrderSide.Buy, Venues[2], new VenueQuote("C", 99m, 100m, 10, 10));
        Assert.False(rejected.Accepted);
        Assert.Equal("venue unavailable", rejected.RejectReason);
    }

    [Fact]
    public void A_limit_price_keeps_children_within_the_maximum_slippage()
    {
        // 10 bps from an arrival of 100: buys accept asks up to 100.10, sells bids down to 99.90.
        Assert.Equal(100.1m, SlippageLimit.For(OrderSide.Buy, 100m, 10));
        Assert.Equal(99.9m, SlippageLimit.For(OrderSide.Sell, 100m, 10));
        var quotes = new[] { new VenueQuote("A", 99.95m, 100.05m, 25, 25), new VenueQuote("B", 99.8m, 100.2m, 50, 50) };
        var venues = new[] { new VenueSpec("A", 0, 0), new VenueSpec("B", 0, 0) };
        var buys = SmartOrderRouter.Route(new LegOrder("p", "L", "X", OrderSide.Buy, 20), venues, quotes, SlippageLimit.For(OrderSide.Buy, 100m, 10));
        Assert.Equal([("A", 20m)], buys.Select(c => (c.VenueId, c.Quantity)));   // B's 100.20 is beyond the limit
        Assert.Empty(SmartOrderRouter.Route(new LegOrder("p", "L", "X", OrderSide.Sell, 20), venues, quotes, 99.99m));
        Assert.Throws<ArgumentOutOfRangeException>(() => SlippageLimit.For(OrderSide.Buy, 0m, 10));
    }

    [Fact]
    public void TWAP_cuts_a_leg_into_equal_cumulative_slices_ending_at_the_whole()
    {
        Assert.Equal([50m, 100m, 150m], TwapSchedule.Cumulative(150m, 3));
        Assert.Equal([3.33333333m, 6.66666666m, 10m], TwapSchedule.Cumulative(10m, 3));
        Assert.Equal([7m], TwapSchedule.Cumulative(7m, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TwapSchedule.Cumulative(0m, 3));
    }

    [Fact]
    public void POV_slices_are_a_share_of_the_displayed_liquidity_and_never_more_than_a_thousand()
    {
        // 10 % of 300 displayed = 30 a slice: 30, 60, 90, then the last 10.
        Assert.Equal([30m, 60m, 90m, 100m], PovSchedule.Cumulative(100m, 300m, 0.1));
        var huge = PovSchedule.Cumulative(1_000_000m, 1m, 0.1); // 0.1 a slice would take 10 million slices
        Assert.Equal(PovSchedule.MaxSlices, huge.Count);
        Assert.Equal(1_000_000m, huge[^1]);
        Assert.Equal([5m], PovSchedule.Cumulative(5m, 1_000m, 0.5)); // one slice covers it
        Assert.Throws<ArgumentOutOfRangeException>(() => PovSchedule.Cumulative(5m, 10m, 0));
    }
}
