namespace RebalanceMesh.Execution.Core;

/// <summary>
/// How a simulated venue's book extends beyond the quoted touch: <paramref name="Levels"/> price levels a side, each
/// <paramref name="LevelStepBps"/> further from the touch than the last, with size growing by
/// <paramref name="SizeGrowth"/> of the touch size per level (deeper levels hold more, as real books do).
/// </summary>
public sealed record BookProfile(int Levels = 10, double LevelStepBps = 2, double SizeGrowth = 0.5);

/// <summary>One price level: a price and the quantity resting there.</summary>
public sealed record BookLevel(decimal Price, decimal Size);

/// <summary>
/// A simulated venue's order book for one instrument, built from its quoted touch (pricing's quote for that venue)
/// and the venue's <see cref="BookProfile"/>. Marketable orders walk it level by level.
/// </summary>
public sealed record OrderBook(string VenueId, IReadOnlyList<BookLevel> Bids, IReadOnlyList<BookLevel> Asks)
{
    public static OrderBook FromQuote(VenueQuote quote, BookProfile profile)
    {
        var step = (decimal)profile.LevelStepBps / 10_000m;
        var growth = (decimal)profile.SizeGrowth;
        var levels = Math.Max(profile.Levels, 1);
        BookLevel[] Side(decimal touch, decimal size, int sign) => touch <= 0 || size <= 0
            ? []
            : Enumerable.Range(0, levels).Select(k => new BookLevel(decimal.Round(touch * (1 + (sign * k * step)), 8), decimal.Round(size * (1 + (k * growth)), 8))).ToArray();
        return new OrderBook(quote.VenueId, Side(quote.Bid, quote.BidSize, -1), Side(quote.Ask, quote.AskSize, +1));
    }

    /// <summary>
    /// The book after <paramref name="taken"/> was already taken from one side (by earlier orders on the same quote):
    /// the best levels shrink first. A venue's liquidity is used up until its next quote.
    /// </summary>
    public OrderBook After(OrderSide side, decimal taken)
    {
        if (taken <= 0)
        {
            return this;
        }

        var remaining = taken;
        var levels = new List<BookLevel>();
        foreach (var level in side == OrderSide.Buy ? Asks : Bids)
        {
            var take = Math.Min(level.Size, remaining);
            remaining -= take;
            if (level.Size - take > 0)
            {
                levels.Add(level with { Size = level.Size - take });
            }
        }

        return side == OrderSide.Buy ? this with { Asks = levels } : this with { Bids = levels };
    }

    /// <summary>The levels a buy (asks) or a sell (bids) takes, best first, within <paramref name="limit"/> when given.</summary>
    public IEnumerable<BookLevel> Taking(OrderSide side, decimal? limit = null) =>
        (side == OrderSide.Buy ? Asks : Bids).TakeWhile(l => limit is not { } worst || (side == OrderSide.Buy ? l.Price <= worst : l.Price >= worst));

    /// <summary>Quantity available to one side within the limit.</summary>
    public decimal Depth(OrderSide side, decimal? limit = null) => Taking(side, limit).Sum(l => l.Size);

    /// <summary>Walks the book for up to <paramref name="quantity"/>: what fills within the limit, at what average price.</summary>
    public (decimal Filled, decimal AveragePrice) Walk(OrderSide side, decimal quantity, decimal? limit = null)
    {
        decimal filled = 0, notional = 0;
        foreach (var level in Taking(side, limit))
        {
            if (filled >= quantity)
            {
                break;
            }

            var take = Math.Min(level.Size, quantity - filled);
            filled += take;
            notional += take * level.Price;
        }

        return (filled, filled > 0 ? decimal.Round(notional / filled, 8) : 0m);
    }
}

/// <summary>
/// The child-order state machine. Child orders are immediate-or-cancel: new → sent → filled, partially filled (the
/// rest expired), expired (nothing within the limit or the book) or rejected (venue down, no quote); a journaled order
/// not yet sent can be cancelled. Final states never change.
/// </summary>
public static class OrderStates
{
    public enum State
    {
        New,
        Sent,
        PartiallyFilled,
        Filled,
        Cancelled,
        Rejected,
        Expired,
    }

    public static bool IsFinal(State state) => state is State.PartiallyFilled or State.Filled or State.Cancelled or State.Rejected or State.Expired;

    public static bool CanMove(State from, State to) => (from, to) switch
    {
        (State.New, State.Sent or State.Cancelled) => true,
        (State.Sent, State.Filled or State.PartiallyFilled or State.Expired or State.Rejected) => true,
        _ => false,
    };

    /// <summary>The state after a venue's answer to a sent order.</summary>
    public static State AfterExecution(VenueExecution execution, decimal ordered) =>
        !execution.Accepted ? State.Rejected
        : execution.FilledQuantity >= ordered ? State.Filled
        : execution.FilledQuantity > 0 ? State.PartiallyFilled
        : State.Expired;
}
