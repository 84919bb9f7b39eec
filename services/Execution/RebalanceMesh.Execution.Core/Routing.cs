namespace RebalanceMesh.Execution.Core;

/// <summary>Buy or sell.</summary>
public enum OrderSide
{
    Buy,
    Sell,
}

/// <summary>A venue's fee schedule and availability.</summary>
public sealed record VenueSpec(string VenueId, double TakerFeeBps, double MakerFeeBps, bool Available = true);

/// <summary>A venue's top of book for one instrument.</summary>
public sealed record VenueQuote(string VenueId, decimal Bid, decimal Ask, decimal BidSize, decimal AskSize);

/// <summary>A leg to execute.</summary>
public sealed record LegOrder(string PlanId, string LegId, string InstrumentId, OrderSide Side, decimal Quantity);

/// <summary>A child order routed to one venue, at the venue's touch price.</summary>
/// <param name="ExpectedPrice">Price expected at the venue (ask for buys, bid for sells).</param>
/// <param name="AllInPrice">Expected price including the taker fee: what one unit really costs or yields.</param>
public sealed record ChildOrder(string ClientOrderId, string VenueId, decimal Quantity, decimal ExpectedPrice, decimal AllInPrice);

/// <summary>
/// Splits a leg across venues by expected all-in price (touch price with taker fee): the best venue first, up to
/// its displayed size, then the next. Whatever exceeds the displayed depth of every venue goes to the best venue.
/// With a limit price, venues whose touch is beyond it (above for buys, below for sells) get nothing.
/// </summary>
public static class SmartOrderRouter
{
    public static IReadOnlyList<ChildOrder> Route(LegOrder leg, IReadOnlyList<VenueSpec> venues, IReadOnlyList<VenueQuote> quotes, decimal? limitPrice = null)
    {
        if (leg.Quantity <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(leg), "A leg quantity is positive.");
        }

        var candidates = venues
            .Where(v => v.Available)
            .Join(quotes, v => v.VenueId, q => q.VenueId, (v, q) => (Venue: v, Quote: q), StringComparer.Ordinal)
            .Select(x => (x.Venue, x.Quote, Price: leg.Side == OrderSide.Buy ? x.Quote.Ask : x.Quote.Bid, Size: leg.Side == OrderSide.Buy ? x.Quote.AskSize : x.Quote.BidSize))
            .Where(x => x.Price > 0 && (limitPrice is not { } limit || (leg.Side == OrderSide.Buy ? x.Price <= limit : x.Price >= limit)))
            .Select(x => (x.Venue, x.Price, x.Size, AllIn: AllInPrice(leg.Side, x.Price, x.Venue.TakerFeeBps)))
            .OrderBy(x => leg.Side == OrderSide.Buy ? x.AllIn : -x.AllIn)
            .ThenBy(x => x.Venue.VenueId, StringComparer.Ordinal)
            .ToList();
        if (candidates.Count == 0)
        {
            return [];
        }

        var allocations = new Dictionary<string, decimal>(StringComparer.Ordinal);
        var remaining = leg.Quantity;
        foreach (var candidate in candidates)
        {
            if (remaining <= 0)
            {
                break;
            }

            var take = Math.Min(remaining, Math.Max(candidate.Size, 0));
            if (take > 0)
            {
                allocations[candidate.Venue.VenueId] = take;
                remaining -= take;
            }
        }

        if (remaining > 0)
        {
            var best = candidates[0].Venue.VenueId;
            allocations[best] = allocations.GetValueOrDefault(best) + remaining;
        }

        var slice = 0;
        return candidates
            .Where(c => allocations.ContainsKey(c.Venue.VenueId))
            .Select(c => new ChildOrder(ClientOrderIds.For(leg.PlanId, leg.LegId, ++slice), c.Venue.VenueId, allocations[c.Venue.VenueId], c.Price, c.AllIn))
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

/// <summary>Client order ids derived from plan, leg and slice, so a retry sends the same id and a venue can de-duplicate it.</summary>
public static class ClientOrderIds
{
    public static string For(string planId, string legId, int slice) => $"{planId}:{legId}:{slice}";
}
