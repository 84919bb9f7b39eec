using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// The run queue shared by execution replicas, on one real Redis: two replicas as two in-process hosts, each on its
/// own virtual clock (leases end when the test moves a clock, never by waiting), venues without latency.
/// </summary>
public sealed class PlanRunnerTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private static readonly DateTimeOffset Start = new(2026, 12, 4, 9, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(10);

    private readonly RedisServer _redis;
    private readonly DateTimeOffset _clockStart = DateTimeOffset.UtcNow;
    private readonly List<Replica> _replicas = [];

    public PlanRunnerTests(RedisServer redis) => _redis = redis;

    public Task InitializeAsync() => ExecutionReplicas.ResetWithDaxQuotesAsync(_redis);

    public async Task DisposeAsync()
    {
        foreach (var replica in _replicas)
        {
            await replica.Server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Renewing_more_plans_than_one_chunk_renews_those_held_and_names_every_one_lost()
    {
        // 1,203 plans (three chunks of the script's 500) held by A; after A's lease ends B takes three, and two end.
        var queue = new RunQueue(_redis.Connection!);
        var ids = Enumerable.Range(0, 1_203).Select(i => $"plan-renew-{i:D4}").ToArray();
        foreach (var id in ids)
        {
            var plan = Plan(id);
            Assert.Equal(PlanAcceptance.Accepted, await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null));
            Assert.True(await queue.TryClaimAsync(id, "A", Start, Start + Lease));
        }

        string[] takenByB = [ids[7], ids[500], ids[1_202]];
        foreach (var id in takenByB)
        {
            Assert.True(await queue.TryClaimAsync(id, "B", Start + Lease, Start + (2 * Lease)));
        }

        string[] ended = [ids[0], ids[999]];
        foreach (var id in ended)
        {
            await queue.ReleaseEndedAsync(id, "A");
        }

        var lost = await queue.RenewAsync(ids, "A", Start + (5 * Lease));

        Assert.Equal(takenByB.Concat(ended).Order(StringComparer.Ordinal), lost.Order(StringComparer.Ordinal));
        async Task<string[]> DueAsync(DateTimeOffset at) =>
            [.. (await queue.DueAsync(at, 5_000)).Where(id => id.StartsWith("plan-renew-", StringComparison.Ordinal)).Order(StringComparer.Ordinal)];
        Assert.Equal(takenByB.Order(StringComparer.Ordinal), await DueAsync(Start + (5 * Lease) - TimeSpan.FromMilliseconds(1))); // the renewed are not due before
        Assert.Equal(ids.Except(ended).Order(StringComparer.Ordinal), await DueAsync(Start + (5 * Lease)));
        Assert.Empty(await queue.RenewAsync(takenByB, "B", Start + (5 * Lease)));
    }

    [Fact]
    public async Task Queue_accepts_a_plan_once_and_leases_it_to_one_replica_at_a_time()
    {
        var queue = new RunQueue(_redis.Connection!);
        var plan = Plan("plan-q");
        Assert.Equal(PlanAcceptance.Accepted, await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        Assert.Equal(PlanAcceptance.AlreadyQueued, await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null));
        Assert.Equal(["plan-q"], await queue.DueAsync(Start, 10));
        var stored = await queue.GetApprovedAsync("plan-q");
        Assert.Equal(plan, stored?.Plan);
        Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", stored?.TraceParent);

        // A takes it; B cannot until A's lease has ended; A, restarted under its own name, takes it back at once.
        Assert.True(await queue.TryClaimAsync("plan-q", "A", Start, Start + Lease));
        Assert.Empty(await queue.DueAsync(Start + Lease - TimeSpan.FromMilliseconds(1), 10));
        Assert.False(await queue.TryClaimAsync("plan-q", "B", Start + Lease - TimeSpan.FromMilliseconds(1), Start + (2 * Lease)));
        Assert.True(await queue.TryClaimAsync("plan-q", "A", Start + TimeSpan.FromSeconds(1), Start + Lease));
        Assert.Empty(await queue.RenewAsync(["plan-q"], "A", Start + Lease));

        // A stalls past its lease: B takes the plan, A's renewal says it has lost it and A's give-back changes nothing.
        Assert.True(await queue.TryClaimAsync("plan-q", "B", Start + Lease, Start + (2 * Lease)));
        Assert.Equal(["plan-q"], await queue.RenewAsync(["plan-q"], "A", Start + (3 * Lease)));
        await queue.ReleaseUnfinishedAsync("plan-q", "A", Start);
        Assert.Empty(await queue.DueAsync(Start + Lease, 10));
        Assert.Empty(await queue.RenewAsync(["plan-q"], "B", Start + (3 * Lease)));

        // B gives it back unfinished for later: free from then on, to anyone.
        await queue.ReleaseUnfinishedAsync("plan-q", "B", Start + (4 * Lease));
        Assert.Empty(await queue.DueAsync(Start + (4 * Lease) - TimeSpan.FromMilliseconds(1), 10));
        Assert.True(await queue.TryClaimAsync("plan-q", "C", Start + (4 * Lease), Start + (5 * Lease)));

        // Ended: out of the queue with its stored plan; a late redelivery of an ended plan is not queued again.
        await queue.ReleaseEndedAsync("plan-q", "C");
        Assert.Equal(0, await queue.LengthAsync());
        Assert.Null(await queue.GetApprovedAsync("plan-q"));
        var store = new ExecutionStore(_redis.Connection!);
        await store.SaveExecutionAsync(new PlanExecution { PlanId = "plan-q", Status = ExecutionStatus.Completed });
        Assert.Equal(PlanAcceptance.Ended, await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null));
        Assert.Equal(0, await queue.LengthAsync());
        Assert.False(await queue.TryClaimAsync("plan-q", "A", Start + (9 * Lease), Start + (10 * Lease)));
    }

    [Fact]
    public async Task A_plan_left_by_a_replica_that_died_is_taken_by_another_once_its_lease_ends()
    {
        var queue = new RunQueue(_redis.Connection!);
        var plan = Plan("plan-orphan");
        await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null);
        Assert.True(await queue.TryClaimAsync("plan-orphan", "A", _clockStart, _clockStart + Lease)); // A took it, then died
        var b = StartReplica("B");

        await b.Runner.TickAsync();
        Assert.Equal(0, b.Runner.RunningCount);
        Assert.Equal(ExecutionStatus.Accepted, (await b.Get<ExecutionStore>().GetExecutionAsync("plan-orphan"))!.Status);
        Assert.Empty(await b.Get<ExecutionStore>().GetPlanOrdersAsync("plan-orphan"));

        b.Clock.Advance(Lease);
        await b.Runner.TickAsync();
        var done = await WaitForEndAsync(b, "plan-orphan");
        Assert.Equal(ExecutionStatus.Completed, done.Status);
        Assert.Equal([10m, 150m], done.Legs.Select(l => l.FilledQuantity.ToDecimal()));
        await b.Runner.WhenIdleAsync(); // the run gives the plan back after storing its end
        Assert.Single(b.Reports("plan-orphan"), r => r.Kind == ReportKind.PlanDone);
        Assert.Equal(0, await queue.LengthAsync());
    }

    [Fact]
    public async Task A_replica_runs_at_most_its_limit_and_the_rest_wait_in_the_queue_for_any_replica()
    {
        var a = StartReplica("A", maxConcurrentPlans: 1);
        var queue = a.Get<RunQueue>();
        foreach (var id in new[] { "plan-1", "plan-2", "plan-3" })
        {
            var plan = Twap(id);
            await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null);
        }

        // A takes one: it waits between its slices on A's clock, the other two stay free in the queue.
        await a.Runner.TickAsync();
        Assert.Equal(1, a.Runner.RunningCount);
        Assert.Equal(2, (await queue.DueAsync(a.Clock.GetUtcNow(), 10)).Count);

        // B, with room, takes both at its next tick while A still runs its one.
        var b = StartReplica("B");
        await b.Runner.TickAsync();
        Assert.Equal((1, 2), (a.Runner.RunningCount, b.Runner.RunningCount));

        // Clocks move on: every plan ends, each filled once.
        var ended = new List<PlanExecution>();
        foreach (var id in new[] { "plan-1", "plan-2", "plan-3" })
        {
            ended.Add(await WaitForEndAsync(a, id, advance: [a.Clock, b.Clock]));
        }

        Assert.All(ended, e => Assert.Equal((ExecutionStatus.Completed, 20m, string.Empty), (e.Status, e.Legs.Single().FilledQuantity.ToDecimal(), e.Status == ExecutionStatus.Completed ? string.Empty : e.Message)));
        var orders = (await Task.WhenAll(ended.Select(e => a.Get<ExecutionStore>().GetPlanOrdersAsync(e.PlanId)))).SelectMany(o => o).ToArray();
        Assert.Equal(orders.Length, orders.Select(o => o.ClientOrderId).Distinct().Count());
        Assert.Equal(0, await queue.LengthAsync());
    }

    [Fact]
    public async Task A_replica_shutting_down_gives_its_plans_back_for_another_to_take_at_once()
    {
        var a = StartReplica("A");
        var bus = a.Get<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, Twap("plan-handed"));
        var slices = await WaitForOrdersAsync(a, "plan-handed", 1);
        Assert.Equal(1, a.Runner.RunningCount);

        await a.Server.DisposeAsync();
        _replicas.Remove(a);

        // No lease to wait for: B (its clock where A's was) takes the plan at its first tick and finishes it.
        var b = StartReplica("B");
        b.Clock.SetUtcNow(a.Clock.GetUtcNow());
        await b.Runner.TickAsync();
        Assert.Equal(1, b.Runner.RunningCount);
        var done = await WaitForEndAsync(b, "plan-handed", advance: [b.Clock]);
        Assert.Equal((ExecutionStatus.Completed, 20m), (done.Status, done.Legs.Single().FilledQuantity.ToDecimal()));
        var orders = await b.Get<ExecutionStore>().GetPlanOrdersAsync("plan-handed");
        Assert.Equal(orders.Count, orders.Select(o => o.ClientOrderId).Distinct().Count());
        Assert.Equal(20m, orders.Sum(o => o.FilledQuantity.ToDecimal()));
        Assert.True(slices >= 1);
    }

    [Fact]
    public async Task A_plan_whose_runs_keep_failing_ends_failed_after_the_attempt_limit_and_is_reported()
    {
        var a = StartReplica("A", connector: new FailingVenues());
        await a.Get<InMemoryEventBus>().PublishAsync(Topics.PlansApproved, Plan("plan-failing"));

        // First failure: given back for the next tick. Second (the limit here): FAILED, and planning hears of it.
        var done = await WaitForEndAsync(a, "plan-failing", advance: [a.Clock]);
        Assert.Equal(ExecutionStatus.Failed, done.Status);
        Assert.StartsWith("execution failed 2 times: venue gateway down", done.Message, StringComparison.Ordinal);
        await a.Runner.WhenIdleAsync(); // the run publishes its end's report and gives the plan back after storing the end
        var report = Assert.Single(a.Reports("plan-failing"), r => r.Kind == ReportKind.PlanDone);
        Assert.Equal(ReportedPlanStatus.Failed, report.PlanStatus);
        Assert.Equal(0, await a.Get<RunQueue>().LengthAsync());
    }

    [Fact]
    public async Task Replicas_recording_executions_on_one_venue_at_once_record_each_once_with_its_costs()
    {
        // Two replicas (two connections) record 100 fills each on SIM-A at once, and each fill once more (a resend).
        using var other = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(_redis.ConnectionString);
        var stores = new[] { new ExecutionStore(_redis.Connection!), new ExecutionStore(other) };
        var recorded = await Task.WhenAll(Enumerable.Range(0, 400).Select(i =>
            stores[i % 2].RecordVenueExecutionAsync(new VenueExecution($"c{i % 200}", "SIM-A", true, 2m, 100m + (i % 200), 0.5m, string.Empty), slippageCost: 0.25m)));

        Assert.All(recorded, r => Assert.Equal((true, 2m, 100m + int.Parse(r.ClientOrderId[1..], System.Globalization.CultureInfo.InvariantCulture)), (r.Accepted, r.FilledQuantity, r.Price)));
        var (fills, notional, fees, slippage) = await stores[0].GetVenueCostsAsync("SIM-A");
        Assert.Equal((200L, 2 * Enumerable.Range(0, 200).Sum(i => 100.0 + i), 100.0, 50.0), (fills, notional, fees, slippage));
    }

    private Replica StartReplica(string name, int maxConcurrentPlans = 256, IVenueGateway? connector = null)
    {
        // The clocks start at the real time: the quotes written for the test are fresh on them.
        var clock = new FakeTimeProvider(_clockStart);
        var server = ExecutionReplicas.Start(
            _redis,
            name,
            clock,
            new Dictionary<string, string?>
            {
                ["Execution:MaxConcurrentPlans"] = maxConcurrentPlans.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["Execution:MaxPlanAttempts"] = "2",
            },
            services =>
            {
                if (connector is not null)
                {
                    services.AddSingleton(connector);
                }
            });
        var replica = new Replica(server, clock);
        _replicas.Add(replica);
        return replica;
    }

    private static Task<PlanExecution> WaitForEndAsync(Replica replica, string planId, IReadOnlyList<FakeTimeProvider>? advance = null) =>
        ExecutionReplicas.WaitForEndAsync(replica.Get<ExecutionStore>(), planId, advance);

    private static async Task<int> WaitForOrdersAsync(Replica replica, string planId, int count)
    {
        for (var i = 0; i < 400; i++)
        {
            var orders = await replica.Get<ExecutionStore>().GetPlanOrdersAsync(planId);
            if (orders.Count >= count)
            {
                return orders.Count;
            }

            await Task.Delay(25);
        }

        throw new TimeoutException($"Plan {planId} sent no order.");
    }

    private static PlanApproved Plan(string id) => new()
    {
        PlanId = id,
        PortfolioId = "p-" + id,
        Legs =
        {
            new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Sell, Quantity = 10m, ReferencePrice = 100m },
            new ApprovedLeg { LegId = "L2", Sequence = 2, InstrumentId = "DAX", Side = Side.Buy, Quantity = 150m, ReferencePrice = 100m },
        },
    };

    /// <summary>One purchase in four slices a second apart (its waits on the replica's virtual clock).</summary>
    private static PlanApproved Twap(string id) => new()
    {
        PlanId = id,
        PortfolioId = "p-" + id,
        TwapSlices = 4,
        TwapDurationSeconds = 4,
        Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Buy, Quantity = 20m, ReferencePrice = 100m } },
    };

    private sealed record Replica(GrpcTestServer<Program> Server, FakeTimeProvider Clock)
    {
        public PlanRunner Runner => Get<PlanRunner>();

        public T Get<T>()
            where T : notnull => Server.Services.GetRequiredService<T>();

        public IEnumerable<ExecutionReport> Reports(string planId) => Get<InMemoryEventBus>().Published
            .Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.PlanId == planId);
    }

    /// <summary>Venues that cannot be reached (a gateway down): every order fails with an error.</summary>
    private sealed class FailingVenues : IVenueGateway
    {
        public bool Handles(string venueId) => true;

        public Task<VenueExecution> ExecuteAsync(VenueSpec venue, VenueOrder order, CancellationToken cancellationToken) =>
            throw new HttpRequestException("venue gateway down");

        public Task<VenueExecution> PollRestingAsync(VenueSpec venue, RestingState order, CancellationToken cancellationToken) =>
            throw new HttpRequestException("venue gateway down");

        public Task<VenueOperationResult> ApplyAsync(VenueOperation operation, CancellationToken cancellationToken) =>
            throw new HttpRequestException("venue gateway down");
    }
}
