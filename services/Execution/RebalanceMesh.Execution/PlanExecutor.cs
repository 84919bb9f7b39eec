using Google.Protobuf.WellKnownTypes;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Runs;
using RebalanceMesh.MarketState;

namespace RebalanceMesh.Execution;

/// <summary>
/// Runs approved plans: the plan's <see cref="PlanRun"/> (Execution.Core) decides, this host carries out what it asks —
/// reads quotes and venue states, journals and sends child orders, loan legs, top-ups and transfers through the venue
/// gateways, waits, rests maker orders, publishes reports — and answers with what happened.
/// Every answer is journaled (exe:run:{plan}) before the run sees it, so a redelivered plan (after a crash or a
/// restart) replays its journal to the command it was waiting on and carries on; a child sent again is answered from
/// the order journal and the venue's record of its client order id, never filled twice.
/// </summary>
public sealed class PlanExecutor(
    ExecutionStore store,
    MarketStateStore market,
    IEnumerable<IVenueGateway> gateways,
    ReportOutbox outbox,
    IOptions<ExecutionOptions> options,
    TimeProvider time,
    ILogger<PlanExecutor> logger)
{
    public static readonly ActivitySource ActivitySource = new("RebalanceMesh.Execution");
    private static readonly Meter Meter = new("RebalanceMesh.Execution");
    private static readonly Counter<long> Fills = Meter.CreateCounter<long>("rebalancemesh.execution.fills", description: "Fills by venue.");
    private static readonly Counter<long> Rejects = Meter.CreateCounter<long>("rebalancemesh.execution.rejects", description: "Venue rejects by venue.");
    private static readonly Counter<long> CashCuts = Meter.CreateCounter<long>("rebalancemesh.execution.cash_cuts", description: "Routings cut to what the plan's cash pays for, by instrument.");
    private static readonly Histogram<double> Shortfall = Meter.CreateHistogram<double>("rebalancemesh.execution.shortfall", "bps", "Implementation shortfall per leg versus arrival.");
    private static readonly Counter<long> Replayed = Meter.CreateCounter<long>("rebalancemesh.execution.replayed", description: "Journaled answers replayed into restarted plan runs.");

    public async Task ExecuteAsync(PlanApproved plan, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("execute plan");
        activity?.SetTag("execution.plan_id", plan.PlanId);
        var execution = await store.GetExecutionAsync(plan.PlanId) ?? NewExecution(plan);
        if (IsFinal(execution.Status))
        {
            logger.LogInformation("Plan {PlanId} already executed ({Status}); redelivery ignored", plan.PlanId, execution.Status);
            return;
        }

        execution.Status = ExecutionStatus.Running;
        await store.SaveExecutionAsync(execution);

        var run = new PlanRun(RunMapping.ToRun(plan));
        var journal = await store.GetRunJournalAsync(plan.PlanId);
        activity?.SetTag("execution.replayed", journal.Count);
        if (journal.Count > 0)
        {
            // Resumed: what the last run committed and did not publish goes first, so the plan's reports stay in order.
            await outbox.RelayPlanAsync(plan.PlanId, cancellationToken);
        }

        Replayed.Add(journal.Count);
        var replayed = 0;
        for (var command = run.Start(); command is not Finished;)
        {
            RunObservation answer;
            if (replayed < journal.Count)
            {
                answer = journal[replayed++];
            }
            else
            {
                var reports = new List<ExecutionReport>();
                answer = await CarryOutAsync(plan, run, command, reports, cancellationToken);
                await store.AppendRunJournalAsync(plan.PlanId, answer, reports);
                await outbox.PublishAsync(reports, cancellationToken);
            }

            var cuts = run.Legs.Select(l => l.CashCuts).ToArray();
            command = run.Next(answer);
            if (answer is ChildrenDone or Rested or OperationDone)
            {
                RunMapping.Sync(execution, run);
                await store.SaveExecutionAsync(execution);
            }

            for (var i = 0; i < cuts.Length && replayed >= journal.Count; i++)
            {
                if (run.Legs[i].CashCuts > cuts[i])
                {
                    CashCuts.Add(1, new KeyValuePair<string, object?>("instrument", run.Legs[i].Leg.InstrumentId));
                    logger.LogWarning("Plan {PlanId} leg {LegId}: {Reason}", plan.PlanId, run.Legs[i].Leg.LegId, "a routing was cut to what the plan's cash pays for");
                }
            }
        }

        RunMapping.Sync(execution, run);
        execution.Status = run.Status switch
        {
            RunStatus.Completed => ExecutionStatus.Completed,
            RunStatus.PartiallyFilled => ExecutionStatus.PartiallyFilled,
            RunStatus.Cancelled => ExecutionStatus.Cancelled,
            _ => ExecutionStatus.Failed,
        };
        execution.Message = run.Message;
        await store.SaveExecutionAsync(execution);
        logger.LogInformation("Plan {PlanId} executed: {Status} ({Message})", plan.PlanId, execution.Status, run.Message);
    }

    /// <summary>
    /// Carries out one command of a run and says what happened; a Report command's report is added to
    /// <paramref name="reports"/>, committed with the answer into the outbox, then published.
    /// </summary>
    private async Task<RunObservation> CarryOutAsync(PlanApproved plan, PlanRun run, RunCommand command, List<ExecutionReport> reports, CancellationToken cancellationToken)
    {
        switch (command)
        {
            case CheckStop:
                return new StopChecked(await store.GetPendingStopAsync(plan.PlanId));
            case ReadMarkets read:
            {
                // One read of the venues' state and one of the quotes of every instrument asked for.
                var quotes = market.GetQuotesAsync(read.Queries.Select(q => q.InstrumentId).Distinct(StringComparer.Ordinal).ToArray());
                var down = await store.GetVenuesDownAsync();
                var byInstrument = (await quotes).ToLookup(q => q.InstrumentId, ToVenueQuote, StringComparer.Ordinal);
                return new MarketsRead(read.Queries.Select(q => new MarketRead(byInstrument[q.InstrumentId].ToArray(), Venues(q.Account, down))).ToArray());
            }

            case ReadVenues venues:
                return new VenuesRead(await VenuesAsync(venues.Account));
            case SendChildren send:
            {
                // The children are independent (distinct venues of a leg, or distinct legs working together): they go at once.
                using var activity = ActivitySource.StartActivity("send children");
                activity?.SetTag("execution.children", send.Children.Count);
                var down = await store.GetVenuesDownAsync();
                var executions = await Task.WhenAll(send.Children.Select(child =>
                {
                    var state = run.Leg(child.LegId);
                    var leg = plan.Legs.First(l => l.LegId == child.LegId);
                    var venue = Venues(state.Leg.Account, down).FirstOrDefault(v => v.VenueId == child.Child.VenueId) ?? options.Value.Venues.First(v => v.VenueId == child.Child.VenueId);
                    return SendAsync(plan, leg, state.Leg.Side, child.Child, venue, child.Quote, state.ArrivalPrice, child.Limit, child.Taken, cancellationToken);
                }));
                return new ChildrenDone(executions);
            }

            case RunOperation operation:
                return await OperateAsync(plan, plan.Legs.First(l => l.LegId == operation.LegId), operation.Quantity, cancellationToken);
            case Wait wait:
                await Task.Delay(wait.Delay, time, cancellationToken);
                return new Waited();
            case Rest rest:
                return await RestAsync(plan, run.Leg(rest.LegId), rest, cancellationToken);
            case Report report:
                reports.Add(RunReport(plan, report.What));
                return new Published();
            default:
                throw new InvalidOperationException($"A plan run asked for {command}, which this host does not carry out.");
        }
    }

    /// <summary>A run's report for execution.reports (trade fills are reported where they are journaled, in <see cref="SendAsync"/>).</summary>
    private ExecutionReport RunReport(PlanApproved plan, RunReport report)
    {
        switch (report.Kind)
        {
            case RunReportKind.Fill:
                var fill = report.Fill!;
                return NewReport(plan, report.LegId, ReportKind.Fill, r => r.Fill = new Fill
                {
                    FillId = fill.FillId,
                    ClientOrderId = fill.ClientOrderId,
                    Venue = fill.Venue,
                    InstrumentId = fill.InstrumentId,
                    Quantity = fill.Quantity,
                    Price = fill.Price,
                    Fee = 0m,
                    FilledAt = time.GetUtcNow().ToTimestamp(),
                });
            case RunReportKind.LegDone:
                if (report.Status is RunStatus.Filled or RunStatus.PartiallyFilled && report.ShortfallBps != 0)
                {
                    Shortfall.Record(report.ShortfallBps, new KeyValuePair<string, object?>("instrument", plan.Legs.First(l => l.LegId == report.LegId).InstrumentId));
                }

                return NewReport(plan, report.LegId, ReportKind.LegDone, r =>
                {
                    r.LegStatus = report.Status switch
                    {
                        RunStatus.Filled => ReportedLegStatus.Filled,
                        RunStatus.PartiallyFilled => ReportedLegStatus.PartiallyFilled,
                        RunStatus.Cancelled => ReportedLegStatus.Cancelled,
                        _ => ReportedLegStatus.Rejected,
                    };
                    r.ShortfallBps = report.ShortfallBps;
                    r.ShortfallVsPlanBps = report.ShortfallVsPlanBps;
                    r.Message = report.Message;
                });
            default:
                return NewReport(plan, string.Empty, ReportKind.PlanDone, r =>
                {
                    r.PlanStatus = report.Status switch
                    {
                        RunStatus.Completed => ReportedPlanStatus.Completed,
                        RunStatus.PartiallyFilled => ReportedPlanStatus.PartiallyFilled,
                        RunStatus.Cancelled => ReportedPlanStatus.Cancelled,
                        _ => ReportedPlanStatus.Failed,
                    };
                    r.Message = report.Message;
                });
        }
    }

    /// <summary>
    /// A cancel for a plan whose execution has not started (its PlanApproved has not arrived, or never will): the plan is
    /// recorded as cancelled, so a PlanApproved arriving later sends nothing, and its end is reported, so planning's
    /// plan ends too. When the plan started meanwhile, it sees the cancel before its next order instead.
    /// </summary>
    public async Task CancelBeforeStartAsync(PlanCancelRequested cancel, string reason, CancellationToken cancellationToken)
    {
        var report = NewReport(new PlanApproved { PlanId = cancel.PlanId, PortfolioId = cancel.PortfolioId }, string.Empty, ReportKind.PlanDone, r =>
        {
            r.PlanStatus = ReportedPlanStatus.Cancelled;
            r.Message = "cancelled before it started: " + reason;
        });
        if (!await store.TryCreateExecutionAsync(new PlanExecution { PlanId = cancel.PlanId, Status = ExecutionStatus.Cancelled, Message = "cancelled before it started: " + reason }, report))
        {
            return;
        }

        await outbox.PublishAsync([report], cancellationToken);
        logger.LogWarning("Plan {PlanId} cancelled before it started: {Reason}", cancel.PlanId, reason);
    }

    /// <summary>
    /// Ends a plan that cannot be run (its runs kept failing with errors): recorded FAILED with why, as far as it got,
    /// and its end reported so planning's plan ends too.
    /// </summary>
    public async Task FailAsync(PlanApproved plan, string reason, CancellationToken cancellationToken)
    {
        var execution = await store.GetExecutionAsync(plan.PlanId) ?? NewExecution(plan);
        if (IsFinal(execution.Status))
        {
            return;
        }

        execution.Status = ExecutionStatus.Failed;
        execution.Message = reason;
        var report = NewReport(plan, string.Empty, ReportKind.PlanDone, r =>
        {
            r.PlanStatus = ReportedPlanStatus.Failed;
            r.Message = reason;
        });
        await store.SaveExecutionAsync(execution, report);
        await outbox.PublishAsync([report], cancellationToken);
        logger.LogError("Plan {PlanId} of {PortfolioId} failed: {Reason}", plan.PlanId, plan.PortfolioId, reason);
    }

    /// <summary>A loan leg on its lending venue, a margin top-up or a collateral transfer on its trading venue, once (by plan and leg).</summary>
    private async Task<OperationDone> OperateAsync(PlanApproved plan, ApprovedLeg leg, decimal quantity, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("execute loan leg");
        activity?.SetTag("execution.leg_id", leg.LegId);
        activity?.SetTag("execution.venue", leg.Venue);
        activity?.SetTag("execution.loan_id", leg.LoanId);
        var kind = leg.Kind switch
        {
            LegKind.MarginTopUp => VenueOperationKind.MarginTopUp,
            LegKind.CollateralTransfer => VenueOperationKind.CollateralTransfer,
            LegKind.SupplyCollateral => VenueOperationKind.SupplyCollateral,
            LegKind.WithdrawCollateral => VenueOperationKind.WithdrawCollateral,
            LegKind.Borrow => VenueOperationKind.Borrow,
            LegKind.Repay => VenueOperationKind.Repay,
            _ => throw new ArgumentOutOfRangeException(nameof(leg), leg.Kind, "Not an operation leg."),
        };
        var operation = new VenueOperation($"{plan.PlanId}:{leg.LegId}", kind, plan.PortfolioId, leg.Venue, leg.InstrumentId, quantity, leg.LoanId, leg.FromVenue);
        var (accepted, done, reason) = Gateway(leg.Venue) is { } gateway
            ? await gateway.ApplyAsync(operation, cancellationToken)
            : new VenueOperationResult(false, 0, NoGateway(leg.Venue));
        if (!accepted)
        {
            logger.LogError("Plan {PlanId}: leg {LegId} refused: {Reason}", plan.PlanId, leg.LegId, reason);
        }

        return new OperationDone(accepted, done, reason ?? string.Empty);
    }

    /// <summary>
    /// Maker first: a post-only limit order for what the slice still needs rests at the best near touch (the highest
    /// bid for a buy, the lowest ask for a sell; the lower maker fee on a tie; never beyond the leg's limit, never more
    /// than the plan's cash pays for) for up to the rest's wait, filling as the market comes to it
    /// (<see cref="RestingOrder"/>) — each fill journaled, recorded once at the venue and reported. Then the rest is
    /// cancelled and the run takes what is left on the market as it is then. A halt or cancel, or the venue going down,
    /// cancels the rest at once. A resting order journaled in an earlier delivery carries on from what it had filled.
    /// </summary>
    private async Task<Rested> RestAsync(PlanApproved plan, LegProgress state, Rest rest, CancellationToken cancellationToken)
    {
        var side = state.Leg.Side;
        var leg = plan.Legs.First(l => l.LegId == state.Leg.LegId);
        var order = await store.GetOrderAsync(rest.ClientOrderId);
        var untouched = new Rested(0, 0, 0, rest.Quotes, rest.Venues, string.Empty, 0);
        if (order is { Status: OrderStatus.Filled or OrderStatus.Cancelled or OrderStatus.Rejected or OrderStatus.Expired })
        {
            return untouched;
        }

        using var activity = ActivitySource.StartActivity("rest maker order");
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
            var report = FillReport(plan, leg, order, fillId, recorded.FilledQuantity, recorded.Price, recorded.Fee);
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

    /// <summary>The gateway that reaches a venue: the last registered one that handles it; null when none does.</summary>
    private IVenueGateway? Gateway(string venueId) => gateways.LastOrDefault(g => g.Handles(venueId));

    private static string NoGateway(string venueId) => $"no venue gateway reaches {venueId}";

    /// <summary>How often a resting order looks at its venue's quote.</summary>
    private static readonly TimeSpan RestingPoll = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Journals a child order, sends it through its venue's connector and records what it did, once: a child journaled
    /// in an earlier delivery answers with its journaled execution (and its fill is reported again; planning applies
    /// each fill id once), a resend of the same client order id is de-duplicated by the venue's record.
    /// </summary>
    private async Task<VenueExecution> SendAsync(PlanApproved plan, ApprovedLeg leg, OrderSide side, ChildOrder child, VenueSpec venue, VenueQuote? quote, decimal? arrivalPrice, decimal? limit, decimal taken, CancellationToken cancellationToken)
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
            await outbox.PublishAsync([FillReport(plan, leg, order)], cancellationToken);
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
        var report = FillReport(plan, leg, order);
        await store.SaveOrderAsync(order, report);
        Fills.Add(1, new KeyValuePair<string, object?>("venue", venue.VenueId));
        await outbox.PublishAsync([report], cancellationToken);
        return execution;
    }

    /// <summary>An immediate-or-cancel order's one fill: what the order filled in all.</summary>
    private ExecutionReport FillReport(PlanApproved plan, ApprovedLeg leg, Order order) =>
        FillReport(plan, leg, order, order.ClientOrderId + ":1", order.FilledQuantity.ToDecimal(), order.AveragePrice.ToDecimal(), order.Fees.ToDecimal());

    private ExecutionReport FillReport(PlanApproved plan, ApprovedLeg leg, Order order, string fillId, decimal quantity, decimal price, decimal fee) =>
        NewReport(plan, leg.LegId, ReportKind.Fill, r => r.Fill = new Fill
        {
            FillId = fillId,
            ClientOrderId = order.ClientOrderId,
            Venue = order.Venue,
            InstrumentId = order.InstrumentId,
            Side = order.Side,
            Quantity = quantity,
            Price = price,
            Fee = fee,
            FilledAt = order.UpdatedAt,
        });

    /// <summary>
    /// A report of the plan. Its id is deterministic — the fill's id, or the leg's or the plan's end — so a report
    /// published twice (relayed after a crash, or again for an order journaled before the outbox) is the same report.
    /// </summary>
    private ExecutionReport NewReport(PlanApproved plan, string legId, ReportKind kind, Action<ExecutionReport> fill)
    {
        var report = new ExecutionReport
        {
            PlanId = plan.PlanId,
            PortfolioId = plan.PortfolioId,
            LegId = legId,
            Kind = kind,
            ReportedAt = time.GetUtcNow().ToTimestamp(),
        };
        fill(report);
        report.ReportId = kind switch
        {
            ReportKind.Fill => "fill:" + report.Fill.FillId,
            ReportKind.LegDone => $"leg-done:{plan.PlanId}:{legId}",
            ReportKind.PlanDone => "plan-done:" + plan.PlanId,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not a plan report."),
        };
        return report;
    }

    /// <summary>A plan's execution state when it is accepted: every leg open, nothing filled.</summary>
    public static PlanExecution NewExecution(PlanApproved plan)
    {
        var execution = new PlanExecution { PlanId = plan.PlanId, Status = ExecutionStatus.Accepted };
        execution.Legs.AddRange(plan.Legs.OrderBy(l => l.Sequence).Select(l => new LegExecution
        {
            LegId = l.LegId,
            InstrumentId = l.InstrumentId,
            Side = l.Side,
            Quantity = l.Quantity,
            FilledQuantity = 0m,
            Fees = 0m,
        }));
        return execution;
    }

    public static bool IsFinal(ExecutionStatus status) =>
        status is ExecutionStatus.Completed or ExecutionStatus.PartiallyFilled or ExecutionStatus.Failed or ExecutionStatus.Cancelled;

    /// <summary>The configured venues a leg may use (its account's venue alone, when it names one), with run-time outages applied.</summary>
    private async Task<IReadOnlyList<VenueSpec>> VenuesAsync(string account) => Venues(account, await store.GetVenuesDownAsync());

    /// <summary>The venues a leg in <paramref name="account"/> may use (all when it names none), those <paramref name="down"/> unavailable.</summary>
    private VenueSpec[] Venues(string account, IReadOnlyDictionary<string, string> down) => options.Value.Venues
        .Where(v => account.Length == 0 || v.VenueId == account)
        .Select(v => down.ContainsKey(v.VenueId) ? v with { Available = false } : v)
        .ToArray();

    /// <summary>Each venue's latest top of book for the instrument, from market state.</summary>
    private async Task<VenueQuote[]> VenueQuotesAsync(string instrumentId) =>
        (await market.GetQuotesAsync([instrumentId])).Select(ToVenueQuote).ToArray();

    /// <summary>A venue's protobuf quote as the router and the simulated venues read it (missing sizes are zero).</summary>
    public static VenueQuote ToVenueQuote(Quote q) =>
        new(q.Venue, q.Bid.ToDecimal(), q.Ask.ToDecimal(), DecimalOrZero(q.BidSize), DecimalOrZero(q.AskSize));

    private static decimal DecimalOrZero(DecimalValue? value) => DecimalValue.TryParse(value, out var d) ? d : 0m;
}
