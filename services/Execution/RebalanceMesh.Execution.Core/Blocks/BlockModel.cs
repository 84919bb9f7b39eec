using RebalanceMesh.Execution.Core.Runs;

namespace RebalanceMesh.Execution.Core.Blocks;

/// <summary>Whether a plan's trade legs join other plans' in block orders.</summary>
public enum BlockTrading
{
    /// <summary>The plan's orders go to the venues on their own.</summary>
    Alone,

    /// <summary>Slices join concurrent plans' slices of the same instrument in one block order per side.</summary>
    Block,

    /// <summary>As <see cref="Block"/>, and opposite trades cross internally at the mid first.</summary>
    BlockAndCross,
}

/// <summary>
/// One slice of one plan's leg, asking to trade in a block: <paramref name="Quantity"/> of the instrument at no worse
/// than <paramref name="PriceCap"/> (the leg's limit, or the worst price the slice's own routing would have walked).
/// A purchase's quantity is already cut to what the plan's cash pays for at that cap with the dearest venue fee, so any
/// allocation at or inside the cap keeps the plan's cash at or above zero.
/// </summary>
/// <param name="MemberId">Stable across restarts: the plan and the slice (<c>{plan}:{leg}-s{n}</c>); a join under an id
/// already in a block is answered from that block.</param>
/// <param name="LotSize">Allocations are whole lots of it (a fraction of a lot only when the venues filled one).</param>
/// <param name="Cross">The plan allows internal crossing.</param>
public sealed record BlockRequest(string LegId, string MemberId, string InstrumentId, OrderSide Side, decimal Quantity, decimal LotSize, decimal PriceCap, bool Cross)
{
    /// <summary>
    /// A slice of a plan without a limit price is capped this far (basis points) beyond the worst price its own routing
    /// would walk when it joins: room for the market to move while the block forms, and a bound for the plan's cash.
    /// </summary>
    public const double UnlimitedBandBps = 50;
}

/// <summary>A request in a block, with the plan and portfolio it books to.</summary>
public sealed record BlockMember(string PlanId, string PortfolioId, BlockRequest Request)
{
    public string MemberId => Request.MemberId;
}

/// <summary>A block: the members that joined it in one window, all of one instrument and lot size.</summary>
public sealed record BlockOrder(string BlockId, string InstrumentId, decimal LotSize, IReadOnlyList<BlockMember> Members);

/// <summary>
/// One member's part of a block: its share of the internal cross (at the cross price, no fee) and its allocation of
/// the block's venue fills (at the side's average price, with its share of the fees).
/// </summary>
public sealed record MemberShare(string BlockId, string MemberId, decimal Crossed, decimal CrossPrice, decimal Filled, decimal AveragePrice, decimal Fee);

/// <summary>One side of a block at the venues: what it sent, what filled, at what average price and fees.</summary>
public sealed record SideFill(OrderSide Side, decimal Quantity, decimal Filled, decimal AveragePrice, decimal Fees, string Message);

/// <summary>A block's outcome: the internal cross, each side at the venues, and every member's share.</summary>
public sealed record BlockOutcome(decimal Crossed, decimal CrossPrice, IReadOnlyList<SideFill> Sides, IReadOnlyList<MemberShare> Shares);

/// <summary>
/// Ask to trade these slices in blocks (the trade legs of a plan working together, one request each). Answered by
/// <see cref="BlockJoined"/>, one share per request in this order.
/// </summary>
public sealed record JoinBlock(IReadOnlyList<BlockRequest> Requests) : RunCommand;

/// <summary>Each request's share of the block it joined, in the order asked.</summary>
public sealed record BlockJoined(IReadOnlyList<MemberShare> Shares) : RunObservation;
