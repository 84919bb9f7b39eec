using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>
/// Consumes market.quotes: brings the in-memory book (<see cref="MonitorBook"/>) up to date, takes the portfolios
/// marked over a changed instrument (its instrument index), values every instrument they need once in one market
/// snapshot (batched through pricing, never once per portfolio), and evaluates each portfolio's bands, guards and
/// hedges on it. A breach is alerted once; automatic mode submits plans. The total drift is exported as a gauge.
/// </summary>
public sealed class DriftMonitor(PlanningStore store, MonitorBook book, PlanPipeline pipeline, PlanSubmitter submitter, ModelWeightCache models, RedisBroadcast<Contracts.Planning.V1.PolicyAlert> alerts, TimeProvider time, ILogger<DriftMonitor> logger) : IEventHandler<QuotesUpdated>
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly ConcurrentDictionary<string, double> Drift = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, bool> Breached = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<(string Portfolio, string Loan), double> HealthFactors = new();
    private static readonly ConcurrentDictionary<string, double> MarginRatios = new(StringComparer.Ordinal);
    private static readonly Counter<long> Evaluations = Meter.CreateCounter<long>("rebalancemesh.planning.evaluations", description: "Policy evaluations by the monitor.");
    private static readonly Counter<long> AutoSubmissions = Meter.CreateCounter<long>("rebalancemesh.planning.auto_submissions", description: "Plans the monitor submitted by itself.");
    private static readonly Counter<long> Preemptions = Meter.CreateCounter<long>("rebalancemesh.planning.preemptions", description: "Running rebalances the monitor cancelled for an emergency.");
    private static readonly Histogram<long> EventPortfolios = Meter.CreateHistogram<long>("rebalancemesh.planning.event_portfolios", description: "Portfolios one market.quotes event affected (marked over a changed instrument).");

    /// <summary>Least time between two automatic plans even without a cooldown, so rounding-bound breaches do not churn.</summary>
    private static readonly TimeSpan MinimumAutoSpacing = TimeSpan.FromSeconds(5);

    static DriftMonitor()
    {
        Meter.CreateObservableGauge("rebalancemesh.planning.total_drift", () =>
            Drift.Select(kv => new Measurement<double>(kv.Value, new KeyValuePair<string, object?>("portfolio_id", kv.Key))),
            description: "Total drift Σ|w − w*| / 2 of each monitored portfolio.");
        Meter.CreateObservableGauge("rebalancemesh.planning.health_factor", () =>
            HealthFactors.Select(kv => new Measurement<double>(kv.Value,
                new KeyValuePair<string, object?>("portfolio_id", kv.Key.Portfolio), new KeyValuePair<string, object?>("loan_id", kv.Key.Loan))),
            description: "Health factor of each monitored loan.");
        Meter.CreateObservableGauge("rebalancemesh.planning.margin_ratio", () =>
            MarginRatios.Select(kv => new Measurement<double>(kv.Value, new KeyValuePair<string, object?>("portfolio_id", kv.Key))),
            description: "Margin ratio (net value over maintenance margin) of each monitored portfolio with margined contracts.");
    }

    public async Task HandleAsync(QuotesUpdated message, EventContext context, CancellationToken cancellationToken)
    {
        // The book as of this event; only the portfolios marked over a changed instrument are evaluated.
        await book.CatchUpAsync(cancellationToken);
        var affected = book.Affected(message.Prices.Select(p => p.InstrumentId));
        EventPortfolios.Record(affected.Count);
        if (affected.Count == 0)
        {
            return;
        }

        // Each policy with its target weights (a computed model's are cached per policy version and day).
        var resolved = new List<(MonitoredPortfolio Entry, TargetPolicy Policy, string[] Instruments)>(affected.Count);
        foreach (var entry in affected)
        {
            try
            {
                var policy = (await models.GetResolvedAsync(entry.PortfolioId, entry.Policy, () => pipeline.ResolvePolicyAsync(entry.Policy, null, cancellationToken))).Policy;
                resolved.Add((entry, policy, PlanPipeline.InstrumentsOf(entry.Snapshot, policy)));
            }
            catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded)
            {
                logger.LogWarning("Monitor could not reach risk for {PortfolioId}'s target model: {Detail}", entry.PortfolioId, ex.Status.Detail);
            }
            catch (RebalanceMesh.Domain.DomainException ex)
            {
                // The model cannot size the universe now (no history yet, parameters the market no longer allows): the
                // policy's reads say so (GetPortfolio's computed_targets); the monitor evaluates it again later.
                logger.LogDebug("Portfolio {PortfolioId}'s target model not resolved: {Reason}", entry.PortfolioId, ex.Message);
            }
        }

        // One market snapshot for the event: every instrument of every affected portfolio valued once.
        MarketSnapshot market;
        try
        {
            market = await pipeline.GetMarketSnapshotAsync(resolved.SelectMany(r => r.Instruments), cancellationToken);
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded)
        {
            // Quotes are transient: the next event evaluates again; retrying this one would only pile up.
            logger.LogWarning("Monitor could not reach pricing: {Detail}", ex.Status.Detail);
            return;
        }

        // Alerts go out together at the end of the pass (each is one publish; none waits for another).
        var alerting = new List<Task>();
        var breached = new List<string>();
        var evaluated = 0;
        foreach (var (entry, policy, instruments) in resolved)
        {
            if (!market.Covers(instruments))
            {
                logger.LogDebug("Portfolio {PortfolioId} not evaluated: {Reason}", entry.PortfolioId, market.RefusalFor(instruments).Message);
                continue;
            }

            evaluated++;
            if (await EvaluateAsync(entry, policy, market.Marks, alerting, cancellationToken))
            {
                breached.Add(entry.PortfolioId);
            }
        }

        await Task.WhenAll(alerting);
        if (breached.Count > 0)
        {
            // One line per event, however many breached (each has its alert, with its reasons, on WatchAlerts).
            logger.LogWarning("{Breached} of {Evaluated} portfolios evaluated on this market event newly breached their policy: {Portfolios}",
                breached.Count, evaluated, string.Join(", ", breached.Take(10)) + (breached.Count > 10 ? ", …" : string.Empty));
        }
    }

    /// <summary>
    /// One portfolio's bands, guards and hedges on the event's marks; an alert when it newly breaches, a plan when
    /// automatic mode calls for one. True when it newly breached.
    /// </summary>
    private async Task<bool> EvaluateAsync(MonitoredPortfolio entry, TargetPolicy targetPolicy, MarketMarks marks, List<Task> alerting, CancellationToken cancellationToken)
    {
        var (portfolioId, policy, snapshot) = (entry.PortfolioId, entry.Policy, entry.Snapshot);
        MarkedPortfolio marked;
        try
        {
            marked = PortfolioMarking.Mark(snapshot, targetPolicy, marks.Marks);
        }
        catch (RebalanceMesh.Domain.DomainException ex)
        {
            logger.LogDebug("Portfolio {PortfolioId} not evaluated: {Reason}", portfolioId, ex.Message);
            return false;
        }

        // Bands and, for portfolios with loans, the liquidation guard's health-factor band.
        var bands = DriftEvaluator.Evaluate(marked, targetPolicy, describeAll: false);
        var guard = PlanComposer.Guard(snapshot, targetPolicy, marks.Marks);
        var margin = PlanComposer.Margin(marked, snapshot, targetPolicy, marks.Marks);
        var (_, hedgeReasons, ripcord) = PlanComposer.Hedges(marked, marks.Marks, targetPolicy, []);
        var evaluation = bands with { Reasons = [.. guard?.Reasons ?? [], .. margin?.Reasons ?? [], .. bands.Reasons, .. hedgeReasons] };
        if (margin?.Reasons is [var ratio, ..])
        {
            MarginRatios[portfolioId] = ratio.Measured;
        }

        foreach (var reason in guard?.Reasons.DistinctBy(r => r.InstrumentId) ?? [])
        {
            HealthFactors[(portfolioId, reason.InstrumentId)] = reason.Measured;
        }

        Evaluations.Add(1);
        Drift[portfolioId] = evaluation.TotalDrift;
        var wasBreached = Breached.TryGetValue(portfolioId, out var before) && before;
        Breached[portfolioId] = evaluation.Breached;
        var newlyBreached = evaluation.Breached && !wasBreached;
        if (newlyBreached)
        {
            if (logger.IsEnabled(LogLevel.Debug))
            {
                logger.LogDebug("Portfolio {PortfolioId} breached its policy: {Reasons}", portfolioId,
                    string.Join("; ", evaluation.Reasons.Where(r => r.Breached).Select(r => r.Message)));
            }
            var alert = new Contracts.Planning.V1.PolicyAlert
            {
                PortfolioId = portfolioId,
                TotalDrift = evaluation.TotalDrift,
                RaisedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(time.GetUtcNow()),
                Automatic = policy.ExecutionMode == Contracts.Planning.V1.ExecutionMode.Auto,
                Kind = Contracts.Planning.V1.AlertKind.Breach,
            };
            alert.Reasons.AddRange(evaluation.Reasons.Where(r => r.Breached).Select(r => r.ToWire()));
            alerting.Add(alerts.PublishAsync(alert));
        }

        var current = new Evaluated(snapshot.Version, Evaluated.BreachesOf(evaluation.Reasons));
        await MaybeSubmitAsync(portfolioId, policy, evaluation.Breached, guard?.Emergency == true || margin?.Emergency == true || ripcord, current, cancellationToken);
        return newlyBreached;
    }

    /// <summary>What the monitor does for a portfolio in automatic mode after an evaluation.</summary>
    public enum AutoAction
    {
        /// <summary>Nothing now.</summary>
        None,

        /// <summary>Submit a plan.</summary>
        Submit,

        /// <summary>Cancel the running plan (a rebalance) so the emergency's plan can go next.</summary>
        Preempt,
    }

    /// <summary>The portfolio as the monitor just evaluated it: its version and the rules it breaches ("rule:instrument").</summary>
    public sealed record Evaluated(long PortfolioVersion, IReadOnlySet<string> Breaches)
    {
        public static IReadOnlySet<string> BreachesOf(IEnumerable<Contracts.Planning.V1.DriftReason> reasons) =>
            reasons.Where(r => r.Breached).Select(r => r.Rule + ":" + r.InstrumentId).ToHashSet(StringComparer.Ordinal);

        public static IReadOnlySet<string> BreachesOf(IEnumerable<DriftReason> reasons) =>
            reasons.Where(r => r.Breached).Select(r => r.Rule + ":" + r.InstrumentId).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// Automatic mode: submit when the bands are breached or the calendar is due, unless a plan is still executing or
    /// the cooldown since the last plan has not passed (an emergency waits only the minimum spacing). An emergency does
    /// not wait behind a running rebalance either: that plan is pre-empted (cancelled once) and the guard's plan follows
    /// when it has ended; a running plan that protects a loan or margin account is never pre-empted. A breach the last
    /// plan found uncurable is not planned again while nothing it depended on changed — the portfolio, the policy, the
    /// breached rules — unless an emergency or the calendar calls.
    /// </summary>
    public static AutoAction Decide(Contracts.Planning.V1.Plan? last, DateTimeOffset now, Contracts.Planning.V1.Policy policy, bool breached, bool emergency, Evaluated? current = null)
    {
        var sinceLast = last is null ? TimeSpan.MaxValue : now - last.CreatedAt.ToDateTimeOffset();
        var calendarDue = policy.CalendarIntervalDays > 0 && sinceLast >= TimeSpan.FromDays(policy.CalendarIntervalDays);
        if (policy.ExecutionMode != Contracts.Planning.V1.ExecutionMode.Auto || !(breached || calendarDue))
        {
            return AutoAction.None;
        }

        if (!emergency && !calendarDue && current is not null
            && last is { Status: Contracts.Planning.V1.PlanStatus.NoAction, NoActionReason: Contracts.Planning.V1.NoActionReason.Uncurable }
            && last.PortfolioVersion == current.PortfolioVersion && last.PolicyVersion == policy.Version
            && Evaluated.BreachesOf(last.Reasons).SetEquals(current.Breaches))
        {
            return AutoAction.None;
        }

        if (last is not null && !last.Status.IsFinal())
        {
            return emergency && !last.Legs.Any(PlanPipeline.Protects) && last.CancelRequest is null
                ? AutoAction.Preempt
                : AutoAction.None;
        }

        var spacing = emergency ? MinimumAutoSpacing : TimeSpan.FromSeconds(Math.Max(policy.CooldownSeconds, (long)MinimumAutoSpacing.TotalSeconds));
        return sinceLast < spacing ? AutoAction.None : AutoAction.Submit;
    }

    /// <param name="emergency">A loan is below the emergency health factor, the margin ratio below its emergency level,
    /// or a leverage band's ripcord is pulled.</param>
    private async Task MaybeSubmitAsync(string portfolioId, Contracts.Planning.V1.Policy policy, bool breached, bool emergency, Evaluated current, CancellationToken cancellationToken)
    {
        if (policy.ExecutionMode != Contracts.Planning.V1.ExecutionMode.Auto || !(breached || policy.CalendarIntervalDays > 0))
        {
            return; // nothing Decide could call for: no need to read the last plan
        }

        var (recent, _) = await store.ListPlansAsync(portfolioId, 0, 1);
        var last = recent.Count > 0 ? recent[0] : null;
        var now = time.GetUtcNow();
        switch (Decide(last, now, policy, breached, emergency, current))
        {
            case AutoAction.Preempt:
                await submitter.CancelAsync(last!, "monitor", "pre-empted: an emergency (loan, margin account or ripcord) goes first", cancellationToken);
                Preemptions.Add(1);
                return;
            case AutoAction.None:
                return;
        }

        try
        {
            // Without a breach the calendar is due: a forced plan.
            var plan = await submitter.SubmitAsync(portfolioId, force: !breached, "auto-after-" + (last?.PlanId ?? "none"), cancellationToken);
            AutoSubmissions.Add(1);
            logger.LogInformation("Monitor submitted {PlanId} for {PortfolioId} ({Status}): {Why}", plan.PlanId, portfolioId, plan.Status,
                emergency ? "health factor below the emergency level" : breached ? "policy breached" : "calendar due");
            if (plan.NoActionReason == Contracts.Planning.V1.NoActionReason.Uncurable)
            {
                // Said once: Decide does not plan this breach again until something it depends on changes.
                logger.LogWarning("Portfolio {PortfolioId}'s breach cannot be cured by trading: {Detail}", portfolioId, plan.StatusMessage);
                var alert = new Contracts.Planning.V1.PolicyAlert
                {
                    PortfolioId = portfolioId,
                    Kind = Contracts.Planning.V1.AlertKind.Uncurable,
                    Detail = plan.StatusMessage,
                    RaisedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(now),
                    Automatic = true,
                };
                alert.Reasons.AddRange(plan.Reasons.Where(r => r.Breached));
                await alerts.PublishAsync(alert);
            }
        }
        catch (RebalanceMesh.Domain.DomainException ex)
        {
            logger.LogWarning("Monitor did not submit for {PortfolioId}: {Reason}", portfolioId, ex.Message);
        }
    }
}
