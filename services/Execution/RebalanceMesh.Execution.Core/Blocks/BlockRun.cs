using RebalanceMesh.Execution.Core.Runs;

namespace RebalanceMesh.Execution.Core.Blocks;

/// <summary>
/// Internal crossing: the buys and the sells of one block that allow it trade with each other at the consolidated mid,
/// as far as the smaller side goes. A member crosses only when the mid is within its price cap. The crossed quantity is
/// split over each side's eligible members by <see cref="LargestRemainder"/> (whole lots, capped at each request), so
/// what the buyers get equals what the sellers give: crosses net to zero.
/// </summary>
public static class InternalCross
{
    /// <summary>Each member's crossed quantity (zero for those that do not cross), in the members' order.</summary>
    public static decimal[] Match(IReadOnlyList<BlockMember> members, decimal lotSize, decimal mid)
    {
        var crossed = new decimal[members.Count];
        if (mid <= 0)
        {
            return crossed;
        }

        bool Eligible(BlockRequest r, OrderSide side) =>
            r.Cross && r.Side == side && r.Quantity > 0 && (side == OrderSide.Buy ? r.PriceCap >= mid : r.PriceCap <= mid);
        var buys = Enumerable.Range(0, members.Count).Where(i => Eligible(members[i].Request, OrderSide.Buy)).ToArray();
        var sells = Enumerable.Range(0, members.Count).Where(i => Eligible(members[i].Request, OrderSide.Sell)).ToArray();
        var quantity = Math.Min(buys.Sum(i => members[i].Request.Quantity), sells.Sum(i => members[i].Request.Quantity));
        if (quantity <= 0)
        {
            return crossed;
        }

        foreach (var side in new[] { buys, sells })
        {
            var requested = side.Select(i => members[i].Request.Quantity).ToArray();
            var shares = LargestRemainder.Split(requested, quantity, lotSize, requested, side.Select(i => members[i].MemberId).ToArray());
            for (var k = 0; k < side.Length; k++)
            {
                crossed[side[k]] = shares[k];
            }
        }

        return crossed;
    }
}

/// <summary>
/// One block order as a deterministic state machine, like <see cref="PlanRun"/> (and answered by the same host
/// commands): it reads the instrument's market, crosses what it can internally at the mid, then works what is left of
/// each side at the venues as a plan of two legs (sells first) — routed across venues by all-in cost within the
/// tightest price cap of the side's members, participation caps and re-routing as for any leg — and finally allocates
/// each side's fills to its members pro rata in whole lots (<see cref="LargestRemainder"/>), every member at the
/// side's average price, the fees split the same way to 10⁻⁸. A host that journals each answer replays a block to
/// where it stopped after a crash; the allocation is a pure function of the answers, so it is the same every time.
/// </summary>
public sealed class BlockRun(BlockOrder block)
{
    /// <summary>The smallest fee unit (fees round to 8 decimals at the venues).</summary>
    public const decimal FeeUnit = 0.00000001m;

    private PlanRun? _venues;
    private decimal[] _crossed = new decimal[block.Members.Count];
    private decimal _mid;
    private bool _started;

    public BlockOrder Block { get; } = block;

    /// <summary>The block's two legs at the venues (sells, then buys) once the cross is done; its legs say each side's side.</summary>
    public PlanRun? VenueRun => _venues;

    /// <summary>The block's outcome, once it has one (after <see cref="Finished"/>).</summary>
    public BlockOutcome? Outcome { get; private set; }

    /// <summary>The first command: read the instrument's market (for the mid of the cross and the routing).</summary>
    public RunCommand Start()
    {
        if (_started)
        {
            throw new InvalidOperationException("The block has started.");
        }

        _started = true;
        return new ReadMarkets([new MarketQuery("cross", Block.InstrumentId, string.Empty)]);
    }

    /// <summary>Answers the pending command and returns the next one (<see cref="Finished"/> once allocated).</summary>
    public RunCommand Next(RunObservation answer)
    {
        if (!_started || Outcome is not null)
        {
            throw new InvalidOperationException("No command is waiting for an answer.");
        }

        if (_venues is not null)
        {
            var next = _venues.Next(answer);
            if (next is Finished)
            {
                Outcome = Allocate();
            }

            return next;
        }

        var quotes = (answer as MarketsRead ?? throw new InvalidOperationException($"A block's first answer is the market, not {answer.GetType().Name}.")).Markets[0].Quotes
            .Where(q => q.Bid > 0 && q.Ask > 0).ToArray();
        _mid = quotes.Length == 0 ? 0m : (quotes.Max(q => q.Bid) / 2m) + (quotes.Min(q => q.Ask) / 2m);
        _crossed = InternalCross.Match(Block.Members, Block.LotSize, _mid);
        var legs = new List<RunLeg>(2);
        foreach (var side in new[] { OrderSide.Sell, OrderSide.Buy })
        {
            var open = Residuals(side).ToArray();
            if (open.Length == 0)
            {
                continue;
            }

            var caps = open.Select(i => Block.Members[i].Request.PriceCap);
            legs.Add(new RunLeg(LegOf(side), side == OrderSide.Sell ? 0 : 1, LegAction.Trade, Block.InstrumentId, side, open.Sum(Residual), _mid,
                LotSize: Block.LotSize, PriceCap: side == OrderSide.Buy ? caps.Min() : caps.Max()));
        }

        if (legs.Count == 0)
        {
            Outcome = Allocate();
            return new Finished();
        }

        _venues = new PlanRun(new RunPlan(Block.BlockId, string.Empty, legs, CashBudget: null, MaxSlippageBps: 0, new SliceStyle()));
        return _venues.Start();
    }

    private static string LegOf(OrderSide side) => side == OrderSide.Buy ? "buy" : "sell";

    private decimal Residual(int member) => Block.Members[member].Request.Quantity - _crossed[member];

    /// <summary>The members of a side with something left after the cross, in the block's order.</summary>
    private IEnumerable<int> Residuals(OrderSide side) =>
        Enumerable.Range(0, Block.Members.Count).Where(i => Block.Members[i].Request.Side == side && Residual(i) > 0);

    private BlockOutcome Allocate()
    {
        var filled = new decimal[Block.Members.Count];
        var fees = new decimal[Block.Members.Count];
        var sides = new List<SideFill>(2);
        var average = new Dictionary<OrderSide, decimal>();
        foreach (var state in _venues?.Legs ?? [])
        {
            var side = state.Leg.Side;
            sides.Add(new SideFill(side, state.Quantity, state.Filled, state.AveragePrice, state.Fees, state.Message));
            average[side] = state.AveragePrice;
            var open = Residuals(side).ToArray();
            var ids = open.Select(i => Block.Members[i].MemberId).ToArray();
            var requested = open.Select(Residual).ToArray();
            var allocated = LargestRemainder.Split(requested, state.Filled, Block.LotSize, requested, ids);
            var feeShares = LargestRemainder.Split(allocated, state.Fees, FeeUnit, null, ids);
            for (var k = 0; k < open.Length; k++)
            {
                filled[open[k]] = allocated[k];
                fees[open[k]] = feeShares[k];
            }
        }

        var shares = Block.Members.Select((m, i) => new MemberShare(Block.BlockId, m.MemberId, _crossed[i], _crossed[i] > 0 ? _mid : 0m,
            filled[i], filled[i] > 0 ? average[m.Request.Side] : 0m, fees[i])).ToArray();
        return new BlockOutcome(_crossed.Where((_, i) => Block.Members[i].Request.Side == OrderSide.Buy).Sum(), _mid, sides, shares);
    }
}
