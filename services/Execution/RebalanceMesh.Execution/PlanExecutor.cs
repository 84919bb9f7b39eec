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
using RebalanceMesh.MarketState;

namespace RebalanceMesh.Execution;

/// <summary>
/// Executes an approved plan: legs in sequence (guard legs first, sells before buys), trades routed across venues by
/// all-in cost, loan legs applied on their lending venue (<see cref="LendingDesk"/>),
/// every child order journaled before it is sent, rejected remainders re-routed to the other venues, and every
/// fill, leg outcome and plan outcome published on execution.reports. Safe to run again on redelivery: journaled
/// orders and the venues' records of client order ids make a repeat send return the original fill.
/// </summary>
public sealed class PlanExecutor(
    ExecutionStore store,
    MarketStateStore market,
    LendingDesk lending,
    IEventBus bus,
    IOptions<ExecutionOptions> options,
    TimeProvider time,
    ILogger<PlanExecutor> logger)
{
    public static readonly ActivitySource ActivitySource = new("RebalanceMesh.Execution");
    private static readonly Meter Meter = new("RebalanceMesh.Execution");
    private static readonly Counter<long> Fills = Meter.CreateCounter<long>("rebalancemesh.execution.fills", description: "Fills by venue.");
    private static readonly Counter<long> Rejects = Meter.CreateCounter<long>("rebalancemesh.execution.rejects", description: "Venue rejects by venue.");
    private static readonly Histogram<double> Shortfall = Meter.CreateHistogram<double>("rebalancemesh.execution.shortfall", "bps", "Implementation shortfall per leg versus arrival.");

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

        string? stopReason = null;
        foreach (var leg in plan.Legs.OrderBy(l => l.Sequence))
        {
            var state = execution.Legs.First(l => l.LegId == leg.LegId);
            if (state.FilledQuantity.ToDecimal() >= state.Quantity.ToDecimal() && state.Quantity.ToDecimal() > 0)
            {
                continue; // done in an earlier delivery
            }

            stopReason ??= await StopReasonAsync(plan.PlanId);
            if (stopReason is null && leg.Kind is not (LegKind.Unspecified or LegKind.Trade))
            {
                // Loan legs (repay, supply, withdraw, borrow) act on the lending venue. A refusal stops the plan: what
                // follows (the sale that was to repay, the rebalancing planned after the guard) depends on it.
                var refused = await ExecuteLoanLegAsync(plan, leg, state, execution, cancellationToken);
                await store.SaveExecutionAsync(execution);
                if (refused is not null)
                {
                    stopReason = $"leg {leg.LegId} ({leg.Kind} on loan {leg.LoanId} at {leg.Venue}) refused: {refused}; the plan stops";
                    logger.LogError("Plan {PlanId}: {Reason}", plan.PlanId, stopReason);
                }

                continue;
            }

            if (stopReason is not null)
            {
                await PublishAsync(plan, leg.LegId, ReportKind.LegDone, r =>
                {
                    r.LegStatus = state.FilledQuantity.ToDecimal() > 0 ? ReportedLegStatus.PartiallyFilled : ReportedLegStatus.Cancelled;
                    r.Message = stopReason;
                }, cancellationToken);
                continue;
            }

            await ExecuteLegAsync(plan, leg, state, execution, cancellationToken);
            await store.SaveExecutionAsync(execution);
        }

        var filledLegs = execution.Legs.Count(l => l.FilledQuantity.ToDecimal() >= l.Quantity.ToDecimal());
        var anyFill = execution.Legs.Any(l => l.FilledQuantity.ToDecimal() > 0);
        execution.Status = stopReason is not null ? ExecutionStatus.Cancelled
            : filledLegs == execution.Legs.Count ? ExecutionStatus.Completed
            : anyFill ? ExecutionStatus.PartiallyFilled
            : ExecutionStatus.Failed;
        await store.SaveExecutionAsync(execution);
        var message = stopReason ?? $"{filledLegs}/{execution.Legs.Count} legs filled, fees {execution.Legs.Sum(l => l.Fees.ToDecimal()):F2}";
        await PublishAsync(plan, string.Empty, ReportKind.PlanDone, r =>
        {
            r.PlanStatus = execution.Status switch
            {
                ExecutionStatus.Completed => ReportedPlanStatus.Completed,
                ExecutionStatus.PartiallyFilled => ReportedPlanStatus.PartiallyFilled,
                ExecutionStatus.Cancelled => ReportedPlanStatus.Cancelled,
                _ => ReportedPlanStatus.Failed,
            };
            r.Message = message;
        }, cancellationToken);
        logger.LogInformation("Plan {PlanId} executed: {Status} ({Message})", plan.PlanId, execution.Status, message);
    }

    /// <summary>
    /// A loan leg on its lending venue, once: its fill (the units moved, at the leg's reference price, no fee) and its
    /// outcome are reported like a trade's. Returns the venue's reason when it refused.
    /// </summary>
    private async Task<string?> ExecuteLoanLegAsync(PlanApproved plan, ApprovedLeg leg, LegExecution state, GetPlanExecutionResponse execution, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("execute loan leg");
        activity?.SetTag("execution.leg_id", leg.LegId);
        activity?.SetTag("execution.venue", leg.Venue);
        activity?.SetTag("execution.loan_id", leg.LoanId);
        if (leg.FundedByLegId.Length > 0)
        {
            // Repay what the sale really raised, never more: a sale below its reference price must not take cash negative.
            var sale = execution.Legs.FirstOrDefault(l => l.LegId == leg.FundedByLegId);
            var raised = sale is null ? 0m : decimal.Round((sale.FilledQuantity.ToDecimal() * (DecimalValue.TryParse(sale.AveragePrice, out var p) ? p : 0m)) - sale.Fees.ToDecimal(), 2, MidpointRounding.ToZero);
            var capped = Math.Min(leg.Quantity.ToDecimal(), Math.Max(raised, 0m));
            activity?.SetTag("execution.funded_by", leg.FundedByLegId);
            if (capped <= 0)
            {
                await PublishAsync(plan, leg.LegId, ReportKind.LegDone, r =>
                {
                    r.LegStatus = ReportedLegStatus.Rejected;
                    r.Message = $"the sale {leg.FundedByLegId} that funds it raised nothing";
                }, cancellationToken);
                return $"the sale {leg.FundedByLegId} that funds it raised nothing";
            }

            leg = new ApprovedLeg(leg) { Quantity = capped };
            state.Quantity = capped; // the leg is complete once it repays what the sale raised
        }

        var (accepted, quantity, reason) = await lending.ApplyLegAsync(plan.PortfolioId, plan.PlanId, leg);
        if (accepted)
        {
            var now = time.GetUtcNow().ToTimestamp();
            await PublishAsync(plan, leg.LegId, ReportKind.Fill, r => r.Fill = new Fill
            {
                FillId = $"{plan.PlanId}:{leg.LegId}:loan",
                ClientOrderId = $"{plan.PlanId}:{leg.LegId}",
                Venue = leg.Venue,
                InstrumentId = leg.InstrumentId,
                Quantity = quantity,
                Price = leg.ReferencePrice,
                Fee = 0m,
                FilledAt = now,
            }, cancellationToken);
            state.FilledQuantity = quantity;
            state.AveragePrice = leg.ReferencePrice;
        }

        await PublishAsync(plan, leg.LegId, ReportKind.LegDone, r =>
        {
            r.LegStatus = accepted ? ReportedLegStatus.Filled : ReportedLegStatus.Rejected;
            r.Message = accepted ? $"{leg.Kind} {quantity} {leg.InstrumentId} on {leg.Venue}" : reason;
        }, cancellationToken);
        return accepted ? null : reason;
    }

    private async Task ExecuteLegAsync(PlanApproved plan, ApprovedLeg leg, LegExecution state, GetPlanExecutionResponse execution, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("execute leg");
        activity?.SetTag("execution.leg_id", leg.LegId);
        activity?.SetTag("execution.instrument", leg.InstrumentId);
        var side = leg.Side == Side.Buy ? OrderSide.Buy : OrderSide.Sell;
        var quotes = await VenueQuotesAsync(leg.InstrumentId);
        if (quotes.Length > 0 && (state.ArrivalPrice is null || state.ArrivalPrice.Value.Length == 0))
        {
            state.ArrivalPrice = quotes.Max(q => q.Bid) / 2m + (quotes.Min(q => q.Ask) / 2m);
        }

        // Limit-price protection: no child beyond the plan's maximum slippage from the arrival price.
        decimal? limit = plan.MaxSlippageBps > 0 && DecimalValue.TryParse(state.ArrivalPrice, out var arrivalPrice) && arrivalPrice > 0
            ? SlippageLimit.For(side, arrivalPrice, plan.MaxSlippageBps)
            : null;
        // A leg that names an account (venue) trades only there: units held on a venue are sold on it. Venues taken
        // down at run time are routed around (and re-checked before every routing).
        var venues = await VenuesAsync(leg.Venue);
        activity?.SetTag("execution.account", leg.Venue);
        var excluded = new HashSet<string>(StringComparer.Ordinal);
        var taken = new Dictionary<string, decimal>(StringComparer.Ordinal); // liquidity used per venue since the quotes were read
        string? limitStop = null;
        // Immediate: one slice. TWAP: equal slices at equal intervals; slices already filled (an earlier delivery) are
        // skipped, and a halt or cancel between slices stops the leg.
        // POV: slices of a share of the displayed liquidity at the leg's start, one per interval.
        var displayed = quotes.Where(q => venues.Any(v => v.VenueId == q.VenueId && v.Available)).Sum(q => side == OrderSide.Buy ? q.AskSize : q.BidSize);
        var schedule = plan.PovRate > 0 && displayed > 0
            ? PovSchedule.Cumulative(state.Quantity.ToDecimal(), displayed, plan.PovRate)
            : TwapSchedule.Cumulative(state.Quantity.ToDecimal(), plan.TwapSlices);
        var interval = schedule.Count <= 1 ? TimeSpan.Zero
            : plan.PovRate > 0 ? TimeSpan.FromSeconds(plan.PovIntervalSeconds)
            : TimeSpan.FromSeconds(plan.TwapDurationSeconds / schedule.Count);
        activity?.SetTag("execution.slices", schedule.Count);
        for (var slice = 0; slice < schedule.Count && limitStop is null; slice++)
        {
            if (state.FilledQuantity.ToDecimal() >= schedule[slice])
            {
                continue;
            }

            if (slice > 0)
            {
                await Task.Delay(interval, time, cancellationToken);
                if (await StopReasonAsync(plan.PlanId) is { } stop)
                {
                    limitStop = $"stopped after {slice} of {schedule.Count} slices: {stop}";
                    break;
                }

                quotes = await VenueQuotesAsync(leg.InstrumentId);
                venues = await VenuesAsync(leg.Venue);
                excluded.Clear();
                taken.Clear();
            }

            var prefix = schedule.Count > 1 ? $"{leg.LegId}-s{slice + 1}" : leg.LegId;
            var attempt = 0;
            while (state.FilledQuantity.ToDecimal() < schedule[slice] && attempt < venues.Count)
            {
                attempt++;
                var remaining = schedule[slice] - state.FilledQuantity.ToDecimal();
                var usable = venues.Where(v => !excluded.Contains(v.VenueId)).ToArray();
                var children = SmartOrderRouter.Route(new LegOrder(plan.PlanId, $"{prefix}-r{attempt}", leg.InstrumentId, side, remaining), usable, quotes, limit, taken);
                if (children.Count == 0)
                {
                    if (limit is not null && SmartOrderRouter.Route(new LegOrder(plan.PlanId, leg.LegId, leg.InstrumentId, side, remaining), usable, quotes).Count > 0)
                    {
                        limitStop = $"stopped at the limit {limit.Value:0.######} ({plan.MaxSlippageBps} bps from arrival {state.ArrivalPrice.Value}): every remaining venue quotes beyond it";
                    }

                    break;
                }

                foreach (var child in children)
                {
                    var outcome = await SendAsync(plan, leg, side, child, venues.First(v => v.VenueId == child.VenueId), quotes.FirstOrDefault(q => q.VenueId == child.VenueId), state.ArrivalPrice, limit, taken.GetValueOrDefault(child.VenueId), cancellationToken);
                    if (outcome.Accepted && outcome.FilledQuantity > 0)
                    {
                        taken[outcome.VenueId] = taken.GetValueOrDefault(outcome.VenueId) + outcome.FilledQuantity;
                        var filled = state.FilledQuantity.ToDecimal();
                        var average = DecimalValue.TryParse(state.AveragePrice, out var a) ? a : 0m;
                        state.AveragePrice = (filled * average + outcome.FilledQuantity * outcome.Price) / (filled + outcome.FilledQuantity);
                        state.FilledQuantity = filled + outcome.FilledQuantity;
                        state.Fees = state.Fees.ToDecimal() + outcome.Fee;
                    }
                    else
                    {
                        excluded.Add(child.VenueId);
                    }
                }

                venues = await VenuesAsync(leg.Venue); // an outage during the routing shows on the next attempt
            }

            if (state.FilledQuantity.ToDecimal() < schedule[slice])
            {
                break; // the slice could not fill: the leg ends here and says why
            }

            await store.SaveExecutionAsync(execution);
        }

        var done = state.FilledQuantity.ToDecimal() >= state.Quantity.ToDecimal();
        if (state.FilledQuantity.ToDecimal() > 0 && DecimalValue.TryParse(state.ArrivalPrice, out var arrival) && arrival > 0)
        {
            var sign = side == OrderSide.Buy ? 1.0 : -1.0;
            state.ShortfallBps = sign * (double)((state.AveragePrice.ToDecimal() - arrival) / arrival) * 10_000;
            if (DecimalValue.TryParse(leg.ReferencePrice, out var reference) && reference > 0)
            {
                state.ShortfallVsPlanBps = sign * (double)((state.AveragePrice.ToDecimal() - reference) / reference) * 10_000;
            }

            Shortfall.Record(state.ShortfallBps, new KeyValuePair<string, object?>("instrument", leg.InstrumentId));
        }

        await PublishAsync(plan, leg.LegId, ReportKind.LegDone, r =>
        {
            r.LegStatus = done ? ReportedLegStatus.Filled : state.FilledQuantity.ToDecimal() > 0 ? ReportedLegStatus.PartiallyFilled : ReportedLegStatus.Rejected;
            r.ShortfallBps = state.ShortfallBps;
            r.ShortfallVsPlanBps = state.ShortfallVsPlanBps;
            r.Message = done
                ? $"filled {state.FilledQuantity.Value} at {state.AveragePrice.Value}, shortfall {state.ShortfallBps:F2} bps"
                : limitStop ?? (venues.Count == 0 ? $"the leg trades in account {leg.Venue}, which is not a venue execution trades on"
                    : quotes.Length == 0 ? "no venue quotes the instrument"
                    : leg.Venue.Length > 0 ? $"venue {leg.Venue}, which holds the account, rejected the remainder or does not quote the instrument"
                    : state.FilledQuantity.ToDecimal() > 0 ? $"filled {state.FilledQuantity.Value} of {state.Quantity.Value}: the venues' books held no more within their participation caps"
                    : "every venue rejected the remainder");
        }, cancellationToken);
    }

    private async Task<VenueExecution> SendAsync(PlanApproved plan, ApprovedLeg leg, OrderSide side, ChildOrder child, VenueSpec venue, VenueQuote? quote, DecimalValue? arrivalPrice, decimal? limit, decimal taken, CancellationToken cancellationToken)
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
            // Executed in an earlier delivery: report the journaled fill again (planning applies each fill id once).
            await PublishFillAsync(plan, leg, order, cancellationToken);
            return new VenueExecution(order.ClientOrderId, order.Venue, true, order.FilledQuantity.ToDecimal(), order.AveragePrice.ToDecimal(), order.Fees.ToDecimal(), string.Empty);
        }

        // Journal before sending: a crash after this line resends the same client order id, which the venue de-duplicates.
        if (order.Status == OrderStatus.New)
        {
            await store.SaveOrderAsync(order);
            order.Status = OrderStatus.Sent;
            order.UpdatedAt = time.GetUtcNow().ToTimestamp();
            await store.SaveOrderAsync(order);
        }

        if (venue.LatencyMs > 0)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(venue.LatencyMs), time, cancellationToken);
        }

        var outcome = SimulatedVenue.Execute(child, side, venue, quote, limit, taken);
        var arrival = DecimalValue.TryParse(arrivalPrice, out var a) ? a : 0m;
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
        await store.SaveOrderAsync(order);
        Fills.Add(1, new KeyValuePair<string, object?>("venue", venue.VenueId));

        await PublishFillAsync(plan, leg, order, cancellationToken);
        return execution;
    }

    private Task PublishFillAsync(PlanApproved plan, ApprovedLeg leg, Order order, CancellationToken cancellationToken) =>
        PublishAsync(plan, leg.LegId, ReportKind.Fill, r => r.Fill = new Fill
        {
            FillId = order.ClientOrderId + ":1",
            ClientOrderId = order.ClientOrderId,
            Venue = order.Venue,
            InstrumentId = order.InstrumentId,
            Side = order.Side,
            Quantity = order.FilledQuantity,
            Price = order.AveragePrice,
            Fee = order.Fees,
            FilledAt = order.UpdatedAt,
        }, cancellationToken);

    private async Task<string?> StopReasonAsync(string planId)
    {
        if (await store.GetHaltReasonAsync() is { } halt)
        {
            return "trading halted: " + halt;
        }

        return await store.GetCancelReasonAsync(planId) is { } cancel ? "cancelled: " + cancel : null;
    }

    private Task PublishAsync(PlanApproved plan, string legId, ReportKind kind, Action<ExecutionReport> fill, CancellationToken cancellationToken)
    {
        var report = new ExecutionReport
        {
            ReportId = Guid.NewGuid().ToString("N"),
            PlanId = plan.PlanId,
            PortfolioId = plan.PortfolioId,
            LegId = legId,
            Kind = kind,
            ReportedAt = time.GetUtcNow().ToTimestamp(),
        };
        fill(report);
        return bus.PublishAsync(Topics.ExecutionReports, report, cancellationToken);
    }

    private static GetPlanExecutionResponse NewExecution(PlanApproved plan)
    {
        var execution = new GetPlanExecutionResponse { PlanId = plan.PlanId, Status = ExecutionStatus.Accepted };
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
    private async Task<IReadOnlyList<VenueSpec>> VenuesAsync(string account)
    {
        var down = await store.GetVenuesDownAsync();
        return options.Value.Venues
            .Where(v => account.Length == 0 || v.VenueId == account)
            .Select(v => down.ContainsKey(v.VenueId) ? v with { Available = false } : v)
            .ToArray();
    }

    /// <summary>Each venue's latest top of book for the instrument, from market state.</summary>
    private async Task<VenueQuote[]> VenueQuotesAsync(string instrumentId) =>
        (await market.GetQuotesAsync([instrumentId])).Select(ToVenueQuote).ToArray();

    /// <summary>A venue's protobuf quote as the router and the simulated venues read it (missing sizes are zero).</summary>
    public static VenueQuote ToVenueQuote(Quote q) =>
        new(q.Venue, q.Bid.ToDecimal(), q.Ask.ToDecimal(), DecimalOrZero(q.BidSize), DecimalOrZero(q.AskSize));

    private static decimal DecimalOrZero(DecimalValue? value) => DecimalValue.TryParse(value, out var d) ? d : 0m;
}
