namespace RebalanceMesh.Planning.Core;

/// <summary>
/// Turns a breached policy into trades: desired weights (target, band edge for breached positions, or the weights the
/// cost-aware optimiser chose), whole lots rounded toward zero, trades under the minimum notional dropped, buys scaled
/// down so cash (after sells and estimated costs) never goes negative — at the worst prices execution accepts under
/// the policy's maximum slippage (buys that much dearer, sells that much cheaper) — and legs ordered sells before buys.
/// A band-edge trade is the exception to rounding toward zero: it is rounded toward the target, to the fewest whole
/// lots (at least the minimum notional) that land inside the band after the plan's estimated costs, so the position
/// does not stay outside its band for want of a fraction of a lot.
/// </summary>
public static class RebalancePlanner
{
    /// <param name="optimized">The optimiser's weights and cost rates; null trades to target or band edge at the
    /// policy's flat cost estimate.</param>
    /// <param name="evaluation">The policy already evaluated on this portfolio; null evaluates it here.</param>
    public static RebalanceProposal Propose(MarkedPortfolio portfolio, TargetPolicy policy, bool force, OptimizedWeights? optimized = null, DriftEvaluation? evaluation = null)
    {
        evaluation ??= DriftEvaluator.Evaluate(portfolio, policy);
        if ((!evaluation.Breached && !force) || portfolio.NetValue <= 0)
        {
            return new RebalanceProposal(evaluation, [], portfolio.NetValue, 0m, 0, portfolio.Cash);
        }

        var breachedInstruments = evaluation.Reasons.Where(r => r.Breached && r.InstrumentId.Length > 0).Select(r => r.InstrumentId).ToHashSet(StringComparer.Ordinal);
        var onlyTotalDrift = breachedInstruments.Count == 0;
        var costRate = policy.CostRate;
        var reserve = policy.SlippageReserve;
        decimal CostOf(MarkedPosition position, decimal quantity) => optimized is not null
            ? optimized.CostOf(position.InstrumentId, quantity * position.Price, portfolio.NetValue)
            : decimal.Round(quantity * position.Price * costRate, 8);

        var sells = new List<(MarkedPosition Position, decimal Quantity)>();
        var rounding = new List<(MarkedPosition Position, RoundingItem Item)>();
        var buys = new List<(MarkedPosition Position, decimal Quantity)>();
        var wanted = new List<(MarkedPosition Position, double Desired, bool BandEdge)>();
        foreach (var position in portfolio.Positions.Where(p => DriftEvaluator.IsRebalanced(p, policy)))
        {
            var target = policy.TargetOf(position.InstrumentId);
            if (optimized is not null)
            {
                if (optimized.Weights.TryGetValue(position.InstrumentId, out var chosen))
                {
                    wanted.Add((position, chosen, false));
                }

                // else outside the optimiser's universe (an option held by weight): left as it is
            }
            else if (force || policy.Trading.RebalanceTarget == RebalanceTarget.Target || onlyTotalDrift)
            {
                wanted.Add((position, target, false));
            }
            else if (breachedInstruments.Contains(position.InstrumentId))
            {
                var width = policy.Bands.Width(target);
                wanted.Add((position, position.Weight > target ? target + width : Math.Max(target - width, 0), true));
            }
        }

        // The plan's costs lower net value after it, and so raise every weight a little: band edges are met against the
        // net value left after the costs of every trade a lot smaller and a lot larger than its continuous size.
        decimal PlanCost(int lotsMore) => wanted.Sum(w =>
        {
            var units = (Math.Abs(((decimal)w.Desired * portfolio.NetValue) - w.Position.MarketValue) / w.Position.Price) + (lotsMore * policy.LotSize(w.Position.InstrumentId));
            return CostOf(w.Position, Math.Max(units, 0));
        });
        var netValuesAfter = (Low: portfolio.NetValue - PlanCost(1), High: portfolio.NetValue - PlanCost(-1));
        foreach (var (position, desired, bandEdge) in wanted)
        {
            var lot = policy.LotSize(position.InstrumentId);
            decimal continuous;
            if (bandEdge)
            {
                if (BandEdgeTrade(position, policy, netValuesAfter) is not { } edge)
                {
                    continue; // no whole-lot trade lands inside the band: the breach stays, and the plan says so
                }

                continuous = edge;
            }
            else
            {
                continuous = (((decimal)desired * portfolio.NetValue) - position.MarketValue) / position.Price;
            }

            if (policy.Trading.OptimalLotRounding)
            {
                var rate = optimized?.CostRates.TryGetValue(position.InstrumentId, out var r) == true ? (decimal)r.Linear : costRate;
                rounding.Add((position, new RoundingItem(position.InstrumentId, position.Price, lot, continuous, policy.Trading.MinTradeNotional, rate + reserve)));
                continue;
            }

            var quantity = RoundToLot(continuous, lot);
            if (quantity == 0 || Math.Abs(quantity * position.Price) < policy.Trading.MinTradeNotional)
            {
                continue;
            }

            if (quantity < 0)
            {
                sells.Add((position, -quantity));
            }
            else
            {
                buys.Add((position, quantity));
            }
        }

        // Whole lots chosen together (CP-SAT): nearest to the continuous plan with cash never negative.
        RoundingResult? rounded = null;
        if (rounding.Count > 0)
        {
            rounded = LotRounder.Round(rounding.Select(x => x.Item).ToArray(), portfolio.Cash);
            foreach (var (position, item) in rounding)
            {
                var change = rounded.Changes[item.InstrumentId];
                if (change < 0)
                {
                    sells.Add((position, -change));
                }
                else if (change > 0)
                {
                    buys.Add((position, change));
                }
            }
        }

        // Cash available for buys: current cash plus sale proceeds, less the costs of every trade (with the optimiser's
        // impact costs this can still exceed what rounding assumed, so buys are scaled down if needed). Sales count at
        // their worst accepted price and purchases at theirs: execution fills within the policy's maximum slippage.
        var proceeds = sells.Sum(s => (s.Quantity * s.Position.Price * (1 - reserve)) - CostOf(s.Position, s.Quantity));
        var available = portfolio.Cash + proceeds;
        var buyCost = buys.Sum(b => (b.Quantity * b.Position.Price * (1 + reserve)) + CostOf(b.Position, b.Quantity));
        if (buyCost > available && buyCost > 0)
        {
            var scale = Math.Max(available, 0) / buyCost;
            buys = buys
                .Select(b => (b.Position, RoundToLot(b.Quantity * scale, policy.LotSize(b.Position.InstrumentId))))
                .Where(b => b.Item2 > 0 && b.Item2 * b.Position.Price >= policy.Trading.MinTradeNotional)
                .ToList();
        }

        var legs = new List<PlannedLeg>();
        foreach (var (position, quantity) in sells.OrderBy(s => s.Position.InstrumentId, StringComparer.Ordinal))
        {
            // Units are sold where they are held: one leg per account, largest first; the cost splits with the quantity.
            var value = position.MarketValue;
            var legCost = CostOf(position, quantity);
            var parts = SplitSell(position, quantity);
            var costLeft = legCost;
            for (var k = 0; k < parts.Count; k++)
            {
                var partCost = k == parts.Count - 1 ? costLeft : decimal.Round(legCost * parts[k].Quantity / quantity, 8);
                costLeft -= partCost;
                var leg = Leg(legs.Count + 1, position, TradeSide.Sell, parts[k].Quantity, partCost, value, portfolio.NetValue, parts[k].Venue);
                legs.Add(leg);
                value -= leg.Notional;
            }
        }

        foreach (var (position, quantity) in buys.OrderBy(b => b.Position.InstrumentId, StringComparer.Ordinal))
        {
            // A buy goes to the account that already holds most of the instrument (the default account when none does).
            legs.Add(Leg(legs.Count + 1, position, TradeSide.Buy, quantity, CostOf(position, quantity), position.MarketValue, portfolio.NetValue, position.Accounts is [var main, ..] ? main.Venue : string.Empty));
        }

        var cost = legs.Sum(l => l.EstimatedCost);
        var cashAfter = portfolio.Cash
            + legs.Where(l => l.Side == TradeSide.Sell).Sum(l => l.Notional)
            - legs.Where(l => l.Side == TradeSide.Buy).Sum(l => l.Notional)
            - cost;
        var turnover = portfolio.NetValue > 0 ? (double)(legs.Sum(l => l.Notional) / portfolio.NetValue) : 0;
        return new RebalanceProposal(evaluation, legs, portfolio.NetValue, cost, turnover, cashAfter, rounded);
    }

