using System.Globalization;
using RebalanceMesh.Execution.Core.Blocks;

namespace RebalanceMesh.Execution.Core.Runs;

/// <summary>
/// One approved plan's execution as a deterministic state machine: it asks (<see cref="RunCommand"/>) and the host
/// answers (<see cref="RunObservation"/>), one at a time — <c>(state, observation) → next command</c> — with no clock,
/// no Redis and no venue of its own. Legs go in sequence; loan, top-up and transfer legs are operations whose refusal
/// stops the plan; trade legs fix their arrival price and limit, are cut into slices by their schedule, route each slice
/// across venues by all-in cost within the limit and the plan's cash, re-route what a venue rejects, and carry the
/// hedges that follow them to the same share after every slice. A cancel or halt stops the plan before its next leg or
/// slice.
/// <para>
/// The same observations always lead to the same commands, so a host that journals each observation rebuilds a run
/// after a restart by replaying its journal, and carries on from where it stopped.
/// </para>
/// </summary>
public sealed partial class PlanRun
{
    private readonly IEnumerator<RunCommand> _steps;
    private readonly Dictionary<string, LegProgress> _legs;
    private RunObservation? _answer;
    private RunCommand? _pending;

    public PlanRun(RunPlan plan)
    {
        Plan = plan;
        Legs = plan.Legs.OrderBy(l => l.Sequence).Select(l => new LegProgress(l)).ToArray();
        _legs = Legs.ToDictionary(l => l.Leg.LegId, StringComparer.Ordinal);
        _steps = Steps().GetEnumerator();
    }

    public RunPlan Plan { get; }

    /// <summary>Every leg's progress, in sequence order.</summary>
    public IReadOnlyList<LegProgress> Legs { get; }

    public RunStatus Status { get; private set; } = RunStatus.Pending;

    /// <summary>The plan's end, once it has one: why it stopped, or how many legs filled.</summary>
    public string Message { get; private set; } = string.Empty;

    public LegProgress Leg(string legId) => _legs[legId];

    /// <summary>The first command; a run starts once.</summary>
    public RunCommand Start()
    {
        if (_pending is not null)
        {
            throw new InvalidOperationException("The run has started.");
        }

        return Advance();
    }

    /// <summary>Answers the pending command and returns the next one (<see cref="Finished"/> at the end).</summary>
    public RunCommand Next(RunObservation observation)
    {
        if (_pending is null or Finished)
        {
            throw new InvalidOperationException("No command is waiting for an answer.");
        }

        _answer = observation;
        return Advance();
    }

    private RunCommand Advance()
    {
        _pending = _steps.MoveNext() ? _steps.Current : new Finished();
        return _pending;
    }

    private T Answer<T>()
        where T : RunObservation =>
        _answer as T ?? throw new InvalidOperationException($"{_pending} expects {typeof(T).Name}, not {_answer?.GetType().Name ?? "nothing"}.");

    /// <summary>The plan's cash left now, or null when it carries no budget.</summary>
    public decimal? CashLeft => Plan.CashBudget is { } budget ? PlanCash.Remaining(budget, Legs.Select(l => l.Cash())) : null;

