namespace RebalanceMesh.Execution.Core;

/// <summary>Buy or sell.</summary>
public enum OrderSide
{
    Buy,
    Sell,
}

/// <summary>A venue's fee schedule, availability, book depth, latency and participation cap.</summary>
/// <param name="Book">Depth beyond the quoted touch; null is the touch alone.</param>
/// <param name="LatencyMs">Simulated round trip of one order.</param>
/// <param name="ParticipationCap">Largest share of the venue's displayed depth (within the limit) one routing takes.</param>
public sealed record VenueSpec(string VenueId, double TakerFeeBps, double MakerFeeBps, bool Available = true, BookProfile? Book = null, int LatencyMs = 0, double ParticipationCap = 1.0, MarginTerms? Margin = null)
{
    /// <summary>The venue's book for a quote.</summary>
    public OrderBook BookOf(VenueQuote quote) => OrderBook.FromQuote(quote, Book ?? new BookProfile(Levels: 1));
}

/// <summary>A venue's top of book for one instrument.</summary>
public sealed record VenueQuote(string VenueId, decimal Bid, decimal Ask, decimal BidSize, decimal AskSize);

/// <summary>A leg to execute.</summary>
public sealed record LegOrder(string PlanId, string LegId, string InstrumentId, OrderSide Side, decimal Quantity);

/// <summary>A child order routed to one venue.</summary>
/// <param name="ExpectedPrice">Average price expected from walking the venue's book for the order's quantity.</param>
/// <param name="AllInPrice">Expected price including the taker fee: what one unit really costs or yields.</param>
/// <param name="WorstPrice">The last level the routing walked on the venue (highest for a buy, lowest for a sell): the
/// order's limit, so it never fills beyond what the routing priced.</param>
/// <param name="BestPrice">The first level the routing took on the venue (its touch after earlier routings): a sale
/// fills at no higher an average, which bounds the fee it pays.</param>
public sealed record ChildOrder(string ClientOrderId, string VenueId, decimal Quantity, decimal ExpectedPrice, decimal AllInPrice, decimal WorstPrice, decimal BestPrice);

/// <summary>
/// Splits a leg across venues by expected all-in cost from walking their books: every venue's levels (within the
/// limit price, when given) are priced with the venue's taker fee and taken cheapest first — fees, spread and the
/// impact of going deeper all count — with no venue giving more than its participation cap of its displayed depth.
/// What exceeds every venue's capped depth is not routed: the executor reports the shortfall or routes it again on
/// fresher quotes.
/// </summary>
public static class SmartOrderRouter
{
    /// <param name="taken">Quantity already taken from each venue's book on this side since its quote (earlier routings).</param>
    public static IReadOnlyList<ChildOrder> Route(LegOrder leg, IReadOnlyList<VenueSpec> venues, IReadOnlyList<VenueQuote> quotes, decimal? limitPrice = null, IReadOnlyDictionary<string, decimal>? taken = null)
    {
        if (leg.Quantity <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(leg), "A leg quantity is positive.");
        }

        var books = venues
            .Where(v => v.Available)
            .Join(quotes, v => v.VenueId, q => q.VenueId, (v, q) => (Venue: v, Book: v.BookOf(q).After(leg.Side, taken?.GetValueOrDefault(v.VenueId) ?? 0)), StringComparer.Ordinal)
            .ToArray();
        var levels = books
            .SelectMany(b => b.Book.Taking(leg.Side, limitPrice).Select((level, depth) => (b.Venue, level.Price, level.Size, Depth: depth, AllIn: AllInPrice(leg.Side, level.Price, b.Venue.TakerFeeBps))))
            .Where(l => l.Price > 0 && l.Size > 0)
            .OrderBy(l => leg.Side == OrderSide.Buy ? l.AllIn : -l.AllIn)
            .ThenBy(l => l.Venue.VenueId, StringComparer.Ordinal)
            .ThenBy(l => l.Depth)
            .ToArray();
        var caps = books.ToDictionary(b => b.Venue.VenueId, b => b.Book.Depth(leg.Side, limitPrice) * (decimal)Math.Clamp(b.Venue.ParticipationCap, 0, 1), StringComparer.Ordinal);
        var allocated = new Dictionary<string, (decimal Quantity, decimal Notional, int First, decimal Worst, decimal Best)>(StringComparer.Ordinal);
        var remaining = leg.Quantity;
        for (var i = 0; i < levels.Length && remaining > 0; i++)
        {
            var level = levels[i];
            var sofar = allocated.TryGetValue(level.Venue.VenueId, out var before) ? before : (Quantity: 0m, Notional: 0m, First: i, Worst: level.Price, Best: level.Price);
            var take = Math.Min(Math.Min(level.Size, remaining), caps[level.Venue.VenueId] - sofar.Quantity);
            if (take <= 0)
            {
                continue;
            }

            // Levels come cheapest first, so a venue's later level is never better than its earlier ones.
            allocated[level.Venue.VenueId] = (sofar.Quantity + take, sofar.Notional + (take * level.Price), sofar.First, level.Price, sofar.Best);
            remaining -= take;
        }

