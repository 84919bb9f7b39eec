namespace RebalanceMesh.Execution.Core;

/// <summary>The outcome of sending one child order to a venue.</summary>
public sealed record VenueExecution(string ClientOrderId, string VenueId, bool Accepted, decimal FilledQuantity, decimal Price, decimal Fee, string RejectReason);

/// <summary>
/// A simulated venue that fills marketable orders at its quoted touch (ask for buys, bid for sells) and charges its
/// taker fee on notional. It rejects when it is down or has no quote.
/// </summary>
public static class SimulatedVenue
{
    public static VenueExecution Execute(ChildOrder order, OrderSide side, VenueSpec venue, VenueQuote? quote)
    {
        if (!venue.Available)
        {
            return new VenueExecution(order.ClientOrderId, venue.VenueId, false, 0, 0, 0, "venue unavailable");
        }

        if (quote is null)
        {
            return new VenueExecution(order.ClientOrderId, venue.VenueId, false, 0, 0, 0, "no quote on venue");
        }

        var price = side == OrderSide.Buy ? quote.Ask : quote.Bid;
        if (price <= 0)
        {
            return new VenueExecution(order.ClientOrderId, venue.VenueId, false, 0, 0, 0, "no price on venue");
        }

        var fee = decimal.Round(order.Quantity * price * (decimal)venue.TakerFeeBps / 10_000m, 8);
        return new VenueExecution(order.ClientOrderId, venue.VenueId, true, order.Quantity, price, fee, string.Empty);
    }
}