    private IEnumerable<RunCommand> Steps()
    {
        Status = RunStatus.Running;
        string? stop = null;
        for (var index = 0; index < Legs.Count;)
        {
            var state = Legs[index];
            var leg = state.Leg;
            if (state.Done)
            {
                index++;
                continue; // a hedge its leg's slices already completed
            }

            if (stop is null)
            {
                yield return new CheckStop();
                stop = Answer<StopChecked>().Reason;
            }

            if (stop is null && leg.Action != LegAction.Trade)
            {
                // A refused operation stops the plan: what follows (the sale that was to repay, the rebalancing planned
                // after the guard) depends on it.
                string? refused = null;
                foreach (var command in Operation(state, reason => refused = reason))
                {
                    yield return command;
                }

                if (refused is not null)
                {
                    stop = $"leg {leg.LegId} ({What(leg)}) refused: {refused}; the plan stops";
                }

                index++;
                continue;
            }

            if (stop is not null)
            {
                yield return End(state, state.Filled > 0 ? RunStatus.PartiallyFilled : RunStatus.Cancelled, stop);
                index++;
                continue;
            }

            if (leg.HedgesLegId.Length > 0 && _legs.TryGetValue(leg.HedgesLegId, out var hedged) && hedged.Filled < hedged.Quantity)
            {
                // The leg it hedges ended short: hedge what that leg filled, not what it was to fill.
                state.Quantity = HedgeTarget(leg.Quantity, hedged.Filled, hedged.Quantity);
                if (state.Quantity <= 0)
                {
                    yield return End(state, RunStatus.Cancelled, $"the leg it hedges ({hedged.Leg.LegId}) filled nothing");
                    index++;
                    continue;
                }
            }

            // The trade legs right after it on the same side work together (the sales of a plan at once, then its
            // purchases); a hedge follows its own leg and works alone.
            var batch = new List<LegProgress> { state };
            while (leg.HedgesLegId.Length == 0 && index + batch.Count < Legs.Count && Legs[index + batch.Count] is { Done: false } next
                && next.Leg is { Action: LegAction.Trade, HedgesLegId.Length: 0 } && next.Leg.Side == leg.Side)
            {
                batch.Add(next);
            }

            foreach (var command in TradeLegs(batch))
            {
                yield return command;
            }

            index += batch.Count;
        }

        var filledLegs = Legs.Count(l => l.Filled >= l.Quantity);
        if (stop is null && filledLegs < Legs.Count)
        {
            // A cancel or halt that stopped the last leg between its slices ends the plan as cancelled, too.
            yield return new CheckStop();
            stop = Answer<StopChecked>().Reason;
        }

        Status = stop is not null ? RunStatus.Cancelled
            : filledLegs == Legs.Count ? RunStatus.Completed
            : Legs.Any(l => l.Filled > 0) ? RunStatus.PartiallyFilled
            : RunStatus.Failed;
        Message = stop ?? string.Create(CultureInfo.InvariantCulture, $"{filledLegs}/{Legs.Count} legs filled, fees {Legs.Sum(l => l.Fees):F2}");
        yield return new Report(new RunReport(RunReportKind.PlanDone, string.Empty, Status, Message));
    }

    private static string What(RunLeg leg) => leg.Action switch
    {
        LegAction.MarginTopUp => $"top-up of the margin account at {leg.Account}",
        LegAction.CollateralTransfer => $"collateral transfer from {leg.FromVenue} to {leg.Account}",
        _ => $"{leg.Action} on loan {leg.LoanId} at {leg.Account}",
    };

    /// <summary>A hedge's cumulative quantity when its hedged leg has filled <paramref name="filled"/> of <paramref name="hedgedQuantity"/> (to 8 decimals, never above the hedge).</summary>
    public static decimal HedgeTarget(decimal hedgeQuantity, decimal filled, decimal hedgedQuantity) =>
        filled >= hedgedQuantity ? hedgeQuantity : Math.Min(hedgeQuantity, decimal.Round(hedgeQuantity * filled / hedgedQuantity, 8, MidpointRounding.ToZero));

    /// <summary>The leg's end, recorded on it and reported.</summary>
    private static Report End(LegProgress state, RunStatus status, string message)
    {
        state.Status = status;
        state.Message = message;
        return new Report(new RunReport(RunReportKind.LegDone, state.Leg.LegId, status, message, state.ShortfallBps, state.ShortfallVsPlanBps));
    }

