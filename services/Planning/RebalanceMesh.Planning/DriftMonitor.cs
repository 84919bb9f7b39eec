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
/// held here are exported as gauges (<see cref="MonitorEvaluator"/>).
/// </summary>
public sealed class DriftMonitor(
    MonitorBook book,
    MonitorShards shards,
    MonitorEvaluator evaluator,
    MonitorGauges gauges,
    RedisBroadcast<PolicyAlert> alerts,
    IOptions<MonitorOptions> options,
    TimeProvider time,
    ILogger<DriftMonitor> logger) : IDisposable
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly Counter<long> Passes = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.passes", description: "Monitor passes (ticks read after the held partitions' cursors, evaluated and committed).");
    private static readonly Counter<long> TicksRead = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.ticks", description: "Market ticks the monitor's passes covered.");
    private static readonly Counter<long> Handovers = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.handovers", description: "Partitions this replica took or gave back (direction: taken, released, lost).");
    private static readonly Counter<long> Unreadable = Meter.CreateCounter<long>("rebalancemesh.planning.monitor.unreadable", description: "Monitor state the monitor could not read (a partition's cursor that is not a stream id: the partition starts over).");
    private static readonly Histogram<long> EventPortfolios = Meter.CreateHistogram<long>("rebalancemesh.planning.event_portfolios", description: "Portfolios one monitor pass evaluated (held here, marked over a changed instrument).");
    private static readonly Histogram<double> PassSeconds = Meter.CreateHistogram<double>("rebalancemesh.planning.monitor.pass.duration", "s", "Time of one monitor pass, from reading its ticks to committing.");

    private static int _heldGauge;

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Dictionary<int, HeldPartition> _held = [];
    private readonly WakeSignal _plansWanted = new(time);
    private bool _joined;

    static DriftMonitor()
    {
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
        gauges.Forget(partitions.ToHashSet(), Settings.Partitions);

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
        var stages = new StageClock(activity);
        var last = ticks[^1].Id;

        // Which portfolios this pass evaluates: per partition, those marked over an instrument of a tick after its
        // cursor; all of a partition never evaluated (cursor 0-0), or whose cursor the stream no longer keeps (ticks
        // after it may have been trimmed away).
        await book.CatchUpAsync(cancellationToken);
        stages.Lap("planning.monitor.catch_up_ms");
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
        var outcomes = await evaluator.EvaluateAsync(affected.Values, cancellationToken);
        stages.Lap("planning.monitor.evaluate_ms");

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

        stages.Lap("planning.monitor.alert_ms");

        // Cursors only move forward: a partition already past this batch's last tick (taken from a replica that was
        // ahead) keeps its cursor.
        var advancing = before.Where(h => MonitorBook.IsOlder(h.Value, last)).Select(h => h.Key).ToArray();
        var lost = await shards.CommitAsync(Me, last, advancing, changes);
        stages.Lap("planning.monitor.commit_ms");
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
}

/// <summary>A portfolio a monitor pass evaluated, and the ticks that evaluation covered: those after <paramref name="AfterTick"/> through <paramref name="ThroughTick"/>.</summary>
public sealed record MonitorCoverage(string PortfolioId, string AfterTick, string ThroughTick);
