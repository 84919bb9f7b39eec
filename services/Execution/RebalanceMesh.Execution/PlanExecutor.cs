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
    MarginDesk margin,
    IEnumerable<IVenueConnector> connectors,
    IEventBus bus,
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
                // Loan legs (repay, supply, withdraw, borrow) act on the lending venue, margin top-ups on the trading venue's
                // margin account. A refusal stops the plan: what
                // follows (the sale that was to repay, the rebalancing planned after the guard) depends on it.
                var refused = await ExecuteLoanLegAsync(plan, leg, state, execution, cancellationToken);
                await store.SaveExecutionAsync(execution);
                if (refused is not null)
                {
                    var what = leg.Kind switch
                    {
                        LegKind.MarginTopUp => $"top-up of the margin account at {leg.Venue}",
                        LegKind.CollateralTransfer => $"collateral transfer from {leg.FromVenue} to {leg.Venue}",
                        _ => $"{leg.Kind} on loan {leg.LoanId} at {leg.Venue}",
                    };
                    stopReason = $"leg {leg.LegId} ({what}) refused: {refused}; the plan stops";
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

            if (leg.HedgesLegId.Length > 0 && execution.Legs.FirstOrDefault(l => l.LegId == leg.HedgesLegId) is { } hedged
                && hedged.FilledQuantity.ToDecimal() < hedged.Quantity.ToDecimal())
            {
                // The leg it hedges ended short: hedge what that leg filled, not what it was to fill.
                state.Quantity = HedgeTarget(leg.Quantity.ToDecimal(), hedged.FilledQuantity.ToDecimal(), hedged.Quantity.ToDecimal());
                if (state.Quantity.ToDecimal() <= 0)
                {
                    await store.SaveExecutionAsync(execution);
                    await PublishAsync(plan, leg.LegId, ReportKind.LegDone, r =>
                    {
                        r.LegStatus = ReportedLegStatus.Cancelled;
                        r.Message = $"the leg it hedges ({hedged.LegId}) filled nothing";
                    }, cancellationToken);
                    continue;
                }
            }

            await ExecuteLegAsync(plan, leg, state, execution, cancellationToken);
            await store.SaveExecutionAsync(execution);
        }

        var filledLegs = execution.Legs.Count(l => l.FilledQuantity.ToDecimal() >= l.Quantity.ToDecimal());
        if (stopReason is null && filledLegs < execution.Legs.Count)
        {
            // A cancel or halt that stopped the last leg between its slices ends the plan as cancelled, too.
            stopReason = await StopReasonAsync(plan.PlanId);
        }

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
    /// A cancel for a plan whose execution has not started (its PlanApproved has not arrived, or never will): the plan is
    /// recorded as cancelled, so a PlanApproved arriving later sends nothing, and its end is reported, so planning's
    /// plan ends too. When the plan started meanwhile, it sees the cancel before its next order instead.
    /// </summary>
    public async Task CancelBeforeStartAsync(PlanCancelRequested cancel, string reason, CancellationToken cancellationToken)
    {
        if (!await store.TryCreateExecutionAsync(new GetPlanExecutionResponse { PlanId = cancel.PlanId, Status = ExecutionStatus.Cancelled }))
        {
            return;
        }

        await PublishAsync(new PlanApproved { PlanId = cancel.PlanId, PortfolioId = cancel.PortfolioId }, string.Empty, ReportKind.PlanDone, r =>
        {
            r.PlanStatus = ReportedPlanStatus.Cancelled;
            r.Message = "cancelled before it started: " + reason;
        }, cancellationToken);
        logger.LogWarning("Plan {PlanId} cancelled before it started: {Reason}", cancel.PlanId, reason);
    }

    /// <summary>
    /// A loan leg on its lending venue (or a margin top-up on its trading venue), once: its fill (the units moved, at the
    /// leg's reference price, no fee) and its
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

        var (accepted, quantity, reason) = leg.Kind switch
        {
            LegKind.MarginTopUp => await margin.TopUpAsync(plan.PortfolioId, plan.PlanId, leg),
            LegKind.CollateralTransfer => await margin.TransferAsync(plan.PortfolioId, plan.PlanId, leg),
            _ => await lending.ApplyLegAsync(plan.PortfolioId, plan.PlanId, leg),
        };
        if (accepted)
        {
            var now = time.GetUtcNow().ToTimestamp();
            await PublishAsync(plan, leg.LegId, ReportKind.Fill, r => r.Fill = new Fill
            {
                FillId = $"{plan.PlanId}:{leg.LegId}:{leg.Kind switch { LegKind.MarginTopUp => "top-up", LegKind.CollateralTransfer => "transfer", _ => "loan" }}",
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

    /// <summary>A trade leg in progress: its market view, venues, the liquidity it took and why it stopped.</summary>
    private sealed class LegRun(ApprovedLeg leg, LegExecution state, GetPlanExecutionResponse execution)
    {
        public ApprovedLeg Leg { get; } = leg;

        /// <summary>The whole plan's execution: the other legs' fills count against the plan's cash.</summary>
        public GetPlanExecutionResponse Execution { get; } = execution;

        public LegExecution State { get; } = state;

        public OrderSide Side { get; } = leg.Side == Contracts.Common.V1.Side.Buy ? OrderSide.Buy : OrderSide.Sell;

        public VenueQuote[] Quotes { get; set; } = [];

        public IReadOnlyList<VenueSpec> Venues { get; set; } = [];

        /// <summary>Venues that rejected this slice's remainder.</summary>
        public HashSet<string> Excluded { get; } = new(StringComparer.Ordinal);

        /// <summary>Liquidity used per venue since the quotes were read.</summary>
        public Dictionary<string, decimal> Taken { get; } = new(StringComparer.Ordinal);

        public decimal? Limit { get; set; }

        public string? Stop { get; set; }

        public decimal Filled => State.FilledQuantity.ToDecimal();
    }

    /// <summary>Reads the market for a trade leg, fixes its arrival price (once) and its limit, and the venues it may use.</summary>
    private async Task<LegRun> StartLegAsync(PlanApproved plan, ApprovedLeg leg, LegExecution state, GetPlanExecutionResponse execution)
    {
        var run = new LegRun(leg, state, execution) { Quotes = await VenueQuotesAsync(leg.InstrumentId) };
        if (run.Quotes.Length > 0 && (state.ArrivalPrice is null || state.ArrivalPrice.Value.Length == 0))
        {
            state.ArrivalPrice = run.Quotes.Max(q => q.Bid) / 2m + (run.Quotes.Min(q => q.Ask) / 2m);
        }

        // Limit-price protection: no child beyond the plan's maximum slippage from the arrival price.
        run.Limit = plan.MaxSlippageBps > 0 && DecimalValue.TryParse(state.ArrivalPrice, out var arrivalPrice) && arrivalPrice > 0
            ? SlippageLimit.For(run.Side, arrivalPrice, plan.MaxSlippageBps)
            : null;
        // A leg that names an account (venue) trades only there: units held on a venue are sold on it. Venues taken
        // down at run time are routed around (and re-checked before every routing).
        run.Venues = await VenuesAsync(leg.Venue);
        return run;
    }

    private async Task ExecuteLegAsync(PlanApproved plan, ApprovedLeg leg, LegExecution state, GetPlanExecutionResponse execution, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("execute leg");
        activity?.SetTag("execution.leg_id", leg.LegId);
        activity?.SetTag("execution.instrument", leg.InstrumentId);
        activity?.SetTag("execution.account", leg.Venue);
        var run = await StartLegAsync(plan, leg, state, execution);

        // Immediate: one slice. TWAP: equal slices at equal intervals; slices already filled (an earlier delivery) are
        // skipped, and a halt or cancel between slices stops the leg.
        // POV: slices of a share of the displayed liquidity at the leg's start, one per interval.
        var displayed = run.Quotes.Where(q => run.Venues.Any(v => v.VenueId == q.VenueId && v.Available)).Sum(q => run.Side == OrderSide.Buy ? q.AskSize : q.BidSize);
        var schedule = plan.PovRate > 0 && displayed > 0
            ? PovSchedule.Cumulative(state.Quantity.ToDecimal(), displayed, plan.PovRate)
            : TwapSchedule.Cumulative(state.Quantity.ToDecimal(), plan.TwapSlices);
        var interval = schedule.Count <= 1 ? TimeSpan.Zero
            : plan.PovRate > 0 ? TimeSpan.FromSeconds(plan.PovIntervalSeconds)
            : TimeSpan.FromSeconds(plan.TwapDurationSeconds / schedule.Count);
        activity?.SetTag("execution.slices", schedule.Count);
        for (var slice = 0; slice < schedule.Count && run.Stop is null; slice++)
        {
            if (run.Filled >= schedule[slice])
            {
                continue;
            }

            if (slice > 0)
            {
                await Task.Delay(interval, time, cancellationToken);
                if (await StopReasonAsync(plan.PlanId) is { } stop)
                {
                    run.Stop = $"stopped after {slice} of {schedule.Count} slices: {stop}";
                    break;
                }

                await RefreshAsync(run);
            }

            var prefix = schedule.Count > 1 ? $"{leg.LegId}-s{slice + 1}" : leg.LegId;
            if (plan.MakerWaitSeconds > 0)
            {
                await RestAsync(plan, run, schedule[slice], prefix, TimeSpan.FromSeconds(plan.MakerWaitSeconds), cancellationToken);
            }

            await RouteUpToAsync(plan, run, schedule[slice], prefix, cancellationToken);
            await store.SaveExecutionAsync(execution);
            await FollowWithHedgesAsync(plan, run, execution, slice, cancellationToken);
            if (run.Filled < schedule[slice])
            {
                break; // the slice could not fill: the leg ends here and says why
            }
        }

        await CompleteLegAsync(plan, run, cancellationToken);
    }

    /// <summary>Fresh quotes and venue states for the next slice; the liquidity taken from the old quotes no longer counts.</summary>
    private async Task RefreshAsync(LegRun run)
    {
        run.Quotes = await VenueQuotesAsync(run.Leg.InstrumentId);
        run.Venues = await VenuesAsync(run.Leg.Venue);
        run.Excluded.Clear();
        run.Taken.Clear();
    }

    /// <summary>
    /// Maker first: a post-only limit order for what the slice still needs rests at the best near touch (the highest
    /// bid for a buy, the lowest ask for a sell; the lower maker fee on a tie; never beyond the leg's limit) for up to
    /// <paramref name="wait"/>, filling as the market comes to it (<see cref="RestingOrder"/>) — each fill journaled,
    /// recorded once at the venue and reported. Then the rest is cancelled and the caller takes what is left. A halt or
    /// cancel, or the venue going down, cancels the rest at once. A resting order journaled in an earlier delivery
    /// carries on from what it had filled.
    /// </summary>
    private async Task RestAsync(PlanApproved plan, LegRun run, decimal target, string prefix, TimeSpan wait, CancellationToken cancellationToken)
    {
        var clientOrderId = $"{plan.PlanId}:{prefix}-m";
        var order = await store.GetOrderAsync(clientOrderId);
        if (order is { Status: OrderStatus.Filled or OrderStatus.Cancelled or OrderStatus.Rejected or OrderStatus.Expired } || target - run.Filled <= 0)
        {
            return;
        }

        using var activity = ActivitySource.StartActivity("rest maker order");
        activity?.SetTag("execution.leg_id", run.Leg.LegId);
        if (order is null)
        {
            var best = run.Venues.Where(v => v.Available)
                .Select(v => (Venue: v, Quote: run.Quotes.FirstOrDefault(q => q.VenueId == v.VenueId)))
                .Where(x => x.Quote is not null && RestingOrder.PostPrice(run.Side, x.Quote) > 0)
                .OrderBy(x => run.Side == OrderSide.Buy ? -RestingOrder.PostPrice(run.Side, x.Quote!) : RestingOrder.PostPrice(run.Side, x.Quote!))
                .ThenBy(x => x.Venue.MakerFeeBps)
                .FirstOrDefault();
            if (best.Quote is null)
            {
                return;
            }

            var price = RestingOrder.PostPrice(run.Side, best.Quote);
            if (run.Limit is { } limit && (run.Side == OrderSide.Buy ? price > limit : price < limit))
            {
                return;
            }

            // What the plan's cash pays for at the post price and maker fee (nothing else spends while it rests).
            var quantity = target - run.Filled;
            if (CashLeft(plan, run.Execution) is { } cash)
            {
                quantity = Math.Min(quantity, PlanCash.Affordable(cash, PlanCash.UnitCost(run.Side, run.Leg.Margined, price, best.Venue.MakerFeeBps)));
                if (quantity <= 0)
                {
                    return; // the taker routing says why the leg stops
                }
            }

            var now = time.GetUtcNow().ToTimestamp();
            order = new Order
            {
                ClientOrderId = clientOrderId,
                PlanId = plan.PlanId,
                LegId = run.Leg.LegId,
                Venue = best.Venue.VenueId,
                InstrumentId = run.Leg.InstrumentId,
                Side = run.Leg.Side,
                Quantity = quantity,
                FilledQuantity = 0m,
                Fees = 0m,
                LimitPrice = price,
                Status = OrderStatus.New,
                CreatedAt = now,
                UpdatedAt = now,
            };
            await store.SaveOrderAsync(order);
            order.Status = OrderStatus.Sent;
            await store.SaveOrderAsync(order);
        }

        activity?.SetTag("execution.venue", order.Venue);
        var restingPrice = order.LimitPrice.ToDecimal();
        var until = time.GetUtcNow() + wait;
        string? cancelled = null;
        (VenueQuote? Quote, decimal Taken) seen = (null, 0m); // a quote's liquidity fills the order once, until the next quote
        while (order.FilledQuantity.ToDecimal() < order.Quantity.ToDecimal() && cancelled is null)
        {
            var left = until - time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                cancelled = $"rest cancelled after {wait.TotalSeconds:0.###} s";
                break;
            }

            await Task.Delay(left < RestingPoll ? left : RestingPoll, time, cancellationToken);
            if (await StopReasonAsync(plan.PlanId) is { } stop)
            {
                cancelled = stop;
                break;
            }

            var venue = (await VenuesAsync(run.Leg.Venue)).FirstOrDefault(v => v.VenueId == order.Venue);
            if (venue is not { Available: true })
            {
                cancelled = $"venue {order.Venue} went down";
                break;
            }

            var quote = (await VenueQuotesAsync(run.Leg.InstrumentId)).FirstOrDefault(q => q.VenueId == order.Venue);
            var open = order.Quantity.ToDecimal() - order.FilledQuantity.ToDecimal();
            seen = quote == seen.Quote ? seen : (quote, 0m);
            var fill = await Connector(venue.VenueId).PollRestingAsync(venue, new RestingState(clientOrderId, run.Side, restingPrice, open, quote, seen.Taken), cancellationToken);
            seen.Taken += fill.FilledQuantity;
            if (fill.FilledQuantity <= 0)
            {
                continue;
            }

            // Each fill of the resting order has its own id at the venue and in the reports: the order's cumulative fill after it.
            var filledAfter = order.FilledQuantity.ToDecimal() + fill.FilledQuantity;
            var fillId = $"{clientOrderId}@{filledAfter.ToString("0.########", System.Globalization.CultureInfo.InvariantCulture)}";
            var arrival = DecimalValue.TryParse(run.State.ArrivalPrice, out var a) ? a : 0m;
            var slippage = arrival > 0 ? (run.Side == OrderSide.Buy ? 1 : -1) * (fill.Price - arrival) * fill.FilledQuantity : 0m;
            var recorded = await store.RecordVenueExecutionAsync(fill with { ClientOrderId = fillId }, slippage);
            order.AveragePrice = restingPrice;
            order.FilledQuantity = filledAfter;
            order.Fees = order.Fees.ToDecimal() + recorded.Fee;
            order.Status = filledAfter >= order.Quantity.ToDecimal() ? OrderStatus.Filled : OrderStatus.PartiallyFilled;
            order.UpdatedAt = time.GetUtcNow().ToTimestamp();
            await store.SaveOrderAsync(order);
            var filledBefore = run.Filled;
            var average = DecimalValue.TryParse(run.State.AveragePrice, out var avg) ? avg : 0m;
            run.State.AveragePrice = (filledBefore * average + recorded.FilledQuantity * recorded.Price) / (filledBefore + recorded.FilledQuantity);
            run.State.FilledQuantity = filledBefore + recorded.FilledQuantity;
            run.State.Fees = run.State.Fees.ToDecimal() + recorded.Fee;
            Fills.Add(1, new KeyValuePair<string, object?>("venue", order.Venue), new KeyValuePair<string, object?>("liquidity", "maker"));
            if (run.Leg.Venue.Length > 0)
            {
                await margin.ApplyFillAsync(plan.PortfolioId, order.Venue, run.Leg.InstrumentId, (run.Side == OrderSide.Buy ? 1 : -1) * recorded.FilledQuantity, recorded.Price, recorded.Fee, fillId);
            }

            await PublishFillAsync(plan, run.Leg, order, fillId, recorded.FilledQuantity, recorded.Price, recorded.Fee, cancellationToken);
        }

        if (cancelled is not null && order.FilledQuantity.ToDecimal() < order.Quantity.ToDecimal())
        {
            order.Status = OrderStatus.Cancelled;
            order.StatusReason = $"{cancelled}: {order.FilledQuantity.Value} of {order.Quantity.Value} filled as maker";
            order.UpdatedAt = time.GetUtcNow().ToTimestamp();
            await store.SaveOrderAsync(order);
        }

        // The rest is taken on the market as it is now; what the resting order took from the current quote is gone.
        await RefreshAsync(run);
        if (seen.Quote is { } last && run.Quotes.Contains(last))
        {
            run.Taken[order.Venue] = seen.Taken;
        }
    }

    /// <summary>The connector that reaches a venue: the last registered one that handles it (the simulated venues handle all).</summary>
    private IVenueConnector Connector(string venueId) => connectors.Last(c => c.Handles(venueId));

    /// <summary>How often a resting order looks at its venue's quote.</summary>
    private static readonly TimeSpan RestingPoll = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Routes and sends children until the leg has filled <paramref name="target"/> in all, re-routing what a venue
    /// rejected to the others; stops at the limit price (and says so) or when no venue can take more.
    /// </summary>
    private async Task RouteUpToAsync(PlanApproved plan, LegRun run, decimal target, string prefix, CancellationToken cancellationToken)
    {
        var attempt = 0;
        while (run.Filled < target && attempt < run.Venues.Count && run.Stop is null)
        {
            attempt++;
            var remaining = target - run.Filled;
            var usable = run.Venues.Where(v => !run.Excluded.Contains(v.VenueId)).ToArray();
            var children = SmartOrderRouter.Route(new LegOrder(plan.PlanId, $"{prefix}-r{attempt}", run.Leg.InstrumentId, run.Side, remaining), usable, run.Quotes, run.Limit, run.Taken);
            if (children.Count == 0)
            {
                if (run.Limit is not null && SmartOrderRouter.Route(new LegOrder(plan.PlanId, run.Leg.LegId, run.Leg.InstrumentId, run.Side, remaining), usable, run.Quotes).Count > 0)
                {
                    run.Stop = $"stopped at the limit {run.Limit.Value:0.######} ({plan.MaxSlippageBps} bps from arrival {run.State.ArrivalPrice.Value}): every remaining venue quotes beyond it";
                }

                return;
            }

            // Buying power: no child the plan's cash could not pay at its limit with its fee.
            if (CashLeft(plan, run.Execution) is { } cash)
            {
                var routed = children.Sum(c => c.Quantity);
                children = PlanCash.Cap(children, run.Side, run.Leg.Margined, usable, cash);
                var affordable = children.Sum(c => c.Quantity);
                if (affordable < routed)
                {
                    run.Stop = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                        $"stopped by the plan's cash: {Math.Max(cash, 0m):0.00} left pays for {affordable:0.########} of the {routed:0.########} routed at their limit prices with fees");
                    logger.LogWarning("Plan {PlanId} leg {LegId}: {Reason}", plan.PlanId, run.Leg.LegId, run.Stop);
                    CashCuts.Add(1, new KeyValuePair<string, object?>("instrument", run.Leg.InstrumentId));
                    Activity.Current?.SetTag("execution.cash_cut", (double)(routed - affordable));
                }
            }

            foreach (var child in children)
            {
                var outcome = await SendAsync(plan, run.Leg, run.Side, child, run.Venues.First(v => v.VenueId == child.VenueId), run.Quotes.FirstOrDefault(q => q.VenueId == child.VenueId), run.State.ArrivalPrice, run.Limit, run.Taken.GetValueOrDefault(child.VenueId), cancellationToken);
                if (outcome.Accepted && outcome.FilledQuantity > 0)
                {
                    run.Taken[outcome.VenueId] = run.Taken.GetValueOrDefault(outcome.VenueId) + outcome.FilledQuantity;
                    var filled = run.Filled;
                    var average = DecimalValue.TryParse(run.State.AveragePrice, out var a) ? a : 0m;
                    run.State.AveragePrice = (filled * average + outcome.FilledQuantity * outcome.Price) / (filled + outcome.FilledQuantity);
                    run.State.FilledQuantity = filled + outcome.FilledQuantity;
                    run.State.Fees = run.State.Fees.ToDecimal() + outcome.Fee;
                }
                else
                {
                    run.Excluded.Add(child.VenueId);
                }
            }

            run.Venues = await VenuesAsync(run.Leg.Venue); // an outage during the routing shows on the next attempt
        }
    }

    /// <summary>
    /// After a slice of <paramref name="hedged"/>: each hedge leg that follows it is brought to the same share of its
    /// quantity as the hedged leg has filled (immediately, across venues), so delta stays within tolerance while the
    /// hedged leg executes rather than only after it. A hedge that reaches its quantity this way reports its end here.
    /// </summary>
    private async Task FollowWithHedgesAsync(PlanApproved plan, LegRun hedged, GetPlanExecutionResponse execution, int slice, CancellationToken cancellationToken)
    {
        var quantity = hedged.State.Quantity.ToDecimal();
        if (quantity <= 0 || hedged.Filled <= 0)
        {
            return;
        }

        foreach (var hedge in plan.Legs.Where(l => l.HedgesLegId == hedged.Leg.LegId && l.Kind is LegKind.Unspecified or LegKind.Trade))
        {
            var state = execution.Legs.First(l => l.LegId == hedge.LegId);
            var target = HedgeTarget(state.Quantity.ToDecimal(), hedged.Filled, quantity);
            if (state.FilledQuantity.ToDecimal() >= target)
            {
                continue;
            }

            using var activity = ActivitySource.StartActivity("follow with hedge");
            activity?.SetTag("execution.leg_id", hedge.LegId);
            activity?.SetTag("execution.hedges_leg_id", hedged.Leg.LegId);
            var run = await StartLegAsync(plan, hedge, state, execution);
            await RouteUpToAsync(plan, run, target, $"{hedge.LegId}-f{slice + 1}", cancellationToken);
            await store.SaveExecutionAsync(execution);
            if (run.Filled >= state.Quantity.ToDecimal())
            {
                await CompleteLegAsync(plan, run, cancellationToken);
            }
        }
    }

    /// <summary>A hedge's cumulative quantity when its hedged leg has filled <paramref name="filled"/> of <paramref name="hedgedQuantity"/> (to 8 decimals, never above the hedge).</summary>
    public static decimal HedgeTarget(decimal hedgeQuantity, decimal filled, decimal hedgedQuantity) =>
        filled >= hedgedQuantity ? hedgeQuantity : Math.Min(hedgeQuantity, decimal.Round(hedgeQuantity * filled / hedgedQuantity, 8, MidpointRounding.ToZero));

    /// <summary>The leg's shortfall versus arrival and versus the plan, and its end on execution.reports.</summary>
    private async Task CompleteLegAsync(PlanApproved plan, LegRun run, CancellationToken cancellationToken)
    {
        var (leg, state) = (run.Leg, run.State);
        var done = run.Filled >= state.Quantity.ToDecimal();
        if (run.Filled > 0 && DecimalValue.TryParse(state.ArrivalPrice, out var arrival) && arrival > 0)
        {
            var sign = run.Side == OrderSide.Buy ? 1.0 : -1.0;
            state.ShortfallBps = sign * (double)((state.AveragePrice.ToDecimal() - arrival) / arrival) * 10_000;
            if (DecimalValue.TryParse(leg.ReferencePrice, out var reference) && reference > 0)
            {
                state.ShortfallVsPlanBps = sign * (double)((state.AveragePrice.ToDecimal() - reference) / reference) * 10_000;
            }

            Shortfall.Record(state.ShortfallBps, new KeyValuePair<string, object?>("instrument", leg.InstrumentId));
        }

        await PublishAsync(plan, leg.LegId, ReportKind.LegDone, r =>
        {
            r.LegStatus = done ? ReportedLegStatus.Filled : run.Filled > 0 ? ReportedLegStatus.PartiallyFilled : ReportedLegStatus.Rejected;
            r.ShortfallBps = state.ShortfallBps;
            r.ShortfallVsPlanBps = state.ShortfallVsPlanBps;
            r.Message = done
                ? $"filled {state.FilledQuantity.Value} at {state.AveragePrice.Value}, shortfall {state.ShortfallBps:F2} bps"
                : run.Stop ?? (run.Venues.Count == 0 ? $"the leg trades in account {leg.Venue}, which is not a venue execution trades on"
                    : run.Quotes.Length == 0 ? "no venue quotes the instrument"
                    : leg.Venue.Length > 0 ? $"venue {leg.Venue}, which holds the account, rejected the remainder or does not quote the instrument"
                    : run.Filled > 0 ? $"filled {state.FilledQuantity.Value} of {state.Quantity.Value}: the venues' books held no more within their participation caps"
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

        // A sell in a venue account is checked against the units the account holds there (the venue rejects it otherwise).
        var refusal = leg.Venue.Length > 0 && side == OrderSide.Sell ? await margin.SpotSellRefusalAsync(plan.PortfolioId, child.VenueId, leg.InstrumentId, child.Quantity) : null;
        // A marketable limit at the deepest level its routing priced (journaled with the order; orders journaled without
        // one keep the leg's limit): the venue never fills it beyond what routing and the plan's cash counted on.
        var orderLimit = DecimalValue.TryParse(order.LimitPrice, out var journaledLimit) && journaledLimit > 0 ? journaledLimit : limit;
        var outcome = refusal is null
            ? await Connector(venue.VenueId).ExecuteAsync(venue, new VenueOrder(child, side, orderLimit, quote, taken), cancellationToken)
            : new VenueExecution(child.ClientOrderId, venue.VenueId, false, 0, 0, 0, refusal);
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
        if (leg.Venue.Length > 0)
        {
            // A leg in a venue account: a margined contract moves the portfolio's margin account there (once per order).
            await margin.ApplyFillAsync(plan.PortfolioId, order.Venue, leg.InstrumentId, (side == OrderSide.Buy ? 1 : -1) * execution.FilledQuantity, execution.Price, execution.Fee, order.ClientOrderId);
        }

        await PublishFillAsync(plan, leg, order, cancellationToken);
        return execution;
    }

    /// <summary>An immediate-or-cancel order's one fill: what the order filled in all.</summary>
    private Task PublishFillAsync(PlanApproved plan, ApprovedLeg leg, Order order, CancellationToken cancellationToken) =>
        PublishFillAsync(plan, leg, order, order.ClientOrderId + ":1", order.FilledQuantity.ToDecimal(), order.AveragePrice.ToDecimal(), order.Fees.ToDecimal(), cancellationToken);

    private Task PublishFillAsync(PlanApproved plan, ApprovedLeg leg, Order order, string fillId, decimal quantity, decimal price, decimal fee, CancellationToken cancellationToken) =>
        PublishAsync(plan, leg.LegId, ReportKind.Fill, r => r.Fill = new Fill
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
        }, cancellationToken);

    /// <summary>The plan's cash left to spend now (<see cref="PlanCash"/>), or null when the plan carries no cash budget.</summary>
    private static decimal? CashLeft(PlanApproved plan, GetPlanExecutionResponse execution)
    {
        if (!DecimalValue.TryParse(plan.CashBudget, out var budget))
        {
            return null;
        }

        return PlanCash.Remaining(budget, plan.Legs.Join(execution.Legs, l => l.LegId, s => s.LegId, (leg, state) => new LegCash(
            leg.Kind is LegKind.Unspecified or LegKind.Trade ? (leg.Side == Contracts.Common.V1.Side.Buy ? OrderSide.Buy : OrderSide.Sell) : null,
            leg.Margined,
            leg.Quantity.ToDecimal(),
            DecimalValue.TryParse(leg.CashChange, out var change) ? change : 0m,
            state.FilledQuantity.ToDecimal(),
            DecimalValue.TryParse(state.AveragePrice, out var average) ? average : 0m,
            DecimalValue.TryParse(state.Fees, out var fees) ? fees : 0m), StringComparer.Ordinal));
    }

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
