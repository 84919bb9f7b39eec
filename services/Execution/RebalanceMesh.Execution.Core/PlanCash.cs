namespace RebalanceMesh.Execution.Core;

/// <summary>What one leg of a plan has done to the plan's cash so far.</summary>
/// <param name="Side">Buy or sell for a trade; null for a leg that is not a trade (a loan leg, a top-up, a transfer).</param>
/// <param name="Margined">A trade in a margined contract: only its fees move cash (its notional never changes hands).</param>
/// <param name="PlannedQuantity">The leg's quantity in the plan.</param>
/// <param name="CashChange">For a leg that is not a trade: the cash it moves when it completes in full.</param>
/// <param name="Filled">Quantity done so far.</param>
/// <param name="AveragePrice">Average fill price of a trade.</param>
/// <param name="Fees">Fees paid so far.</param>
public sealed record LegCash(OrderSide? Side, bool Margined, decimal PlannedQuantity, decimal CashChange, decimal Filled, decimal AveragePrice, decimal Fees);

/// <summary>
/// A plan's buying power while it executes: the cash it started with plus what its legs have moved, and how much of
/// an order that cash pays for at the order's own limit price (the worst it can fill at) with its fee. Execution sends
/// nothing beyond it, so a plan never takes cash below zero, whatever the market did between planning and execution:
/// a purchase that costs more than planned is cut, not paid with money the portfolio does not have.
/// </summary>
public static class PlanCash
{
    /// <summary>Fees round to 8 decimals at the venue; this much is kept back so rounding never crosses zero.</summary>
    public const decimal RoundingReserve = 0.0000001m;

    /// <summary>The plan's cash now: <paramref name="budget"/> plus what every leg moved.</summary>
    public static decimal Remaining(decimal budget, IEnumerable<LegCash> legs) => budget + legs.Sum(Moved);

    /// <summary>
    /// Cash a leg moved: a purchase pays notional and fees, a sale raises notional less fees, a margined trade pays its
    /// fees (its realised profit or loss is not counted), any other leg moves its cash change in proportion to what it
    /// completed.
    /// </summary>
    public static decimal Moved(LegCash leg) => leg.Side switch
    {
        null => leg.PlannedQuantity > 0 ? leg.CashChange * leg.Filled / leg.PlannedQuantity : 0m,
        _ when leg.Margined => -leg.Fees,
        OrderSide.Buy => -(leg.Filled * leg.AveragePrice) - leg.Fees,
        _ => (leg.Filled * leg.AveragePrice) - leg.Fees,
    };

    /// <summary>
    /// What one unit costs at worst when it fills at <paramref name="price"/> paying <paramref name="feeBps"/>: price and
    /// fee for a purchase, the fee alone for a margined contract, nothing for a sale (it raises more than its fee).
    /// </summary>
    public static decimal UnitCost(OrderSide side, bool margined, decimal price, double feeBps)
    {
        var fee = price * (decimal)feeBps / 10_000m;
        return margined ? fee : side == OrderSide.Buy ? price + fee : 0m;
    }

    /// <summary>The largest quantity (8 decimals, rounded down) <paramref name="available"/> pays at <paramref name="unitCost"/> a unit.</summary>
    public static decimal Affordable(decimal available, decimal unitCost) =>
        unitCost <= 0 ? decimal.MaxValue
        : available <= RoundingReserve ? 0m
        : decimal.Round((available - RoundingReserve) / unitCost, 8, MidpointRounding.ToZero);

    /// <summary>
    /// The children a routing may send with <paramref name="available"/> cash, in routing order: each cut to what is
    /// left at the highest price it can fill at and its taker fee; children cut to nothing are dropped.
    /// </summary>
    public static IReadOnlyList<ChildOrder> Cap(IReadOnlyList<ChildOrder> children, OrderSide side, bool margined, IReadOnlyList<VenueSpec> venues, decimal available)
    {
        var left = available;
        var kept = new List<ChildOrder>(children.Count);
        foreach (var child in children)
        {
            // The highest price the child can fill at: its limit for a purchase, its venue's touch for a sale (the
            // fee of a margined sale grows with the price it gets).
            var unit = UnitCost(side, margined, Math.Max(child.WorstPrice, child.BestPrice), venues.First(v => v.VenueId == child.VenueId).TakerFeeBps);
            var quantity = child.Quantity * unit <= left - RoundingReserve ? child.Quantity : Math.Min(child.Quantity, Affordable(left, unit));
            if (quantity <= 0)
            {
                continue;
            }

            kept.Add(quantity == child.Quantity ? child : child with { Quantity = quantity });
            left -= quantity * unit;
        }

        return kept;
    }
}
