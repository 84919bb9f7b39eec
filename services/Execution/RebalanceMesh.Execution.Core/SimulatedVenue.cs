namespace RebalanceMesh.Execution.Core;

/// <summary>The outcome of sending one child order to a venue.</summary>
public sealed record VenueExecution(string ClientOrderId, string VenueId, bool Accepted, decimal FilledQuantity, decimal Price, decimal Fee, string RejectReason);

/// <summary>
/// A simulated venue: an immediate-or-cancel order walks the venue's book (built from its quoted touch and depth
/// profile) up to its quantity and limit price, fills what it reaches at the average price and pays the taker fee on
/// that notional; the rest expires. It rejects when it is down or has no quote.
/// </summary>
public static class SimulatedVenue
{
    /// <param name="taken">Quantity already taken from this side of the venue's book since its quote.</param>
    public static VenueExecution Execute(ChildOrder order, OrderSide side, VenueSpec venue, VenueQuote? quote, decimal? limitPrice = null, decimal taken = 0)
    {
        if (!venue.Available)
        {
            return new VenueExecution(order.ClientOrderId, venue.VenueId, false, 0, 0, 0, "venue unavailable");
        }

        if (quote is null || (side == OrderSide.Buy ? quote.Ask : quote.Bid) <= 0)
        {
            return new VenueExecution(order.ClientOrderId, venue.VenueId, false, 0, 0, 0, "no quote on venue");
        }

        var (filled, price) = venue.BookOf(quote).After(side, taken).Walk(side, order.Quantity, limitPrice);
        var fee = decimal.Round(filled * price * (decimal)venue.TakerFeeBps / 10_000m, 8);
        return new VenueExecution(order.ClientOrderId, venue.VenueId, true, filled, price, fee, filled < order.Quantity ? $"{order.Quantity - filled} beyond the book or the limit expired" : string.Empty);
    }
}