    /// <summary>
    /// A loan leg, a margin top-up or a collateral transfer, once: its fill (the units moved at the leg's reference price,
    /// no fee) and its end are reported like a trade's. A repayment funded by a sale repays no more than the sale raised.
    /// </summary>
    private IEnumerable<RunCommand> Operation(LegProgress state, Action<string> refused)
    {
        var leg = state.Leg;
        if (leg.FundedByLegId.Length > 0)
        {
            var sale = _legs.GetValueOrDefault(leg.FundedByLegId);
            var raised = sale is null ? 0m : decimal.Round((sale.Filled * sale.AveragePrice) - sale.Fees, 2, MidpointRounding.ToZero);
            var capped = Math.Min(leg.Quantity, Math.Max(raised, 0m));
            if (capped <= 0)
            {
                var reason = $"the sale {leg.FundedByLegId} that funds it raised nothing";
                yield return End(state, RunStatus.Rejected, reason);
                refused(reason);
                yield break;
            }

            state.Quantity = capped; // complete once it repays what the sale raised
        }

        yield return new RunOperation(leg.LegId, state.Quantity);
        var done = Answer<OperationDone>();
        if (done.Accepted)
        {
            var kind = leg.Action switch { LegAction.MarginTopUp => "top-up", LegAction.CollateralTransfer => "transfer", _ => "loan" };
            state.Add(done.Quantity, leg.ReferencePrice, 0m);
            yield return new Report(new RunReport(RunReportKind.Fill, leg.LegId, RunStatus.Filled, string.Empty,
                Fill: new RunFill($"{Plan.PlanId}:{leg.LegId}:{kind}", $"{Plan.PlanId}:{leg.LegId}", leg.Account, leg.InstrumentId, done.Quantity, leg.ReferencePrice)));
            yield return End(state, RunStatus.Filled, string.Create(CultureInfo.InvariantCulture, $"{leg.Action} {done.Quantity} {leg.InstrumentId} on {leg.Account}"));
        }
        else
        {
            yield return End(state, RunStatus.Rejected, done.Reason);
            refused(done.Reason);
        }
    }

    /// <summary>A trade leg being worked: the market it sees, the venues it may use, what it took, why it stopped.</summary>
    private sealed class Working(LegProgress state, IReadOnlyList<VenueQuote> quotes, IReadOnlyList<VenueSpec> venues, decimal? limit)
    {
        public LegProgress State { get; } = state;

        public RunLeg Leg => State.Leg;

        public IReadOnlyList<VenueQuote> Quotes { get; set; } = quotes;

        public IReadOnlyList<VenueSpec> Venues { get; set; } = venues;

        public decimal? Limit { get; } = limit;

        /// <summary>Venues that rejected this slice's remainder.</summary>
        public HashSet<string> Excluded { get; } = new(StringComparer.Ordinal);

        /// <summary>Liquidity taken per venue since the quotes were read.</summary>
        public Dictionary<string, decimal> Taken { get; } = new(StringComparer.Ordinal);

        public string? Stop { get; set; }

        /// <summary>The leg's slices (set once it has read the market).</summary>
        public Slices Slices { get; set; } = new([], TimeSpan.Zero);

        /// <summary>A slice could not fill, or the leg was stopped: it takes no further slice.</summary>
        public bool Ended { get; set; }

        public int SliceCount => Slices.Cumulative.Count;

        public decimal Displayed => Quotes.Where(q => Venues.Any(v => v.VenueId == q.VenueId && v.Available)).Sum(q => Leg.Side == OrderSide.Buy ? q.AskSize : q.BidSize);

        public void Refresh(IReadOnlyList<VenueQuote> fresh, IReadOnlyList<VenueSpec> venues)
        {
            Quotes = fresh;
            Venues = venues;
            Excluded.Clear();
            Taken.Clear();
        }
    }

    private static MarketQuery QueryOf(LegProgress state) => new(state.Leg.LegId, state.Leg.InstrumentId, state.Leg.Account);

    /// <summary>Reads the markets of trade legs at once and starts each (<see cref="Begin"/>).</summary>
    private IEnumerable<RunCommand> BeginAll(IReadOnlyList<LegProgress> states, Action<Working> started)
    {
        yield return new ReadMarkets(states.Select(QueryOf).ToArray());
        var markets = Answer<MarketsRead>().Markets;
        for (var i = 0; i < states.Count; i++)
        {
            started(Begin(states[i], markets[i]));
        }
    }

