using System.Text.Json.Serialization;

namespace RebalanceMesh.Execution.Core.Runs;

/// <summary>What a leg does.</summary>
public enum LegAction
{
    Trade,
    Repay,
    SupplyCollateral,
    WithdrawCollateral,
    Borrow,
    MarginTopUp,
    CollateralTransfer,
}

/// <summary>One leg of an approved plan, in domain terms.</summary>
/// <param name="Account">The venue whose account the leg acts in (a trade there trades only there); empty: any venue.</param>
/// <param name="Margined">A trade in a margined contract: only its fees move the plan's cash.</param>
/// <param name="HedgesLegId">For a hedge: the leg it follows, slice by slice.</param>
/// <param name="FundedByLegId">For a repayment: the sale that funds it (it repays no more than the sale raised).</param>
/// <param name="CashChange">For a leg that is not a trade: the cash it moves when complete.</param>
/// <param name="LotSize">For a trade: its instrument's lot (block orders allocate in whole lots of it).</param>
/// <param name="PriceCap">For a trade: no child beyond this price (a block's tightest member), besides the plan's slippage limit.</param>
public sealed record RunLeg(
    string LegId,
    int Sequence,
    LegAction Action,
    string InstrumentId,
    OrderSide Side,
    decimal Quantity,
    decimal ReferencePrice,
    string Account = "",
    bool Margined = false,
    string HedgesLegId = "",
    string FundedByLegId = "",
    decimal CashChange = 0m,
    string LoanId = "",
    string FromVenue = "",
    decimal LotSize = 1m,
    decimal? PriceCap = null);

/// <summary>How a plan's trade legs are worked (the policy's execution style).</summary>
/// <param name="TwapSlices">Equal slices (0 or 1: one).</param>
/// <param name="PovRate">Share of the displayed liquidity per slice; 0 is off.</param>
/// <param name="MakerWait">Each slice first rests a post-only order this long; zero is off.</param>
public sealed record SliceStyle(int TwapSlices = 0, TimeSpan TwapDuration = default, double PovRate = 0, TimeSpan PovInterval = default, TimeSpan MakerWait = default);

/// <summary>An approved plan as execution runs it.</summary>
/// <param name="CashBudget">The portfolio's free cash when the plan was made; null: no buying-power check.</param>
/// <param name="MaxSlippageBps">Limit-price protection from each leg's arrival price; 0 is none.</param>
/// <param name="Blocks">Whether its trade legs in the default account join other plans' in block orders.</param>
public sealed record RunPlan(string PlanId, string PortfolioId, IReadOnlyList<RunLeg> Legs, decimal? CashBudget, double MaxSlippageBps, SliceStyle Style, Blocks.BlockTrading Blocks = Blocks.BlockTrading.Alone);

/// <summary>Where a leg or a plan stands.</summary>
public enum RunStatus
{
    Pending,
    Running,
    Filled,
    PartiallyFilled,
    Rejected,
    Cancelled,
    Completed,
    Failed,
}

/// <summary>What one leg has done so far.</summary>
public sealed class LegProgress(RunLeg leg)
{
    public RunLeg Leg { get; } = leg;

    /// <summary>What the leg is to do: its quantity, less for a hedge whose leg filled short or a repayment its sale funds.</summary>
    public decimal Quantity { get; internal set; } = leg.Quantity;

    public decimal Filled { get; internal set; }

    public decimal AveragePrice { get; internal set; }

    public decimal Fees { get; internal set; }

    /// <summary>The consolidated mid when the leg first read the market; shortfall and the limit refer to it.</summary>
    public decimal? ArrivalPrice { get; internal set; }

    public double ShortfallBps { get; internal set; }

    public double ShortfallVsPlanBps { get; internal set; }

    public RunStatus Status { get; internal set; } = RunStatus.Pending;

    public string Message { get; internal set; } = string.Empty;

    /// <summary>Routings the plan's cash cut short.</summary>
    public int CashCuts { get; internal set; }

    public bool Done => Quantity > 0 && Filled >= Quantity;

    /// <summary>Adds a fill to the leg's quantity, average price and fees.</summary>
    internal void Add(decimal quantity, decimal price, decimal fee)
    {
        if (quantity <= 0)
        {
            return;
        }

        AveragePrice = ((Filled * AveragePrice) + (quantity * price)) / (Filled + quantity);
        Filled += quantity;
        Fees += fee;
    }

    /// <summary>The leg in the plan's cash (<see cref="PlanCash"/>).</summary>
    internal LegCash Cash() => new(Leg.Action == LegAction.Trade ? Leg.Side : null, Leg.Margined, Leg.Quantity, Leg.CashChange, Filled, AveragePrice, Fees);
}

/// <summary>One child a routing sends for a leg, with what the venue needs to fill it as routed.</summary>
/// <param name="Taken">Liquidity already taken from the venue's quote by this leg (earlier children).</param>
/// <param name="Limit">The leg's limit price; the child's own is its routing's worst price.</param>
public sealed record ChildSend(string LegId, ChildOrder Child, VenueQuote? Quote, decimal Taken, decimal? Limit);

/// <summary>What a plan run asks its host to do; each is answered by exactly one <see cref="RunObservation"/>.</summary>
public abstract record RunCommand;

