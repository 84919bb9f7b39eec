namespace RebalanceMesh.Execution.Core;

/// <summary>The outcome of sending one child order to a venue (or of one fill of a resting order).</summary>
public sealed record VenueExecution(string ClientOrderId, string VenueId, bool Accepted, decimal FilledQuantity, decimal Price, decimal Fee, string RejectReason);

/// <summary>
/// The portfolio's account at the venue an order trades in, when the leg names one (spot units held there, margined
/// contracts against collateral there): the venue books the order's fills into it and refuses to sell units it does not hold.
/// </summary>
public sealed record VenueAccount(string PortfolioId, string InstrumentId);

/// <summary>An immediate-or-cancel child as a venue receives it, with what a simulated venue needs of the market.</summary>
/// <param name="Quote">The venue's latest top of book (simulated venues build their book from it).</param>
/// <param name="Taken">Depth already taken from that quote's side by this leg (simulated venues deplete their book by it).</param>
/// <param name="Account">The portfolio's account at the venue the order trades in, or null.</param>
public sealed record VenueOrder(ChildOrder Child, OrderSide Side, decimal? Limit, VenueQuote? Quote, decimal Taken, VenueAccount? Account = null);

/// <summary>
/// A post-only order resting at a venue: what is still open, at what price, and the quote liquidity it already used.
/// <paramref name="ClientOrderId"/> and <paramref name="Filled"/> (what it filled before) name its next fill
/// (<see cref="RestingOrder.FillId"/>).
/// </summary>
public sealed record RestingState(string ClientOrderId, OrderSide Side, decimal Limit, decimal Open, VenueQuote? Quote, decimal Taken, decimal Filled = 0, VenueAccount? Account = null);

/// <summary>The legs that are not trades: loan legs on a lending venue, margin top-ups and collateral transfers on a trading venue.</summary>
public enum VenueOperationKind
{
    SupplyCollateral,
    WithdrawCollateral,
    Borrow,
    Repay,
    MarginTopUp,
    CollateralTransfer,
}

/// <summary>
/// One non-trade leg at a venue, applied once per <paramref name="OperationId"/> (the plan and the leg): a resend after a
/// crash answers with the first outcome.
/// </summary>
/// <param name="Asset">The asset moved: the collateral supplied or withdrawn, the asset borrowed or repaid, the margin currency.</param>
/// <param name="LoanId">The loan, for loan legs.</param>
/// <param name="FromVenue">Where a collateral transfer takes the collateral from (it lands on <paramref name="Venue"/>).</param>
public sealed record VenueOperation(string OperationId, VenueOperationKind Kind, string PortfolioId, string Venue, string Asset, decimal Quantity, string LoanId = "", string FromVenue = "");

/// <summary>What a venue did with an operation: accepted for <paramref name="Quantity"/>, or refused with its reason.</summary>
public sealed record VenueOperationResult(bool Accepted, decimal Quantity, string Reason);

/// <summary>
/// The one way execution reaches a venue, for every leg kind: trades (immediate-or-cancel children and resting maker
/// orders) and operations (loans, collateral, margin top-ups, transfers). The executor journals every child and every
/// operation before it calls the gateway and records each outcome once by its id, and a gateway must be idempotent
/// the same way real venues are: a child resent under its client order id, or an operation under its operation id,
/// answers with what the first did. The simulated venues are one gateway (a plugin, not in the production build); a
/// real venue's connector is another — the last registered gateway that handles a venue reaches it.
/// </summary>
public interface IVenueGateway
{
    /// <summary>Whether this gateway reaches <paramref name="venueId"/>.</summary>
    bool Handles(string venueId);

    /// <summary>Immediate-or-cancel: what fills now (the rest expires), or a reject with its reason.</summary>
    Task<VenueExecution> ExecuteAsync(VenueSpec venue, VenueOrder order, CancellationToken cancellationToken);

    /// <summary>What a resting post-only order fills against the venue's current state.</summary>
    Task<VenueExecution> PollRestingAsync(VenueSpec venue, RestingState order, CancellationToken cancellationToken);

    /// <summary>A loan leg, a margin top-up or a collateral transfer, once per operation id.</summary>
    Task<VenueOperationResult> ApplyAsync(VenueOperation operation, CancellationToken cancellationToken);
}

/// <summary>A resting (post-only) limit order: where it posts and how its fills are named.</summary>
public static class RestingOrder
{
    /// <summary>The post-only price: the bid for a buy, the ask for a sell (it never crosses the spread).</summary>
    public static decimal PostPrice(OrderSide side, VenueQuote quote) => side == OrderSide.Buy ? quote.Bid : quote.Ask;

    /// <summary>Each fill of a resting order has its own id, at the venue and in the reports: the order's cumulative fill after it.</summary>
    public static string FillId(string clientOrderId, decimal filledAfter) =>
        $"{clientOrderId}@{filledAfter.ToString("0.########", System.Globalization.CultureInfo.InvariantCulture)}";
}