    /// <summary>Starts a trade leg on its market as read: fixes its arrival price (once) and its limit, and the venues it may use.</summary>
    private Working Begin(LegProgress state, MarketRead market)
    {
        state.Status = RunStatus.Running;
        if (market.Quotes.Count > 0 && state.ArrivalPrice is null)
        {
            state.ArrivalPrice = (market.Quotes.Max(q => q.Bid) / 2m) + (market.Quotes.Min(q => q.Ask) / 2m);
        }

        // Limit-price protection: no child beyond the plan's maximum slippage from the arrival price.
        var limit = Plan.MaxSlippageBps > 0 && state.ArrivalPrice is > 0 ? SlippageLimit.For(state.Leg.Side, state.ArrivalPrice.Value, Plan.MaxSlippageBps) : (decimal?)null;
        if (state.Leg.PriceCap is { } cap)
        {
            limit = limit is not { } slippage ? cap : state.Leg.Side == OrderSide.Buy ? Math.Min(slippage, cap) : Math.Max(slippage, cap);
        }

        return new Working(state, market.Quotes, market.Venues, limit);
    }

    /// <summary>
    /// Trade legs worked together, slice by slice in step: each cut by the schedule (on its own displayed liquidity),
    /// one wait between slices for all, each slice routed for every leg at once — their children sent together, the
    /// plan's cash shared in leg order — then the hedges that follow each leg, and each leg's end.
    /// </summary>
    private IEnumerable<RunCommand> TradeLegs(IReadOnlyList<LegProgress> batch)
    {
        var runs = new List<Working>(batch.Count);
        foreach (var command in BeginAll(batch, runs.Add))
        {
            yield return command;
        }

        var schedule = LegSchedules.For(Plan.Style);
        foreach (var run in runs)
        {
            run.Slices = schedule.Slice(run.State.Quantity, run.Displayed);
        }

        var slices = runs.Max(r => r.SliceCount);
        for (var slice = 0; slice < slices; slice++)
        {
            var due = runs.Where(r => !r.Ended && slice < r.SliceCount && r.State.Filled < r.Slices.Cumulative[slice]).ToArray();
            if (due.Length == 0)
            {
                continue;
            }

            if (slice > 0)
            {
                yield return new Wait(due.Max(r => r.Slices.Interval));
                yield return new CheckStop();
                if (Answer<StopChecked>().Reason is { } stop)
                {
                    foreach (var run in runs.Where(r => !r.Ended))
                    {
                        run.Stop = $"stopped after {slice} of {run.SliceCount} slices: {stop}";
                        run.Ended = true;
                    }

                    break;
                }

                yield return new ReadMarkets(due.Select(r => QueryOf(r.State)).ToArray());
                var markets = Answer<MarketsRead>().Markets;
                for (var i = 0; i < due.Length; i++)
                {
                    due[i].Refresh(markets[i].Quotes, markets[i].Venues);
                }
            }

            var targets = due.ToDictionary(r => r, r => r.Slices.Cumulative[slice]);
            string Prefix(Working run) => run.SliceCount > 1 ? $"{run.Leg.LegId}-s{slice + 1}" : run.Leg.LegId;
            if (schedule.RestFor > TimeSpan.Zero)
            {
                foreach (var run in due.Where(r => targets[r] > r.State.Filled))
                {
                    yield return new Rest(run.Leg.LegId, $"{Plan.PlanId}:{Prefix(run)}-m", targets[run] - run.State.Filled, run.Limit, CashLeft, schedule.RestFor, run.Quotes, run.Venues);
                    var rested = Answer<Rested>();
                    if (rested.Filled > 0)
                    {
                        run.State.Add(rested.Filled, rested.Notional / rested.Filled, rested.Fees);
                    }

                    // The rest is taken on the market as it is now; what the resting order took from its quote is gone.
                    run.Refresh(rested.Quotes, rested.Venues);
                    if (rested.TakenOnVenue > 0)
                    {
                        run.Taken[rested.Venue] = rested.TakenOnVenue;
                    }
                }
            }

            // Legs in the default account join other plans' slices in block orders when the plan allows it (a slice that
            // rests as a maker first works alone); the rest are routed by the plan itself.
            var blocked = Plan.Blocks != BlockTrading.Alone && schedule.RestFor == TimeSpan.Zero
                ? due.Where(r => r.Leg.Account.Length == 0 && r.Leg.HedgesLegId.Length == 0).ToArray()
                : [];
            foreach (var command in JoinBlocks(blocked, targets, Prefix))
            {
                yield return command;
            }

            foreach (var command in RouteUpTo(due.Except(blocked).ToArray(), targets, Prefix))
            {
                yield return command;
            }

            foreach (var run in due)
            {
                foreach (var command in FollowWithHedges(run, slice))
                {
                    yield return command;
                }

                if (run.State.Filled < targets[run])
                {
                    run.Ended = true; // the slice could not fill: the leg ends here and says why
                }
            }
        }

        foreach (var run in runs)
        {
            yield return Complete(run);
        }
    }

