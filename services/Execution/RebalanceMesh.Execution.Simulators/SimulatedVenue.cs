using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution.Simulators;

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

/// <summary>
/// A resting (post-only) limit order on a simulated venue: posted at the near touch, it is a maker — it fills only when
/// the market comes to it, that is when the venue's opposite side reaches its price (a buy resting at L fills when the
/// ask is at or below L), at its own price and for no more than the venue shows there within its participation cap,
/// paying the maker fee. While the market stays away nothing fills (no queue position is modelled: a fill needs the
/// touch to cross the order, which is conservative).
/// </summary>
public static class SimulatedRestingOrder
{
    /// <summary>
    /// What the resting order fills against <paramref name="quote"/> when <paramref name="open"/> of it is still open
    /// and <paramref name="taken"/> of that quote's liquidity was already filled; <paramref name="fillId"/> names this
    /// fill at the venue (the venue records each fill once).
    /// </summary>
    public static VenueExecution Fill(string fillId, OrderSide side, decimal limit, decimal open, VenueSpec venue, VenueQuote? quote, decimal taken = 0)
    {
        if (!venue.Available || quote is null || open <= 0)
        {
            return new VenueExecution(fillId, venue.VenueId, true, 0, limit, 0, string.Empty);
        }

        var crossed = side == OrderSide.Buy ? quote.Ask > 0 && quote.Ask <= limit : quote.Bid > 0 && quote.Bid >= limit;
        var shown = side == OrderSide.Buy ? quote.AskSize : quote.BidSize;
        var filled = crossed ? Math.Max(Math.Min(open, decimal.Round(shown * (decimal)venue.ParticipationCap, 8, MidpointRounding.ToZero) - taken), 0m) : 0m;
        var fee = decimal.Round(filled * limit * (decimal)venue.MakerFeeBps / 10_000m, 8);
        return new VenueExecution(fillId, venue.VenueId, true, filled, limit, fee, string.Empty);
    }
}
