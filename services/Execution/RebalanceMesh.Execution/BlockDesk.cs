using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Blocks;
using RebalanceMesh.Execution.Core.Runs;

namespace RebalanceMesh.Execution;

/// <summary>
/// Block orders on this replica. The slices that running plans ask to trade in blocks (<see cref="JoinBlock"/>) are
/// collected per instrument and lot size until none has joined for <see cref="ExecutionOptions.BlockQuiet"/>, for at most
/// <see cref="ExecutionOptions.BlockWindow"/> after the first (or until <see cref="ExecutionOptions.MaxBlockMembers"/>); the block is then recorded in Redis with its members, run as a
/// <see cref="BlockRun"/> — internal cross at the mid, each side's residual routed across venues, fills allocated by
/// largest remainder — and each member is answered with its share.
/// <para>
/// Crash safety is the plan runs' own: every answer a block's run gets is journaled (exe:run:{block}) before anything
/// more happens outside, its child orders are journaled and recorded once per client order id like a plan's, and the
/// allocation is committed once, together with every member's fill reports (into the outbox). A member whose plan
/// resumes after a crash — on this replica or another — finds its slice's block by its member id: allocated, it reads
/// its share; not yet, it runs the block on from its journal under the block's lock (one replica at a time), so the
/// venues' fills are allocated once and never booked twice.
/// </para>
/// </summary>
public sealed class BlockDesk(
    ExecutionStore store,
    VenueOrders orders,
    ReportOutbox outbox,
    IOptions<ExecutionOptions> options,
    TimeProvider time,
    ILogger<BlockDesk> logger)
{
    private static readonly Counter<long> Blocks = PlanExecutor.Meter.CreateCounter<long>("rebalancemesh.execution.blocks", description: "Block orders allocated, by instrument.");
    private static readonly Histogram<long> Members = PlanExecutor.Meter.CreateHistogram<long>("rebalancemesh.execution.block_members", description: "Slices (accounts) per block order.");
    private static readonly Counter<double> Crossed = PlanExecutor.Meter.CreateCounter<double>("rebalancemesh.execution.crossed_quantity", description: "Units crossed internally between accounts, by instrument.");
    private static readonly Counter<long> Resumed = PlanExecutor.Meter.CreateCounter<long>("rebalancemesh.execution.blocks_resumed", description: "Blocks run on from their journal (after a crash or by another replica).");

    /// <summary>How long a replica holds a block's lock without renewing it.</summary>
    private static readonly TimeSpan LockLease = TimeSpan.FromSeconds(15);

    /// <summary>How often a member waits to look again when another replica runs its block.</summary>
    private static readonly TimeSpan LockedPoll = TimeSpan.FromMilliseconds(200);

    private readonly Lock _gate = new();
    private readonly Dictionary<(string Instrument, decimal Lot), Forming> _forming = [];
    private readonly ConcurrentDictionary<string, Lazy<Task<BlockOutcome>>> _outcomes = new(StringComparer.Ordinal);

    private ExecutionOptions Settings => options.Value;

    /// <summary>Slices waiting in blocks that have not closed yet, on this replica.</summary>
    public int Waiting
    {
        get
        {
            lock (_gate)
            {
                return _forming.Values.Sum(f => f.Members.Count);
            }
        }
    }

    /// <summary>Whether a slice waits in a block that has not closed yet, on this replica.</summary>
    public bool IsWaiting(string memberId)
    {
        lock (_gate)
        {
            return _forming.Values.Any(f => f.Members.Any(m => m.MemberId == memberId));
        }
    }

    /// <summary>Each request's share of the block it joins (or joined, before a crash).</summary>
    public async Task<BlockJoined> JoinAsync(PlanApproved plan, JoinBlock join, CancellationToken cancellationToken) =>
        new(await Task.WhenAll(join.Requests.Select(r => JoinAsync(new BlockMember(plan.PlanId, plan.PortfolioId, r), cancellationToken))));

    private async Task<MemberShare> JoinAsync(BlockMember member, CancellationToken cancellationToken)
    {
        var blockId = await store.GetBlockOfMemberAsync(member.MemberId) ?? await EnlistAsync(member, cancellationToken);
        var outcome = await OutcomeAsync(blockId).WaitAsync(cancellationToken);
        return outcome.Shares.FirstOrDefault(s => s.MemberId == member.MemberId)
            ?? throw new InvalidOperationException($"Block {blockId} has no share for {member.MemberId}.");
    }

    /// <summary>Adds a slice to the block forming for its instrument and lot size; completes with the block it ends up in.</summary>
    private async Task<string> EnlistAsync(BlockMember member, CancellationToken cancellationToken)
    {
        Forming forming;
        var (first, full) = (false, false);
        lock (_gate)
        {
            var key = (member.Request.InstrumentId, member.Request.LotSize);
            if (!_forming.TryGetValue(key, out forming!))
            {
                forming = new Forming(key.InstrumentId, key.LotSize, time.GetUtcNow());
                _forming[key] = forming;
                first = true;
            }

            forming.Members.Add(member);
            forming.LastJoined = time.GetUtcNow();
            if (forming.Members.Count >= Settings.MaxBlockMembers)
            {
                _forming.Remove(key);
                full = true;
            }
        }

        if (full)
        {
            _ = CloseAsync(forming);
        }
        else if (first)
        {
            _ = CloseAfterWindowAsync(forming);
        }

        var blocks = await forming.Closed.Task.WaitAsync(cancellationToken);
        return blocks[member.MemberId];
    }

    /// <summary>Closes a forming block once it has been quiet for <see cref="ExecutionOptions.BlockQuiet"/>, or its window is over.</summary>
    private async Task CloseAfterWindowAsync(Forming forming)
    {
        var end = forming.Opened + Settings.BlockWindow;
        while (true)
        {
            DateTimeOffset until;
            lock (_gate)
            {
                until = forming.Closing ? DateTimeOffset.MinValue : Min(end, forming.LastJoined + Settings.BlockQuiet);
            }

            var now = time.GetUtcNow();
            if (now >= until)
            {
                break;
            }

            await Task.Delay(until - now, time);
        }

        lock (_gate)
        {
            if (_forming.TryGetValue((forming.InstrumentId, forming.LotSize), out var current) && current == forming)
            {
                _forming.Remove((forming.InstrumentId, forming.LotSize));
            }
        }

        await CloseAsync(forming); // nothing when it closed already, full
    }

    private static DateTimeOffset Min(DateTimeOffset a, DateTimeOffset b) => a < b ? a : b;

    /// <summary>Records the block (members a resumed plan already put in another block go to theirs) and tells the members.</summary>
    private async Task CloseAsync(Forming forming)
    {
        BlockMember[] members;
        lock (_gate)
        {
            if (forming.Closing)
            {
                return;
            }

            forming.Closing = true;
            members = [.. forming.Members];
        }

        try
        {
            var blockId = $"blk-{time.GetUtcNow():yyyyMMddHHmmssfff}-{Guid.NewGuid():N}"[..40];
            var assigned = new Dictionary<string, string>(StringComparer.Ordinal);
            while (members.Length > 0)
            {
                var taken = await store.CreateBlockAsync(new BlockOrder(blockId, forming.InstrumentId, forming.LotSize, members), time.GetUtcNow());
                foreach (var (memberId, other) in taken)
                {
                    assigned[memberId] = other;
                }

                if (taken.Count == 0)
                {
                    foreach (var member in members)
                    {
                        assigned[member.MemberId] = blockId;
                    }

                    Members.Record(members.Length);
                    break;
                }

                members = members.Where(m => !taken.ContainsKey(m.MemberId)).ToArray();
            }

            forming.Closed.TrySetResult(assigned);
        }
        catch (Exception ex)
        {
            forming.Closed.TrySetException(ex);
        }
    }

    /// <summary>The block's outcome: stored, or got by running it here (once per replica at a time, under its lock).</summary>
    private Task<BlockOutcome> OutcomeAsync(string blockId) =>
        _outcomes.GetOrAdd(blockId, id => new Lazy<Task<BlockOutcome>>(() => SettleOnceAsync(id))).Value;

    /// <summary>Settles a block for every member waiting on this replica, then forgets it (a later member reads what is stored).</summary>
    private async Task<BlockOutcome> SettleOnceAsync(string blockId)
    {
        try
        {
            return await Task.Run(() => SettleAsync(blockId));
        }
        finally
        {
            _outcomes.TryRemove(blockId, out _);
        }
    }

    private async Task<BlockOutcome> SettleAsync(string blockId)
    {
        while (true)
        {
            var stored = await store.GetBlockAsync(blockId) ?? throw new InvalidOperationException($"Block {blockId} is not recorded.");
            if (stored.Outcome is { } done)
            {
                return done;
            }

            if (await store.TryLockBlockAsync(blockId, Settings.ReplicaId, LockLease))
            {
                using var renewing = new CancellationTokenSource();
                var renewal = RenewAsync(blockId, renewing.Token);
                try
                {
                    return await RunAsync(stored.Order);
                }
                finally
                {
                    await renewing.CancelAsync();
                    await renewal;
                    await store.UnlockBlockAsync(blockId, Settings.ReplicaId);
                }
            }

            await Task.Delay(LockedPoll, time);
        }
    }

    private async Task RenewAsync(string blockId, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await Task.Delay(LockLease / 3, time, cancellationToken);
                if (!await store.TryLockBlockAsync(blockId, Settings.ReplicaId, LockLease))
                {
                    logger.LogWarning("Block {BlockId}: its lock was lost while it ran here", blockId);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Runs a block from its journal to its allocation and commits the allocation with the members' fill reports.</summary>
    private async Task<BlockOutcome> RunAsync(BlockOrder order)
    {
        using var activity = PlanExecutor.ActivitySource.StartActivity("run block");
        activity?.SetTag("execution.block_id", order.BlockId);
        activity?.SetTag("execution.instrument", order.InstrumentId);
        activity?.SetTag("execution.block_members", order.Members.Count);
        var run = new BlockRun(order);
        var journal = await store.GetRunJournalAsync(order.BlockId);
        if (journal.Count > 0)
        {
            Resumed.Add(1);
            logger.LogWarning("Block {BlockId} of {Members} slices runs on from its journal ({Answers} answers)", order.BlockId, order.Members.Count, journal.Count);
        }

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
                answer = await CarryOutAsync(run, command);
                await store.AppendRunJournalAsync(order.BlockId, [answer], []);
            }

            command = run.Next(answer);
        }

        var outcome = run.Outcome!;
        if (Settings.BlockAllocationPause > TimeSpan.Zero)
        {
            logger.LogWarning("Block {BlockId} filled; allocation paused for {Pause} (fault injection)", order.BlockId, Settings.BlockAllocationPause);
            await Task.Delay(Settings.BlockAllocationPause, time);
        }

        var reports = MemberReports(order, outcome);
        if (!await store.CompleteBlockAsync(order.BlockId, outcome, reports))
        {
            // Allocated meanwhile by a replica that took the block over: its allocation stands.
            return (await store.GetBlockAsync(order.BlockId))!.Value.Outcome!;
        }

        await outbox.PublishAsync(reports, CancellationToken.None);
        Blocks.Add(1, new KeyValuePair<string, object?>("instrument", order.InstrumentId));
        if (outcome.Crossed > 0)
        {
            Crossed.Add((double)outcome.Crossed, new KeyValuePair<string, object?>("instrument", order.InstrumentId));
        }

        activity?.SetTag("execution.crossed", (double)outcome.Crossed);
        logger.LogInformation("Block {BlockId} of {Instrument}: {Members} slices, {Crossed} crossed at {Mid}, {Sides}", order.BlockId, order.InstrumentId, order.Members.Count, outcome.Crossed, outcome.CrossPrice,
            string.Join("; ", outcome.Sides.Select(s => $"{s.Side} {s.Filled}/{s.Quantity} at {s.AveragePrice}")));
        return outcome;
    }

    /// <summary>The block's legs as execution's order journal names them: the block is their plan.</summary>
    private static PlanApproved VenuePlan(BlockOrder order, PlanRun venues)
    {
        var plan = new PlanApproved { PlanId = order.BlockId };
        plan.Legs.AddRange(venues.Legs.Select(l => new ApprovedLeg
        {
            LegId = l.Leg.LegId,
            InstrumentId = l.Leg.InstrumentId,
            Side = l.Leg.Side.ToWire(),
            Quantity = l.Leg.Quantity,
            ReferencePrice = l.Leg.ReferencePrice,
        }));
        return plan;
    }

    private async Task<RunObservation> CarryOutAsync(BlockRun run, RunCommand command)
    {
        switch (command)
        {
            case CheckStop:
                // A block belongs to no one plan: only a trading halt stops it (a member's cancel stops its plan's next slice).
                return new StopChecked(await store.GetHaltReasonAsync() is { } halt ? "trading halted: " + halt : null);
            case ReadMarkets read:
                return await orders.ReadMarketsAsync(read);
            case ReadVenues venues:
                return new VenuesRead(await orders.VenuesAsync(venues.Account));
            case SendChildren send:
                return await orders.SendChildrenAsync(VenuePlan(run.Block, run.VenueRun!), run.VenueRun!, send, reportFills: false, CancellationToken.None);
            case Wait wait:
                await Task.Delay(wait.Delay, time);
                return new Waited();
            case Report report:
                logger.LogDebug("Block {BlockId}: {Kind} {LegId} {Status} {Message}", run.Block.BlockId, report.What.Kind, report.What.LegId, report.What.Status, report.What.Message);
                return new Published();
            default:
                throw new InvalidOperationException($"A block asked for {command}, which this host does not carry out.");
        }
    }

    /// <summary>Each member's fills: its share of the internal cross and its allocation of the venue fills, each under its own id.</summary>
    private IReadOnlyList<ExecutionReport> MemberReports(BlockOrder order, BlockOutcome outcome)
    {
        var now = time.GetUtcNow();
        var reports = new List<ExecutionReport>(order.Members.Count * 2);
        foreach (var (member, share) in order.Members.Zip(outcome.Shares))
        {
            var plan = new PlanApproved { PlanId = member.PlanId, PortfolioId = member.PortfolioId };
            var side = member.Request.Side.ToWire();
            ExecutionReport Fill(string kind, FillSource source, decimal quantity, decimal price, decimal fee) =>
                PlanReports.New(plan, member.Request.LegId, ReportKind.Fill, now, r => r.Fill = new Fill
                {
                    FillId = $"{order.BlockId}:{kind}:{member.MemberId}",
                    ClientOrderId = order.BlockId,
                    InstrumentId = order.InstrumentId,
                    Side = side,
                    Quantity = quantity,
                    Price = price,
                    Fee = fee,
                    FilledAt = now.ToTimestamp(),
                    Source = source,
                    BlockId = order.BlockId,
                });
            if (share.Crossed > 0)
            {
                reports.Add(Fill("x", FillSource.InternalCross, share.Crossed, share.CrossPrice, 0m));
            }

            if (share.Filled > 0)
            {
                reports.Add(Fill("a", FillSource.BlockAllocation, share.Filled, share.AveragePrice, share.Fee));
            }
        }

        return reports;
    }

    /// <summary>A block collecting slices: closed once, then every member learns its block.</summary>
    private sealed class Forming(string instrumentId, decimal lotSize, DateTimeOffset opened)
    {
        public string InstrumentId { get; } = instrumentId;

        public decimal LotSize { get; } = lotSize;

        /// <summary>When its first slice joined.</summary>
        public DateTimeOffset Opened { get; } = opened;

        /// <summary>When its latest slice joined.</summary>
        public DateTimeOffset LastJoined { get; set; } = opened;

        public List<BlockMember> Members { get; } = [];

        public bool Closing { get; set; }

        public TaskCompletionSource<IReadOnlyDictionary<string, string>> Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