    /// <summary>
    /// Routes and sends children until each leg has filled its target in all, re-routing what a venue rejected to the
    /// others; a leg stops at its limit price or the plan's cash (and says so), or when no venue can take more. Each
    /// round routes every open leg on the market it has read and sends all their children together; the plan's cash is
    /// shared in leg order, what earlier legs' children may cost at their limits held back from later ones.
    /// </summary>
    private IEnumerable<RunCommand> RouteUpTo(IReadOnlyList<Working> runs, IReadOnlyDictionary<Working, decimal> targets, Func<Working, string> prefix)
    {
        var attempts = runs.ToDictionary(r => r, _ => 0);
        var routing = runs.ToList();
        while (true)
        {
            routing.RemoveAll(r => r.Stop is not null || r.State.Filled >= targets[r] || attempts[r] >= r.Venues.Count);
            if (routing.Count == 0)
            {
                yield break;
            }

            var sends = new List<ChildSend>();
            var reserved = 0m;
            foreach (var run in routing.ToArray())
            {
                var state = run.State;
                var attempt = ++attempts[run];
                var remaining = targets[run] - state.Filled;
                var usable = run.Venues.Where(v => !run.Excluded.Contains(v.VenueId)).ToArray();
                var children = SmartOrderRouter.Route(new LegOrder(Plan.PlanId, $"{prefix(run)}-r{attempt}", run.Leg.InstrumentId, run.Leg.Side, remaining), usable, run.Quotes, run.Limit, run.Taken);
                if (children.Count == 0)
                {
                    StopAtLimit(run, remaining, usable);
                    routing.Remove(run); // nothing more to route for this target
                    continue;
                }

                // Buying power: no child the plan's cash could not pay at its limit with its fee.
                if (CashLeft is { } cash)
                {
                    var available = cash - reserved;
                    var routed = children.Sum(c => c.Quantity);
                    children = PlanCash.Cap(children, run.Leg.Side, run.Leg.Margined, usable, available);
                    var affordable = children.Sum(c => c.Quantity);
                    reserved += children.Sum(c => c.Quantity * PlanCash.UnitCost(run.Leg.Side, run.Leg.Margined, Math.Max(c.WorstPrice, c.BestPrice), usable.First(v => v.VenueId == c.VenueId).TakerFeeBps));
                    if (affordable < routed)
                    {
                        StopByCash(run, available, affordable, routed);
                    }
                }

                sends.AddRange(children.Select(c => new ChildSend(run.Leg.LegId, c, run.Quotes.FirstOrDefault(q => q.VenueId == c.VenueId), run.Taken.GetValueOrDefault(c.VenueId), run.Limit)));
            }

            if (sends.Count > 0)
            {
                yield return new SendChildren(sends);
                var executions = Answer<ChildrenDone>().Executions;
                for (var i = 0; i < sends.Count; i++)
                {
                    var run = runs.First(r => r.Leg.LegId == sends[i].LegId);
                    var execution = executions[i];
                    if (execution.Accepted && execution.FilledQuantity > 0)
                    {
                        run.Taken[execution.VenueId] = run.Taken.GetValueOrDefault(execution.VenueId) + execution.FilledQuantity;
                        run.State.Add(execution.FilledQuantity, execution.Price, execution.Fee);
                    }
                    else
                    {
                        run.Excluded.Add(execution.VenueId);
                    }
                }
            }

            // An outage during the routing shows on the next attempt.
            foreach (var account in routing.Select(r => r.Leg.Account).Distinct(StringComparer.Ordinal).ToArray())
            {
                yield return new ReadVenues(account);
                var venues = Answer<VenuesRead>().Venues;
                foreach (var run in routing.Where(r => r.Leg.Account == account))
                {
                    run.Venues = venues;
                }
            }
        }
    }