    /// <summary>
    /// The whole-lot trade that brings a breached position inside its band: the change to the band edge, rounded toward
    /// the target (never short of the edge) and raised to the minimum notional, plus a lot or two where the plan's costs
    /// moved the edge — the first that lands inside the band for any net value after the plan's costs in
    /// <paramref name="netValuesAfter"/>. Null when none does (a lot or minimum trade too large for the band, or more
    /// than is held to sell): the breach cannot be cured by trading.
    /// </summary>
    public static decimal? BandEdgeTrade(MarkedPosition position, TargetPolicy policy, (decimal Low, decimal High) netValuesAfter)
    {
        var target = policy.TargetOf(position.InstrumentId);
        var width = policy.Bands.Width(target);
        var lot = policy.LotSize(position.InstrumentId);
        if (position.Price <= 0 || netValuesAfter.Low <= 0 || double.IsInfinity(width))
        {
            return null;
        }

        var sign = position.Weight > target ? -1m : 1m;
        var edge = position.Weight > target ? target + width : Math.Max(target - width, 0);
        var netValueAfter = sign < 0 ? netValuesAfter.Low : netValuesAfter.High; // the further edge of the two
        var toEdge = Math.Abs((((decimal)edge * netValueAfter) - position.MarketValue) / position.Price);
        var lots = Math.Max(decimal.Ceiling(toEdge / lot), decimal.Ceiling(policy.Trading.MinTradeNotional / (lot * position.Price)));
        for (var k = Math.Max(lots, 1); k <= Math.Max(lots, 1) + 2; k++)
        {
            var trade = sign * k * lot;
            if (sign < 0 && -trade > position.Quantity && position.Quantity > 0)
            {
                return null; // would sell more than is held
            }

            // A weight moves monotonically with net value: inside at both ends is inside for every net value between.
            var value = position.MarketValue + (trade * position.Price);
            if (Math.Abs((double)(value / netValuesAfter.Low) - target) <= width
                && Math.Abs((double)(value / netValuesAfter.High) - target) <= width)
            {
                return trade;
            }
        }

        return null;
    }

