using RebalanceMesh.Execution.Core;

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
    public void Quantity_beyond_all_displayed_depth_goes_to_the_best_venue()
    {
        var quotes = new[] { new VenueQuote("B", 99m, 100m, 5, 5) };
        var order = Assert.Single(SmartOrderRouter.Route(new LegOrder("p", "L1", "X", OrderSide.Buy, 12), Venues, quotes));
        Assert.Equal(12m, order.Quantity);
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
        var order = new ChildOrder("p:L1:1", "A", 10m, 100m, 100.1m);
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
        var quotes = new[] { new VenueQuote("A", 99.95m, 100.05m, 5, 5), new VenueQuote("B", 99.8m, 100.2m, 50, 50) };
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
}