    /// <summary>A leg whose routing found nothing within its limit, though the venues quote it: it stops at the limit.</summary>
    private void StopAtLimit(Working run, decimal remaining, IReadOnlyList<VenueSpec> usable)
    {
        if (run.Limit is not null && SmartOrderRouter.Route(new LegOrder(Plan.PlanId, run.Leg.LegId, run.Leg.InstrumentId, run.Leg.Side, remaining), usable, run.Quotes).Count > 0)
        {
            run.Stop = string.Create(CultureInfo.InvariantCulture,
                $"stopped at the limit {run.Limit.Value:0.######} ({Plan.MaxSlippageBps} bps from arrival {run.State.ArrivalPrice:0.########}): every remaining venue quotes beyond it");
        }
    }

    /// <summary>A leg the plan's cash cut short: it stops after what the cash pays for.</summary>
    private static void StopByCash(Working run, decimal available, decimal affordable, decimal wanted)
    {
        run.Stop = string.Create(CultureInfo.InvariantCulture,
            $"stopped by the plan's cash: {Math.Max(available, 0m):0.00} left pays for {affordable:0.########} of the {wanted:0.########} routed at their limit prices with fees");
        run.State.CashCuts++;
    }

    /// <summary>
    /// After a slice of a leg: each hedge that follows it is brought to the same share of its quantity as the leg has
    /// filled (at once, across venues), so delta stays within tolerance while the leg executes. A hedge that reaches its
    /// quantity this way ends here.
    /// </summary>
    private IEnumerable<RunCommand> FollowWithHedges(Working hedged, int slice)
    {
        var quantity = hedged.State.Quantity;
        if (quantity <= 0 || hedged.State.Filled <= 0)
        {
            yield break;
        }

        foreach (var state in Legs.Where(l => l.Leg.HedgesLegId == hedged.Leg.LegId && l.Leg.Action == LegAction.Trade))
        {
            var target = HedgeTarget(state.Quantity, hedged.State.Filled, quantity);
            if (state.Filled >= target)
            {
                continue;
            }

            Working run = null!;
            foreach (var command in BeginAll([state], w => run = w))
            {
                yield return command;
            }

            foreach (var command in RouteUpTo([run], new Dictionary<Working, decimal> { [run] = target }, _ => $"{state.Leg.LegId}-f{slice + 1}"))
            {
                yield return command;
            }

            if (state.Filled >= state.Quantity)
            {
                yield return Complete(run);
            }
        }
    }

    /// <summary>The leg's shortfall versus arrival and versus the plan, and its end.</summary>
    private static Report Complete(Working run)
    {
        var (state, leg) = (run.State, run.Leg);
        var done = state.Filled >= state.Quantity;
        if (state.Filled > 0 && state.ArrivalPrice is > 0 and var arrival)
        {
            var sign = leg.Side == OrderSide.Buy ? 1.0 : -1.0;
            state.ShortfallBps = sign * (double)((state.AveragePrice - arrival) / arrival) * 10_000;
            if (leg.ReferencePrice > 0)
            {
                state.ShortfallVsPlanBps = sign * (double)((state.AveragePrice - leg.ReferencePrice) / leg.ReferencePrice) * 10_000;
            }
        }

        var message = done
            ? string.Create(CultureInfo.InvariantCulture, $"filled {state.Filled} at {state.AveragePrice}, shortfall {state.ShortfallBps:F2} bps")
            : run.Stop ?? (run.Venues.Count == 0 ? $"the leg trades in account {leg.Account}, which is not a venue execution trades on"
                : run.Quotes.Count == 0 ? "no venue quotes the instrument"
                : leg.Account.Length > 0 ? $"venue {leg.Account}, which holds the account, rejected the remainder or does not quote the instrument"
                : state.Filled > 0 ? $"filled {state.Filled} of {state.Quantity}: the venues' books held no more within their participation caps"
                : "every venue rejected the remainder");
        return End(state, done ? RunStatus.Filled : state.Filled > 0 ? RunStatus.PartiallyFilled : RunStatus.Rejected, message);
    }
}
