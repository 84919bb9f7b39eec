using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>
/// The monitor of one planning replica. The book is split into <see cref="MonitorOptions.Partitions"/> partitions
/// dealt over the live replicas (<see cref="MonitorPartitions"/>); this replica evaluates only the partitions it holds.
/// Each market.quotes event becomes one tick of a Redis stream every replica reads (<see cref="MonitorShards"/>). A
/// pass takes the ticks after its partitions' cursors, brings the in-memory book (<see cref="MonitorBook"/>) up to
/// date, evaluates each held portfolio marked over a changed instrument once — on one market snapshot, every instrument
/// valued once through pricing — alerts new breaches, and commits the partitions' cursors with their breach states and
/// automatic-plan requests, fenced by ownership. Partitions move between replicas only between passes, each with its
/// cursor, so every tick is evaluated for every portfolio by exactly one replica. Automatic plans are built by
/// <see cref="AutoPlanner"/>, many at a time. The total drift, health factors and margin ratios of the portfolios
/// held here are exported as gauges.
/// </summary>
public sealed class DriftMonitor(
    MonitorBook book,
    MonitorShards shards,
    ModelWeightCache models,
    RedisBroadcast<PolicyAlert> alerts,
    IServiceScopeFactory scopes,
    IOptions<MonitorOptions> options,
    TimeProvider time,
    ILogger<DriftMonitor> logger) : IDisposable
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly ConcurrentDictionary<string, double> Drift = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<(string Portfolio, string Loan), double> HealthFactors = new();
    private static readonly ConcurrentDictionary<string, double> MarginRatios = new(StringComparer.Ordinal);
    private static readonly Counter<long> Evaluations = Meter.CreateCounter<long>("rebalancemesh.planning.evaluations", description: "Policy evaluations by the monitor.");
    private static readonly Counter<long> Passes = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.passes", description: "Monitor passes (ticks read after the held partitions' cursors, evaluated and committed).");
    private static readonly Counter<long> TicksRead = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.ticks", description: "Market ticks the monitor's passes covered.");
    private static readonly Counter<long> Handovers = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.handovers", description: "Partitions this replica took or gave back (direction: taken, released, lost).");
    private static readonly Counter<long> Unreadable = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.unreadable", description: "Monitor state the monitor could not read (a partition's cursor that is not a stream id: the partition starts over).");
    private static readonly Histogram<long> EventPortfolios = Meter.CreateHistogram<long>("rebalancemesh.planning.event_portfolios", description: "Portfolios one monitor pass evaluated (held here, marked over a changed instrument).");
    private static readonly Histogram<double> PassSeconds = Meter.CreateHistogram<double>("rebalancemesh.planning.monitor.pass.duration", "s", "Time of one monitor pass, from reading its ticks to committing.");

    /// <summary>Least time between two automatic plans even without a cooldown, so rounding-bound breaches do not churn.</summary>
    private static readonly TimeSpan MinimumAutoSpacing = TimeSpan.FromSeconds(5);

    private static int _heldGauge;

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<int, HeldPartition> _held = [];
    private readonly WakeSignal _plansWanted = new(time);
    private bool _joined;

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
        Meter.CreateObservableGauge("rebalancemesh.planning.monitor.partitions", () => Volatile.Read(ref _heldGauge),
            description: "Partitions of the book this replica holds.");
    }

    private MonitorOptions Settings => options.Value;

    /// <summary>This replica's name in the membership.</summary>
    public string Me => Settings.ReplicaId;

    /// <summary>The partitions this replica holds now.</summary>
    public IReadOnlySet<int> Held
    {
        get
        {
            lock (_held)
            {
                return _held.Keys.ToHashSet();
            }
        }
    }

    /// <summary>True once a pass has asked for automatic plans (or partitions were taken) since the last call; false after <paramref name="timeout"/>.</summary>
    public Task<bool> WhenPlansWantedAsync(TimeSpan timeout, CancellationToken cancellationToken) => _plansWanted.WaitAsync(timeout, cancellationToken);

    /// <summary>
    /// One heartbeat: renews this replica's membership, reads the live replicas, gives back the partitions now dealt to
    /// another (after the pass in progress, with its cursor committed) and takes those dealt to it that are free.
    /// </summary>
    public async Task HeartbeatAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await HeartbeatCoreAsync();
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task HeartbeatCoreAsync()
    {
        using var activity = PlanPipeline.ActivitySource.StartActivity("monitor heartbeat");
        var now = time.GetUtcNow();
        var members = await shards.HeartbeatAsync(Me, now, now + Settings.MemberTimeout);
        _joined = true;
        var moves = MonitorPartitions.Moves(Me, members, Held, Settings.Partitions);
        activity?.SetTag("planning.monitor.members", members.Count);
        if (moves.None)
        {
            return;
        }

        if (moves.Release.Count > 0)
        {
            Drop(moves.Release, "released");
            await shards.ReleaseAsync(Me, moves.Release);
        }

        var taken = await shards.TakeAsync(Me, now, moves.Take);
        foreach (var (partition, stored) in taken)
        {
            var cursor = stored;
            if (!MonitorBook.IsStreamId(cursor))
            {
                // Not a stream id (corrupt): the partition starts over, its first pass evaluating all its portfolios.
                Unreadable.Add(1);
                logger.LogError("Monitor partition {Partition}: its cursor {Cursor} is not a stream id; evaluating all its portfolios at the next pass", partition, cursor);
                cursor = "0-0";
            }

            var breached = await shards.GetBreachedAsync(partition);
            lock (_held)
            {
                _held[partition] = new HeldPartition(cursor, breached.ToHashSet(StringComparer.Ordinal));
            }
        }

        Handovers.Add(taken.Count, new KeyValuePair<string, object?>("direction", "taken"));
        Volatile.Write(ref _heldGauge, _held.Count);
        activity?.SetTag("planning.monitor.released", moves.Release.Count);
        activity?.SetTag("planning.monitor.taken", taken.Count);
        logger.LogInformation("Monitor {Replica}: {Members} replicas live; gave back {Released} partitions, took {Taken} of {Wanted}; holds {Held} of {Partitions}",
            Me, members.Count, moves.Release.Count, taken.Count, moves.Take.Count, _held.Count, Settings.Partitions);
        if (taken.Count > 0)
        {
            SignalPlans(); // the taken partitions' pending plan requests are this replica's now
        }
    }

    /// <summary>Leaves the book to the other replicas: gives every partition back (after the pass in progress) and the membership.</summary>
    public async Task LeaveAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var held = Held.Order().ToArray();
            Drop(held, "released");
            await shards.ReleaseAsync(Me, held);
            await shards.LeaveAsync(Me);
            _joined = false;
            logger.LogInformation("Monitor {Replica} left, giving back {Partitions} partitions", Me, held.Length);
        }
        finally
        {
            _gate.Release();
        }
    }

    private void Drop(IReadOnlyCollection<int> partitions, string direction)
    {
        lock (_held)
        {
            foreach (var partition in partitions)
            {
                _held.Remove(partition);
            }
        }

        // Another replica exports these portfolios' gauges now.
        var gone = partitions.ToHashSet();
        foreach (var id in Drift.Keys.Where(id => gone.Contains(MonitorPartitions.Of(id, Settings.Partitions))))
        {
            Drift.TryRemove(id, out _);
            MarginRatios.TryRemove(id, out _);
        }

        foreach (var key in HealthFactors.Keys.Where(k => gone.Contains(MonitorPartitions.Of(k.Portfolio, Settings.Partitions))))
        {
            HealthFactors.TryRemove(key, out _);
        }

        Handovers.Add(partitions.Count, new KeyValuePair<string, object?>("direction", direction));
        Volatile.Write(ref _heldGauge, _held.Count);
    }

    private void SignalPlans() => _plansWanted.Set();

    /// <summary>
    /// Evaluates the ticks after the held partitions' cursors, in passes of up to <see cref="MonitorOptions.TickBatch"/>
    /// ticks, until none is left. Returns each portfolio evaluated with the ticks its evaluation covered.
    /// </summary>
    public async Task<IReadOnlyList<MonitorCoverage>> ProcessAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (!_joined)
            {
                await HeartbeatCoreAsync();
            }

            var evaluated = new List<MonitorCoverage>();
            while (await PassAsync(cancellationToken) is { } pass)
            {
                evaluated.AddRange(pass.Evaluated);
                if (!pass.More)
                {
                    break;
                }
            }

            return evaluated;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>One pass; null when there was no tick to evaluate.</summary>
    private async Task<(IReadOnlyList<MonitorCoverage> Evaluated, bool More)?> PassAsync(CancellationToken cancellationToken)
    {
        Dictionary<int, HeldPartition> held;
        lock (_held)
        {
            held = new Dictionary<int, HeldPartition>(_held);
        }

        if (held.Count == 0)
        {
            return null;
        }

        // Each partition's cursor as the pass starts: what each evaluation covers is the ticks after it.
        var before = held.ToDictionary(h => h.Key, h => h.Value.Cursor);
        var from = before.Values.Aggregate((a, b) => MonitorBook.IsOlder(a, b) ? a : b);
        var ticks = await shards.ReadTicksAsync(from, Settings.TickBatch);
        if (ticks.Count == 0)
        {
            return null;
        }

        var started = Stopwatch.GetTimestamp();
        var links = ticks.Select(t => ActivityContext.TryParse(t.TraceParent, null, out var context) ? new ActivityLink(context) : default)
            .Where(l => l.Context != default).Take(32).ToArray();
        using var activity = PlanPipeline.ActivitySource.StartActivity("monitor pass", ActivityKind.Internal, parentContext: default, links: links);
        var last = ticks[^1].Id;

        // Which portfolios this pass evaluates: per partition, those marked over an instrument of a tick after its
        // cursor; all of a partition never evaluated (cursor 0-0), or whose cursor the stream no longer keeps (ticks
        // after it may have been trimmed away).
        await book.CatchUpAsync(cancellationToken);
        var oldest = await shards.GetOldestTickIdAsync();
        var affected = new Dictionary<string, MonitoredPortfolio>(StringComparer.Ordinal);
        foreach (var group in before.GroupBy(h => h.Value, StringComparer.Ordinal))
        {
            var partitions = group.Select(g => g.Key).ToHashSet();
            var behind = group.Key == "0-0" || (oldest is not null && MonitorBook.IsOlder(group.Key, oldest));
            var entries = behind
                ? book.InPartitions(partitions)
                : book.Affected(ticks.Where(t => MonitorBook.IsOlder(group.Key, t.Id)).SelectMany(t => t.Instruments).Distinct(StringComparer.Ordinal))
                    .Where(e => partitions.Contains(e.Partition));
            foreach (var entry in entries)
            {
                affected[entry.PortfolioId] = entry;
            }

            if (behind && group.Key != "0-0")
            {
                logger.LogWarning("Monitor partitions {Partitions}: their ticks since {Cursor} were trimmed from the stream; evaluating all their portfolios", string.Join(",", partitions.Order()), group.Key);
            }
        }

        EventPortfolios.Record(affected.Count);
        var outcomes = await EvaluateAsync(affected.Values, cancellationToken);

        // Breaches raised and cleared, alerts for the raised ones, plan requests for automatic policies.
        var changes = new List<ShardChange>();
        var alerting = new List<PolicyAlert>();
        var raised = new List<string>();
        foreach (var outcome in outcomes)
        {
            var partition = affected[outcome.PortfolioId].Partition;
            var wasBreached = held[partition].Breached.Contains(outcome.PortfolioId);
            if (outcome.Alert is { } alert && !wasBreached)
            {
                changes.Add(new ShardChange.BreachRaised(partition, outcome.PortfolioId));
                alerting.Add(alert);
                raised.Add(outcome.PortfolioId);
            }
            else if (outcome.Alert is null && wasBreached)
            {
                changes.Add(new ShardChange.BreachCleared(partition, outcome.PortfolioId));
            }

            if (outcome.Plan is { } request)
            {
                changes.Add(new ShardChange.PlanWanted(partition, outcome.PortfolioId, request));
            }
        }

        if (alerting.Count > 0)
        {
            await alerts.PublishAsync(alerting); // together, in few publishes
        }

        // Cursors only move forward: a partition already past this batch's last tick (taken from a replica that was
        // ahead) keeps its cursor.
        var advancing = before.Where(h => MonitorBook.IsOlder(h.Value, last)).Select(h => h.Key).ToArray();
        var lost = await shards.CommitAsync(Me, last, advancing, changes);
        lock (_held)
        {
            foreach (var partition in advancing)
            {
                if (_held.ContainsKey(partition))
                {
                    held[partition].Cursor = last;
                }
            }

            foreach (var change in changes)
            {
                switch (change)
                {
                    case ShardChange.BreachRaised r:
                        held[r.Partition].Breached.Add(r.PortfolioId);
                        break;
                    case ShardChange.BreachCleared c:
                        held[c.Partition].Breached.Remove(c.PortfolioId);
                        break;
                }
            }
        }

        if (lost.Count > 0)
        {
            logger.LogWarning("Monitor {Replica} lost partitions {Partitions} to another replica (it missed its heartbeats); nothing of this pass was committed for them", Me, string.Join(",", lost));
            Drop(lost, "lost");
        }

        if (changes.Any(c => c is ShardChange.PlanWanted))
        {
            SignalPlans();
        }

        if (raised.Count > 0)
        {
            // One line per pass, however many breached (each has its alert, with its reasons, on WatchAlerts).
            logger.LogWarning("{Breached} of {Evaluated} portfolios evaluated on {Ticks} market ticks newly breached their policy: {Portfolios}",
                raised.Count, outcomes.Count, ticks.Count, string.Join(", ", raised.Take(10)) + (raised.Count > 10 ? ", …" : string.Empty));
        }

        var covered = outcomes.Where(o => !lost.Contains(affected[o.PortfolioId].Partition))
            .Select(o => new MonitorCoverage(o.PortfolioId, before[affected[o.PortfolioId].Partition], last)).ToArray();
        Passes.Add(1);
        TicksRead.Add(ticks.Count);
        PassSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        activity?.SetTag("planning.monitor.ticks", ticks.Count);
        activity?.SetTag("planning.monitor.evaluated", outcomes.Count);
        activity?.SetTag("planning.monitor.breached", raised.Count);
        return (covered, ticks.Count >= Settings.TickBatch);
    }

    /// <summary>What one evaluation found: the alert when the portfolio is breached, the plan request when its policy is automatic and may call for one.</summary>
    private sealed record Outcome(string PortfolioId, PolicyAlert? Alert, PlanRequest? Plan);

    /// <summary>
    /// Evaluates portfolios on one market snapshot: each policy's target weights resolved (a computed model's cached per
    /// policy version and day), every instrument they need valued once, then bands, guards and hedges per portfolio.
    /// </summary>
    private async Task<IReadOnlyList<Outcome>> EvaluateAsync(IEnumerable<MonitoredPortfolio> affected, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var pipeline = scope.ServiceProvider.GetRequiredService<PlanPipeline>();
        var resolved = new List<(MonitoredPortfolio Entry, TargetPolicy Policy, string[] Instruments)>();
        foreach (var entry in affected)
        {
            try
            {
                var policy = (await models.GetResolvedAsync(entry.PortfolioId, entry.Policy, () => pipeline.ResolvePolicyAsync(entry.Policy, null, cancellationToken))).Policy;
                resolved.Add((entry, policy, Compiled(entry, policy).Instruments));
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

        if (resolved.Count == 0)
        {
            return [];
        }

        MarketSnapshot market;
        try
        {
            market = await pipeline.GetMarketSnapshotAsync(resolved.SelectMany(r => r.Instruments), cancellationToken);
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded)
        {
            // Quotes are transient: the next tick evaluates again; retrying this one would only pile up.
            logger.LogWarning("Monitor could not reach pricing: {Detail}", ex.Status.Detail);
            return [];
        }

        // The snapshot as arrays by the book's instrument numbering, for the band screens.
        var (prices, spot) = Prices(market.Marks);
        var outcomes = new List<Outcome>(resolved.Count);
        foreach (var (entry, policy, instruments) in resolved)
        {
            if (!market.Covers(instruments))
            {
                logger.LogDebug("Portfolio {PortfolioId} not evaluated: {Reason}", entry.PortfolioId, market.RefusalFor(instruments).Message);
                continue;
            }

            if ((Screened(entry, policy, prices, spot) ?? Evaluate(entry, policy, market.Marks)) is { } outcome)
            {
                outcomes.Add(outcome);
            }
        }

        return outcomes;
    }

    /// <summary>What the monitor derives from a portfolio under a resolved policy, kept until either changes: the instruments it is marked over and its band screen.</summary>
    private MonitoredPortfolio.Compiled Compiled(MonitoredPortfolio entry, TargetPolicy targetPolicy)
    {
        if (entry.Derived is not { } compiled || !ReferenceEquals(compiled.Policy, targetPolicy))
        {
            compiled = new MonitoredPortfolio.Compiled(targetPolicy, PlanPipeline.InstrumentsOf(entry.Snapshot, targetPolicy), BandScreen.TryCompile(entry.Snapshot, targetPolicy, book.SlotOf));
            entry.Derived = compiled;
        }

        return compiled;
    }

    private (double[] Prices, bool[] Spot) Prices(MarketMarks marks)
    {
        var prices = new double[book.SlotCount + 64];
        Array.Fill(prices, double.NaN);
        var spot = new bool[prices.Length];
        foreach (var (instrument, mark) in marks.Marks)
        {
            var slot = book.SlotOf(instrument);
            if (slot < prices.Length)
            {
                prices[slot] = (double)mark.UnitPrice;
                spot[slot] = !mark.Margined && (mark.Underlying is null || mark.Underlying == instrument);
            }
        }

        return (prices, spot);
    }

    /// <summary>
    /// The fast path: a plain portfolio's bands screened in doubles (<see cref="BandScreen"/>); null when the portfolio
    /// is not plain or the screen cannot decide, and the full evaluation runs.
    /// </summary>
    private Outcome? Screened(MonitoredPortfolio entry, TargetPolicy targetPolicy, double[] prices, bool[] spot)
    {
        if (Compiled(entry, targetPolicy).Screen is not { } screen || screen.MaxSlot >= prices.Length)
        {
            return null;
        }

        var (verdict, total) = screen.Screen(prices, spot);
        if (verdict == ScreenVerdict.Undecided)
        {
            return null;
        }

        Evaluations.Add(1);
        Drift[entry.PortfolioId] = total;
        var reasons = verdict == ScreenVerdict.Breached ? screen.BreachedReasons(prices) : [];
        return Decided(entry, total, reasons, emergency: false);
    }

    /// <summary>One portfolio's bands, guards and hedges on the snapshot's marks; null when it cannot be marked.</summary>
    private Outcome? Evaluate(MonitoredPortfolio entry, TargetPolicy targetPolicy, MarketMarks marks)
    {
        var (portfolioId, snapshot) = (entry.PortfolioId, entry.Snapshot);
        PolicyAssessment assessed;
        try
        {
            assessed = PlanComposer.Assess(snapshot, targetPolicy, marks.Marks, describeAll: false);
        }
        catch (RebalanceMesh.Domain.DomainException ex)
        {
            logger.LogDebug("Portfolio {PortfolioId} not evaluated: {Reason}", portfolioId, ex.Message);
            return null;
        }

        if (assessed.Margin?.Reasons is [var ratio, ..])
        {
            MarginRatios[portfolioId] = ratio.Measured;
        }

        foreach (var reason in assessed.Guard?.Reasons.DistinctBy(r => r.InstrumentId) ?? [])
        {
            HealthFactors[(portfolioId, reason.InstrumentId)] = reason.Measured;
        }

        Evaluations.Add(1);
        Drift[portfolioId] = assessed.Bands.TotalDrift;
        return Decided(entry, assessed.Bands.TotalDrift, assessed.Reasons.Where(r => r.Breached).ToArray(), assessed.Emergency);
    }

    /// <summary>The outcome of an evaluation: an alert when rules are breached, a plan request when the policy is automatic and may call for one.</summary>
    private Outcome Decided(MonitoredPortfolio entry, double totalDrift, IReadOnlyList<Core.DriftReason> breached, bool emergency)
    {
        var (portfolioId, policy) = (entry.PortfolioId, entry.Policy);
        PolicyAlert? alert = null;
        if (breached.Count > 0)
        {
            alert = new PolicyAlert
            {
                PortfolioId = portfolioId,
                TotalDrift = totalDrift,
                RaisedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(time.GetUtcNow()),
                Automatic = policy.ExecutionMode == ExecutionMode.Auto,
                Kind = AlertKind.Breach,
            };
            alert.Reasons.AddRange(breached.Select(r => r.ToWire()));
            if (logger.IsEnabled(LogLevel.Debug))
            {
                logger.LogDebug("Portfolio {PortfolioId} breaches its policy: {Reasons}", portfolioId, string.Join("; ", breached.Select(r => r.Message)));
            }
        }

        // Automatic mode: a plan may be due (breached, or a calendar to check); the planner decides against the last plan.
        PlanRequest? request = null;
        if (policy.ExecutionMode == ExecutionMode.Auto && (breached.Count > 0 || policy.CalendarIntervalDays > 0))
        {
            request = new PlanRequest(breached.Count > 0, emergency, entry.Snapshot.Version, Evaluated.BreachesOf(breached).Order(StringComparer.Ordinal).ToArray());
        }

        return new Outcome(portfolioId, alert, request);
    }

    public void Dispose()
    {
        _gate.Dispose();
        _plansWanted.Dispose();
    }

    /// <summary>A partition this replica holds: the last tick evaluated for it and its breached portfolios.</summary>
    private sealed class HeldPartition(string cursor, HashSet<string> breached)
    {
        public string Cursor { get; set; } = cursor;

        public HashSet<string> Breached { get; } = breached;
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

        public static IReadOnlySet<string> BreachesOf(IEnumerable<Core.DriftReason> reasons) =>
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

}

/// <summary>A portfolio a monitor pass evaluated, and the ticks that evaluation covered: those after <paramref name="AfterTick"/> through <paramref name="ThroughTick"/>.</summary>
public sealed record MonitorCoverage(string PortfolioId, string AfterTick, string ThroughTick);
