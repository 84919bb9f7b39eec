using System.Globalization;
using RebalanceMesh.Execution.Core.Blocks;

namespace RebalanceMesh.Execution.Core.Runs;

/// <summary>A plan run's legs in block orders (<see cref="RunPlan.Blocks"/>): how its slices join them.</summary>
public sealed partial class PlanRun
{
    /// <summary>
    /// One slice of each leg joins a block order (<see cref="JoinBlock"/>): each asks for what its slice still needs,
    /// capped at its limit price — or, without one, <see cref="BlockRequest.UnlimitedBandBps"/> beyond the worst price
    /// its own routing would walk now (the block forms over a short window, and the market moves). A purchase the
    /// plan's cash pays for only nearer the market gets a tighter cap, down to that worst price, rather than a smaller
    /// slice; below it the slice is cut to what the cash pays there with the dearest venue fee (the plan's cash shared
    /// in leg order, as routing shares it). The block answers each leg's share of its internal cross and of its venue
    /// fills; what a block filled short joins another block on a fresh read of the market, up to
    /// <see cref="MaxBlockJoins"/> blocks, and a leg still short then stops there and says so.
    /// </summary>
    private IEnumerable<RunCommand> JoinBlocks(IReadOnlyList<Working> runs, IReadOnlyDictionary<Working, decimal> targets, Func<Working, string> prefix)
    {
        for (var join = 1; join <= MaxBlockJoins; join++)
        {
            var open = runs.Where(r => r.Stop is null && targets[r] > r.State.Filled).ToArray();
            if (open.Length == 0)
            {
                yield break;
            }

            if (join > 1)
            {
                // The block filled short (the market moved past its cap while it formed): the rest joins another block
                // on the market as it is now.
                yield return new ReadMarkets(open.Select(r => QueryOf(r.State)).ToArray());
                var markets = Answer<MarketsRead>().Markets;
                for (var i = 0; i < open.Length; i++)
                {
                    open[i].Refresh(markets[i].Quotes, markets[i].Venues);
                }
            }

            var joining = Requests(open, targets, run => join == 1 ? prefix(run) : $"{prefix(run)}-j{join}");
            if (joining.Count == 0)
            {
                yield break;
            }

            yield return new JoinBlock(joining.Select(j => j.Request).ToArray());
            var shares = Answer<BlockJoined>().Shares;
            var filledShort = false;
            for (var i = 0; i < joining.Count; i++)
            {
                var (run, request) = joining[i];
                var share = shares[i];
                run.State.Add(share.Crossed, share.CrossPrice, 0m);
                run.State.Add(share.Filled, share.AveragePrice, share.Fee);
                if (share.Crossed + share.Filled < request.Quantity && run.Stop is null)
                {
                    filledShort = true;
                    if (join == MaxBlockJoins)
                    {
                        run.Stop = string.Create(CultureInfo.InvariantCulture,
                            $"its block order {share.BlockId} filled {share.Crossed + share.Filled:0.########} of the {request.Quantity:0.########} it asked for (the venues' books held no more within the block's price cap), after {join} blocks");
                    }
                }
            }

            if (!filledShort)
            {
                yield break;
            }
        }
    }

    /// <summary>How many blocks a slice joins at most when they fill it short, each on a fresh read of the market.</summary>
    public const int MaxBlockJoins = 3;

    /// <summary>Each open leg's request for its slice (see <see cref="JoinBlocks"/>); a leg stopped at its limit or by cash asks for nothing more.</summary>
    private List<(Working Run, BlockRequest Request)> Requests(IReadOnlyList<Working> runs, IReadOnlyDictionary<Working, decimal> targets, Func<Working, string> memberOf)
    {
        var joining = new List<(Working Run, BlockRequest Request)>(runs.Count);
        var reserved = 0m;
        foreach (var run in runs)
        {
            var (leg, need) = (run.Leg, targets[run] - run.State.Filled);
            var usable = run.Venues.Where(v => v.Available).ToArray();
            if (need <= 0 || run.Stop is not null || usable.Length == 0)
            {
                continue;
            }

            var children = SmartOrderRouter.Route(new LegOrder(Plan.PlanId, leg.LegId, leg.InstrumentId, leg.Side, need), usable, run.Quotes, run.Limit, run.Taken);
            if (children.Count == 0)
            {
                StopAtLimit(run, need, usable);
                continue;
            }

            var buy = leg.Side == OrderSide.Buy;
            var cap = run.Limit ?? SlippageLimit.For(leg.Side, buy ? children.Max(c => c.WorstPrice) : children.Min(c => c.WorstPrice), BlockRequest.UnlimitedBandBps);
            var quantity = need;
            if (CashLeft is { } cash)
            {
                var fee = usable.Max(v => v.TakerFeeBps);
                var available = cash - reserved;

                // A sale's fee (margined) grows with the price it gets: the best bid bounds it.
                decimal UnitAt(decimal price) => PlanCash.UnitCost(leg.Side, leg.Margined, buy ? price : Math.Max(price, run.Quotes.Max(q => q.Bid)), fee);
                if (buy && !leg.Margined && need * UnitAt(cap) > available - PlanCash.RoundingReserve)
                {
                    // The cash pays for the whole slice only nearer the market: a tighter cap rather than a smaller
                    // slice, down to the worst price its own routing walks now; below that the slice is cut, there.
                    var paid = decimal.Round((available - PlanCash.RoundingReserve) / need / (1 + ((decimal)fee / 10_000m)), 8, MidpointRounding.ToZero);
                    cap = Math.Max(children.Max(c => c.WorstPrice), Math.Min(cap, paid));
                }

                var unit = UnitAt(cap);
                quantity = Math.Min(need, PlanCash.Affordable(available, unit));
                reserved += quantity * unit;
                if (quantity < need)
                {
                    StopByCash(run, cash - reserved, quantity, need);
                }

                if (quantity <= 0)
                {
                    continue;
                }
            }

            joining.Add((run, new BlockRequest(leg.LegId, $"{Plan.PlanId}:{memberOf(run)}", leg.InstrumentId, leg.Side, quantity, leg.LotSize, cap, Plan.Blocks == BlockTrading.BlockAndCross)));
        }

        return joining;
    }
}