        var slice = 0;
        return allocated
            .OrderBy(t => t.Value.First)
            .Select(t =>
            {
                var venue = books.First(b => b.Venue.VenueId == t.Key).Venue;
                var price = decimal.Round(t.Value.Notional / t.Value.Quantity, 8);
                return new ChildOrder(ClientOrderIds.For(leg.PlanId, leg.LegId, ++slice), t.Key, t.Value.Quantity, price, AllInPrice(leg.Side, price, venue.TakerFeeBps), t.Value.Worst, t.Value.Best);
            })
            .ToArray();
    }

    /// <summary>Price per unit including the taker fee: ask·(1 + fee) for buys, bid·(1 − fee) for sells.</summary>
    public static decimal AllInPrice(OrderSide side, decimal price, double takerFeeBps)
    {
        var fee = (decimal)takerFeeBps / 10_000m;
        return side == OrderSide.Buy ? price * (1 + fee) : price * (1 - fee);
    }
}

/// <summary>Limit-price protection: the worst price a leg accepts, a maximum slippage in basis points from its arrival price.</summary>
public static class SlippageLimit
{
    public static decimal For(OrderSide side, decimal arrivalPrice, double maxSlippageBps)
    {
        if (arrivalPrice <= 0 || !(maxSlippageBps > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(maxSlippageBps), "A limit needs a positive arrival price and slippage.");
        }

        var slippage = (decimal)maxSlippageBps / 10_000m;
        return side == OrderSide.Buy ? arrivalPrice * (1 + slippage) : arrivalPrice * (1 - slippage);
    }
}

/// <summary>Time-weighted slicing: a leg cut into equal slices sent at equal intervals.</summary>
public static class TwapSchedule
{
    /// <summary>Cumulative quantity due after each slice (the last is the whole quantity); one slice for 0 or 1.</summary>
    public static IReadOnlyList<decimal> Cumulative(decimal quantity, int slices)
    {
        if (quantity <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(quantity), "A leg quantity is positive.");
        }

        var count = Math.Max(slices, 1);
        return Enumerable.Range(1, count).Select(k => k == count ? quantity : decimal.Round(quantity * k / count, 8, MidpointRounding.ToZero)).ToArray();
    }
}

/// <summary>
/// Percentage-of-volume slicing against displayed liquidity: each slice is <c>rate</c> × the venues' displayed size on
/// the leg's side (the simulated venues publish no trade prints), one slice per interval, at most
/// <see cref="MaxSlices"/> slices (slices grow when the leg needs more).
/// </summary>
public static class PovSchedule
{
    public const int MaxSlices = 1_000;

    /// <summary>Cumulative quantity due after each slice (the last is the whole quantity).</summary>
    public static IReadOnlyList<decimal> Cumulative(decimal quantity, decimal displayed, double rate)
    {
        if (quantity <= 0 || !(rate > 0 && rate <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(rate), "A positive quantity and a rate in (0, 1] are required.");
        }

        var slice = Math.Max(displayed * (decimal)rate, quantity / MaxSlices);
        var count = slice <= 0 ? 1 : (int)Math.Min(Math.Ceiling(quantity / slice), MaxSlices);
        return Enumerable.Range(1, count).Select(k => k == count ? quantity : Math.Min(decimal.Round(slice * k, 8, MidpointRounding.ToZero), quantity)).ToArray();
    }
}

/// <summary>Client order ids derived from plan, leg and slice, so a retry sends the same id and a venue can de-duplicate it.</summary>
public static class ClientOrderIds
{
    public static string For(string planId, string legId, int slice) => $"{planId}:{legId}:{slice}";
}

/// <summary>A venue's margin rules for the perpetuals and futures it clears.</summary>
/// <param name="MaintenanceRate">Maintenance margin per unit of contract notional (|quantity| × mark × multiplier).</param>
/// <param name="LiquidationFeeRate">Fee per unit of notional the venue charges on a position it liquidates.</param>
/// <param name="InitialRate">Initial margin per unit of notional: collateral may leave the account only while what stays covers it.</param>
public sealed record MarginTerms(decimal MaintenanceRate, decimal LiquidationFeeRate, decimal InitialRate);