/// <summary>Is the plan cancelled or trading halted? Answered by <see cref="StopChecked"/>.</summary>
public sealed record CheckStop : RunCommand;

/// <summary>One leg's market: the venues' quotes of its instrument and the venues a leg in <paramref name="Account"/> may use.</summary>
public sealed record MarketQuery(string LegId, string InstrumentId, string Account);

/// <summary>
/// The markets of one or more trade legs, read at once (legs worked together read theirs in one go). Answered by
/// <see cref="MarketsRead"/>, one <see cref="MarketRead"/> per query in this order.
/// </summary>
public sealed record ReadMarkets(IReadOnlyList<MarketQuery> Queries) : RunCommand;

/// <summary>The venues a leg in <paramref name="Account"/> may use now (outages since). Answered by <see cref="VenuesRead"/>.</summary>
public sealed record ReadVenues(string Account) : RunCommand;

/// <summary>
/// Journal and send these immediate-or-cancel children — of one leg, or of several legs working together; they are
/// independent and may go at once. Answered by <see cref="ChildrenDone"/>, one execution per child in this order.
/// </summary>
public sealed record SendChildren(IReadOnlyList<ChildSend> Children) : RunCommand;

/// <summary>
/// Maker first: rest a post-only order for what the slice still needs (<paramref name="Quantity"/>) at the best near
/// touch of <paramref name="Venues"/> within <paramref name="Limit"/> and <paramref name="Cash"/>, for
/// <paramref name="Wait"/>, then cancel the rest. Answered by <see cref="Rested"/>.
/// </summary>
public sealed record Rest(string LegId, string ClientOrderId, decimal Quantity, decimal? Limit, decimal? Cash, TimeSpan Wait, IReadOnlyList<VenueQuote> Quotes, IReadOnlyList<VenueSpec> Venues) : RunCommand;

/// <summary>Carry out a leg that is not a trade (a loan action, a top-up, a transfer) for <paramref name="Quantity"/>. Answered by <see cref="OperationDone"/>.</summary>
public sealed record RunOperation(string LegId, decimal Quantity) : RunCommand;

/// <summary>Wait before the next slice. Answered by <see cref="Waited"/>.</summary>
public sealed record Wait(TimeSpan Delay) : RunCommand;

/// <summary>Publish a report on execution.reports. Answered by <see cref="Published"/>.</summary>
public sealed record Report(RunReport What) : RunCommand;

/// <summary>The run is over; nothing answers it.</summary>
public sealed record Finished : RunCommand;

/// <summary>What a plan run tells planning.</summary>
public enum RunReportKind
{
    Fill,
    LegDone,
    PlanDone,
}

/// <summary>One report: a non-trade leg's fill, a leg's end, or the plan's end (trade fills are reported where they are journaled).</summary>
public sealed record RunReport(RunReportKind Kind, string LegId, RunStatus Status, string Message, double ShortfallBps = 0, double ShortfallVsPlanBps = 0, RunFill? Fill = null);

/// <summary>A fill of a leg that is not a trade: the units it moved at the leg's reference price, no fee.</summary>
public sealed record RunFill(string FillId, string ClientOrderId, string Venue, string InstrumentId, decimal Quantity, decimal Price);

/// <summary>The host's answer to a <see cref="RunCommand"/>; journaled so that a restarted run replays to the same place.</summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "observed")]
[JsonDerivedType(typeof(StopChecked), "stop")]
[JsonDerivedType(typeof(MarketsRead), "markets")]
[JsonDerivedType(typeof(VenuesRead), "venues")]
[JsonDerivedType(typeof(ChildrenDone), "children")]
[JsonDerivedType(typeof(Rested), "rested")]
[JsonDerivedType(typeof(OperationDone), "operation")]
[JsonDerivedType(typeof(Waited), "waited")]
[JsonDerivedType(typeof(Published), "published")]
[JsonDerivedType(typeof(Blocks.BlockJoined), "block")]
public abstract record RunObservation;

/// <summary>Why the plan must stop (a cancel or a trading halt), or null.</summary>
public sealed record StopChecked(string? Reason) : RunObservation;

/// <summary>One leg's market as read: its instrument's quotes per venue and the venues it may use.</summary>
public sealed record MarketRead(IReadOnlyList<VenueQuote> Quotes, IReadOnlyList<VenueSpec> Venues);

/// <summary>The markets a <see cref="ReadMarkets"/> asked for, in its order.</summary>
public sealed record MarketsRead(IReadOnlyList<MarketRead> Markets) : RunObservation;

public sealed record VenuesRead(IReadOnlyList<VenueSpec> Venues) : RunObservation;

/// <summary>Each child's execution, in the order sent (a journaled child answers with its journaled execution).</summary>
public sealed record ChildrenDone(IReadOnlyList<VenueExecution> Executions) : RunObservation;

/// <summary>
/// What the resting order filled (quantity, notional, fees), the market as it is after it, and what the resting order
/// took from that market's quote on its venue.
/// </summary>
public sealed record Rested(decimal Filled, decimal Notional, decimal Fees, IReadOnlyList<VenueQuote> Quotes, IReadOnlyList<VenueSpec> Venues, string Venue, decimal TakenOnVenue) : RunObservation;

public sealed record OperationDone(bool Accepted, decimal Quantity, string Reason) : RunObservation;

public sealed record Waited : RunObservation;

public sealed record Published : RunObservation;