    /// <summary>Rounds toward zero to a whole number of lots.</summary>
    public static decimal RoundToLot(decimal quantity, decimal lot) =>
        lot <= 0 ? quantity : decimal.Truncate(quantity / lot) * lot;

    /// <summary>
    /// Splits a sell over the accounts holding the instrument, largest first; what exceeds every account's units (a
    /// short, or a lot rounded past the holding) is sold in the largest account (the default one when none holds it).
    /// </summary>
    public static IReadOnlyList<(string Venue, decimal Quantity)> SplitSell(MarkedPosition position, decimal quantity)
    {
        var parts = new List<(string Venue, decimal Quantity)>();
        var remaining = quantity;
        foreach (var account in (position.Accounts ?? []).Where(a => a.Quantity > 0))
        {
            if (remaining == 0)
            {
                break;
            }

            var part = Math.Min(account.Quantity, remaining);
            parts.Add((account.Venue, part));
            remaining -= part;
        }

        if (remaining > 0)
        {
            var venue = position.Accounts is [var main, ..] ? main.Venue : string.Empty;
            var at = parts.FindIndex(p => p.Venue == venue);
            if (at >= 0)
            {
                parts[at] = (venue, parts[at].Quantity + remaining);
            }
            else
            {
                parts.Add((venue, remaining));
            }
        }

        return parts;
    }

    private static PlannedLeg Leg(int sequence, MarkedPosition position, TradeSide side, decimal quantity, decimal cost, decimal valueBefore, decimal netValue, string venue)
    {
        var notional = quantity * position.Price;
        var signed = side == TradeSide.Buy ? notional : -notional;
        return new PlannedLeg(
            "L" + sequence,
            sequence,
            position.InstrumentId,
            side,
            quantity,
            position.Price,
            notional,
            cost,
            netValue != 0 ? (double)(valueBefore / netValue) : 0,
            netValue != 0 ? (double)((valueBefore + signed) / netValue) : 0,
            venue);
    }
}
