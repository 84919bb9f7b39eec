using Google.Protobuf.WellKnownTypes;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Runs;
using RebalanceMesh.MarketState;

namespace RebalanceMesh.Execution;

/// <summary>
/// A plan's orders at the venues: journals each child before it goes, sends it through the venue's gateway, records
/// what the venue did once per client order id, and commits the order's fill report into the outbox with it; rests
/// maker orders; reads the venues' quotes and state. The plan's run (<see cref="PlanExecutor"/>) decides what to send.
/// </summary>
public sealed class VenueOrders(
    ExecutionStore store,
    MarketStateStore market,
    IEnumerable<IVenueGateway> gateways,
    ReportOutbox outbox,
    IOptions<ExecutionOptions> options,
    TimeProvider time)
{
    private static readonly Counter<long> Fills = PlanExecutor.Meter.CreateCounter<long>("rebalancemesh.execution.fills", description: "Fills by venue.");
    private static readonly Counter<long> Rejects = PlanExecutor.Meter.CreateCounter<long>("rebalancemesh.execution.rejects", description: "Venue rejects by venue.");

    /// <summary>Venues whose reject series exist: each starts at zero with the first order sent there, so a rate or an
    /// alert over rejects reads 0, not "no data", until the first reject.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> RejectSeries = new(StringComparer.Ordinal);

    /// <summary>
    /// Maker first: a post-only limit order for what the slice still needs rests at the best near touch (the highest
    /// bid for a buy, the lowest ask for a sell; the lower maker fee on a tie; never beyond the leg's limit, never more
    /// than the plan's cash pays for) for up to the rest's wait, filling as the market comes to it
    /// (<see cref="RestingOrder"/>) — each fill journaled, recorded once at the venue and reported. Then the rest is
    /// cancelled and the run takes what is left on the market as it is then. A halt or cancel, or the venue going down,
    /// cancels the rest at once. A resting order journaled in an earlier delivery carries on from what it had filled.
    /// </summary>
    public async Task<Rested> RestAsync(PlanApproved plan, LegProgress state, Rest rest, CancellationToken cancellationToken)
    {
        var side = state.Leg.Side;
        var leg = plan.Legs.First(l => l.LegId == state.Leg.LegId);
        var order = await store.GetOrderAsync(rest.ClientOrderId);
        var untouched = new Rested(0, 0, 0, rest.Quotes, rest.Venues, string.Empty, 0);
        if (order is { Status: OrderStatus.Filled or OrderStatus.Cancelled or OrderStatus.Rejected or OrderStatus.Expired })
        {
            return untouched;
        }

        using var activity = PlanExecutor.ActivitySource.StartActivity("rest maker order");
        activity?.SetTag("execution.leg_id", state.Leg.LegId);
        if (order is null)
        {
            var best = rest.Venues.Where(v => v.Available)
                .Select(v => (Venue: v, Quote: rest.Quotes.FirstOrDefault(q => q.VenueId == v.VenueId)))
                .Where(x => x.Quote is not null && RestingOrder.PostPrice(side, x.Quote) > 0)
                .OrderBy(x => side == OrderSide.Buy ? -RestingOrder.PostPrice(side, x.Quote!) : RestingOrder.PostPrice(side, x.Quote!))
                .ThenBy(x => x.Venue.MakerFeeBps)
                .FirstOrDefault();
            if (best.Quote is null)
            {
                return untouched;
            }

            var price = RestingOrder.PostPrice(side, best.Quote);
            if (rest.Limit is { } limit && (side == OrderSide.Buy ? price > limit : price < limit))
            {
                return untouched;
            }

            var quantity = rest.Quantity;
            if (rest.Cash is { } cash)
            {
                // What the plan's cash pays for at the post price and maker fee (nothing else spends while it rests).
                quantity = Math.Min(quantity, PlanCash.Affordable(cash, PlanCash.UnitCost(side, state.Leg.Margined, price, best.Venue.MakerFeeBps)));
                if (quantity <= 0)
                {
                    return untouched; // the taker routing says why the leg stops
                }
            }

            var now = time.GetUtcNow().ToTimestamp();
            order = new Order
            {
                ClientOrderId = rest.ClientOrderId,
                PlanId = plan.PlanId,
                LegId = state.Leg.LegId,
                Venue = best.Venue.VenueId,
                InstrumentId = state.Leg.InstrumentId,
                Side = leg.Side,
                Quantity = quantity,
                FilledQuantity = 0m,
                Fees = 0m,
                LimitPrice = price,
                Status = OrderStatus.Sent, // journaled as sent before it is: a crash after this line polls it again
                CreatedAt = now,
                UpdatedAt = now,
            };
            await store.SaveOrderAsync(order);
        }

        activity?.SetTag("execution.venue", order.Venue);
        var restingPrice = order.LimitPrice.ToDecimal();
        var until = time.GetUtcNow() + rest.Wait;
        string? cancelled = null;
        decimal filled = 0, notional = 0, fees = 0;
        (VenueQuote? Quote, decimal Taken) seen = (null, 0m); // a quote's liquidity fills the order once, until the next quote
        while (order.FilledQuantity.ToDecimal() < order.Quantity.ToDecimal() && cancelled is null)
        {
            var left = until - time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                cancelled = $"rest cancelled after {rest.Wait.TotalSeconds:0.###} s";
                break;
            }

            await Task.Delay(left < RestingPoll ? left : RestingPoll, time, cancellationToken);
            if (await store.GetPendingStopAsync(plan.PlanId) is { } stop)
            {
                cancelled = stop;
                break;
            }

            var venue = (await VenuesAsync(state.Leg.Account)).FirstOrDefault(v => v.VenueId == order.Venue);
            if (venue is not { Available: true })
            {
                cancelled = $"venue {order.Venue} went down";
                break;
            }

            var quote = (await VenueQuotesAsync(state.Leg.InstrumentId)).FirstOrDefault(q => q.VenueId == order.Venue);
            var open = order.Quantity.ToDecimal() - order.FilledQuantity.ToDecimal();
            seen = quote == seen.Quote ? seen : (quote, 0m);
            if (Gateway(venue.VenueId) is not { } gateway)
            {
                cancelled = NoGateway(venue.VenueId);
                break;
            }

            var account = state.Leg.Account.Length > 0 ? new VenueAccount(plan.PortfolioId, state.Leg.InstrumentId) : null;
            var fill = await gateway.PollRestingAsync(venue, new RestingState(rest.ClientOrderId, side, restingPrice, open, quote, seen.Taken, order.FilledQuantity.ToDecimal(), account), cancellationToken);
            seen.Taken += fill.FilledQuantity;
            if (fill.FilledQuantity <= 0)
            {
                continue;
            }

            // Each fill of the resting order has its own id at the venue and in the reports: the order's cumulative fill after it.
            var filledAfter = order.FilledQuantity.ToDecimal() + fill.FilledQuantity;
            var fillId = RestingOrder.FillId(rest.ClientOrderId, filledAfter);
            var arrival = state.ArrivalPrice ?? 0m;
            var slippage = arrival > 0 ? (side == OrderSide.Buy ? 1 : -1) * (fill.Price - arrival) * fill.FilledQuantity : 0m;
            var recorded = await store.RecordVenueExecutionAsync(fill with { ClientOrderId = fillId }, slippage);
            order.AveragePrice = restingPrice;
            order.FilledQuantity = filledAfter;
            order.Fees = order.Fees.ToDecimal() + recorded.Fee;
            order.Status = filledAfter >= order.Quantity.ToDecimal() ? OrderStatus.Filled : OrderStatus.PartiallyFilled;
            order.UpdatedAt = time.GetUtcNow().ToTimestamp();
            var report = PlanReports.Fill(plan, leg, order, fillId, recorded.FilledQuantity, recorded.Price, recorded.Fee, time.GetUtcNow());
            await store.SaveOrderAsync(order, report);
            filled += recorded.FilledQuantity;
            notional += recorded.FilledQuantity * recorded.Price;
            fees += recorded.Fee;
            Fills.Add(1, new KeyValuePair<string, object?>("venue", order.Venue), new KeyValuePair<string, object?>("liquidity", "maker"));
            await outbox.PublishAsync([report], cancellationToken);
        }

        if (cancelled is not null && order.FilledQuantity.ToDecimal() < order.Quantity.ToDecimal())
        {
            order.Status = OrderStatus.Cancelled;
            order.StatusReason = $"{cancelled}: {order.FilledQuantity.Value} of {order.Quantity.Value} filled as maker";
            order.UpdatedAt = time.GetUtcNow().ToTimestamp();
            await store.SaveOrderAsync(order);
        }

        // The rest is taken on the market as it is now; what the resting order took from the current quote is gone.
        var quotes = await VenueQuotesAsync(state.Leg.InstrumentId);
        var taken = seen.Quote is { } last && quotes.Contains(last) ? seen.Taken : 0m;
        return new Rested(filled, notional, fees, quotes, await VenuesAsync(state.Leg.Account), order.Venue, taken);
    }

    /// <summary>One read of the venues' state and one of the quotes of every instrument a run asked for.</summary>
    public async Task<MarketsRead> ReadMarketsAsync(ReadMarkets read)
    {
        var quotes = market.GetQuotesAsync(read.Queries.Select(q => q.InstrumentId).Distinct(StringComparer.Ordinal).ToArray());
        var down = await store.GetVenuesDownAsync();
        var byInstrument = (await quotes).ToLookup(q => q.InstrumentId, ToVenueQuote, StringComparer.Ordinal);
        return new MarketsRead(read.Queries.Select(q => new MarketRead(byInstrument[q.InstrumentId].ToArray(), Venues(q.Account, down))).ToArray());
    }

    /// <summary>
    /// A run's children, sent at once (they are independent: distinct venues of a leg, or distinct legs working
    /// together). A block's children (<paramref name="reportFills"/> false) are journaled and recorded like a plan's,
    /// but their fills are reported to the accounts by the block's allocation instead.
    /// </summary>
    public async Task<ChildrenDone> SendChildrenAsync(PlanApproved plan, PlanRun run, SendChildren send, bool reportFills, CancellationToken cancellationToken)
    {
        using var activity = PlanExecutor.ActivitySource.StartActivity("send children");
        activity?.SetTag("execution.children", send.Children.Count);
        var down = await store.GetVenuesDownAsync();
        var executions = await Task.WhenAll(send.Children.Select(child =>
        {
            var state = run.Leg(child.LegId);
            var leg = plan.Legs.First(l => l.LegId == child.LegId);
            var venue = Venues(state.Leg.Account, down).FirstOrDefault(v => v.VenueId == child.Child.VenueId) ?? options.Value.Venues.First(v => v.VenueId == child.Child.VenueId);
            return SendAsync(plan, leg, state.Leg.Side, child.Child, venue, child.Quote, state.ArrivalPrice, child.Limit, child.Taken, cancellationToken, reportFills);
        }));
        return new ChildrenDone(executions);
    }

    /// <summary>The gateway that reaches a venue: the last registered one that handles it; null when none does.</summary>
    public IVenueGateway? Gateway(string venueId) => gateways.LastOrDefault(g => g.Handles(venueId));

    public static string NoGateway(string venueId) => $"no venue gateway reaches {venueId}";

    /// <summary>How often a resting order looks at its venue's quote.</summary>
    private static readonly TimeSpan RestingPoll = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Journals a child order, sends it through its venue's connector and records what it did, once: a child journaled
    /// in an earlier delivery answers with its journaled execution (and its fill is reported again; planning applies
    /// each fill id once), a resend of the same client order id is de-duplicated by the venue's record.
    /// </summary>
    public async Task<VenueExecution> SendAsync(PlanApproved plan, ApprovedLeg leg, OrderSide side, ChildOrder child, VenueSpec venue, VenueQuote? quote, decimal? arrivalPrice, decimal? limit, decimal taken, CancellationToken cancellationToken, bool reportFills = true)
    {
        var now = time.GetUtcNow().ToTimestamp();
        var order = await store.GetOrderAsync(child.ClientOrderId) ?? new Order
        {
            ClientOrderId = child.ClientOrderId,
            PlanId = plan.PlanId,
            LegId = leg.LegId,
            Venue = child.VenueId,
            InstrumentId = leg.InstrumentId,
            Side = leg.Side,
            Quantity = child.Quantity,
            FilledQuantity = 0m,
            Fees = 0m,
            LimitPrice = child.WorstPrice,
            Status = OrderStatus.New,
            CreatedAt = now,
            UpdatedAt = now,
        };

        if (order.Status is OrderStatus.Rejected or OrderStatus.Expired or OrderStatus.Cancelled)
        {
            return new VenueExecution(order.ClientOrderId, order.Venue, false, 0, 0, 0, order.StatusReason);
        }

        if (order.Venue != child.VenueId && options.Value.Venues.FirstOrDefault(v => v.VenueId == order.Venue) is { } journaled)
        {
            // Journaled before a crash with another routing: the order is what was (maybe) sent — same venue, same
            // quantity — so the venue's record of its client order id de-duplicates it.
            child = child with { VenueId = order.Venue, Quantity = order.Quantity.ToDecimal() };
            venue = journaled;
            quote = (await VenueQuotesAsync(leg.InstrumentId)).FirstOrDefault(q => q.VenueId == order.Venue);
            taken = 0;
        }

        if (order.Status is OrderStatus.Filled or OrderStatus.PartiallyFilled)
        {
            // Executed in an earlier delivery: its fill report was committed with the order (and relayed when the plan
            // resumed); it is published again for orders journaled before reports went through the outbox — planning
            // applies each fill id once.
            if (reportFills)
            {
                await outbox.PublishAsync([PlanReports.Fill(plan, leg, order, time.GetUtcNow())], cancellationToken);
            }

            return new VenueExecution(order.ClientOrderId, order.Venue, true, order.FilledQuantity.ToDecimal(), order.AveragePrice.ToDecimal(), order.Fees.ToDecimal(), string.Empty);
        }

        // Journal before sending: a crash after this line resends the same client order id, which the venue de-duplicates.
        if (order.Status == OrderStatus.New)
        {
            order.Status = OrderStatus.Sent;
            await store.SaveOrderAsync(order);
        }

        // A marketable limit at the deepest level its routing priced (journaled with the order; orders journaled without
        // one keep the leg's limit): the venue never fills it beyond what routing and the plan's cash counted on.
        var orderLimit = DecimalValue.TryParse(order.LimitPrice, out var journaledLimit) && journaledLimit > 0 ? journaledLimit : limit;
        // A leg in a venue account trades in the portfolio's account there: the venue refuses to sell units it does not
        // hold and books the fills into it.
        var account = leg.Venue.Length > 0 ? new VenueAccount(plan.PortfolioId, leg.InstrumentId) : null;
        var outcome = Gateway(venue.VenueId) is { } gateway
            ? await gateway.ExecuteAsync(venue, new VenueOrder(child, side, orderLimit, quote, taken, account), cancellationToken)
            : new VenueExecution(child.ClientOrderId, venue.VenueId, false, 0, 0, 0, NoGateway(venue.VenueId));
        if (RejectSeries.TryAdd(venue.VenueId, true))
        {
            foreach (var status in new[] { OrderStatus.Rejected, OrderStatus.Expired })
            {
                Rejects.Add(0, new KeyValuePair<string, object?>("venue", venue.VenueId), new KeyValuePair<string, object?>("status", status.ToString()));
            }
        }

        var arrival = arrivalPrice ?? 0m;
        var slippage = arrival > 0 && outcome.Accepted ? (side == OrderSide.Buy ? 1 : -1) * (outcome.Price - arrival) * outcome.FilledQuantity : 0m;
        var execution = await store.RecordVenueExecutionAsync(outcome, slippage);
        var next = OrderStates.AfterExecution(execution, order.Quantity.ToDecimal());
        if (execution.FilledQuantity <= 0)
        {
            order.Status = next == OrderStates.State.Expired ? OrderStatus.Expired : OrderStatus.Rejected;
            order.StatusReason = execution.RejectReason;
            order.UpdatedAt = time.GetUtcNow().ToTimestamp();
            await store.SaveOrderAsync(order);
            Rejects.Add(1, new KeyValuePair<string, object?>("venue", venue.VenueId), new KeyValuePair<string, object?>("status", order.Status.ToString()));
            return execution with { Accepted = false };
        }

        // Immediate-or-cancel: what the book held within the limit filled, the rest expired.
        order.Status = next == OrderStates.State.Filled ? OrderStatus.Filled : OrderStatus.PartiallyFilled;
        order.StatusReason = execution.RejectReason;
        order.FilledQuantity = execution.FilledQuantity;
        order.AveragePrice = execution.Price;
        order.Fees = execution.Fee;
        order.UpdatedAt = time.GetUtcNow().ToTimestamp();
        var report = reportFills ? PlanReports.Fill(plan, leg, order, time.GetUtcNow()) : null;
        await store.SaveOrderAsync(order, report);
        Fills.Add(1, new KeyValuePair<string, object?>("venue", venue.VenueId));
        if (report is not null)
        {
            await outbox.PublishAsync([report], cancellationToken);
        }

        return execution;
    }

    /// <summary>The configured venues a leg may use (its account's venue alone, when it names one), with run-time outages applied.</summary>
    public async Task<IReadOnlyList<VenueSpec>> VenuesAsync(string account) => Venues(account, await store.GetVenuesDownAsync());

    /// <summary>The venues a leg in <paramref name="account"/> may use (all when it names none), those <paramref name="down"/> unavailable.</summary>
    public VenueSpec[] Venues(string account, IReadOnlyDictionary<string, string> down) => options.Value.Venues
        .Where(v => account.Length == 0 || v.VenueId == account)
        .Select(v => down.ContainsKey(v.VenueId) ? v with { Available = false } : v)
        .ToArray();

    /// <summary>Each venue's latest top of book for the instrument, from market state.</summary>
    public async Task<VenueQuote[]> VenueQuotesAsync(string instrumentId) =>
        (await market.GetQuotesAsync([instrumentId])).Select(ToVenueQuote).ToArray();

    /// <summary>A venue's protobuf quote as the router and the simulated venues read it (missing sizes are zero).</summary>
    public static VenueQuote ToVenueQuote(Quote q) =>
        new(q.Venue, q.Bid.ToDecimal(), q.Ask.ToDecimal(), DecimalOrZero(q.BidSize), DecimalOrZero(q.AskSize));

    private static decimal DecimalOrZero(DecimalValue? value) => DecimalValue.TryParse(value, out var d) ? d : 0m;
}
