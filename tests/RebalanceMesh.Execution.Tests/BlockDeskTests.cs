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
/// Block orders in the execution host, on one real Redis and the simulated venues (no latency), on virtual clocks:
/// concurrent plans' slices join one block, cross at the mid, go to the venues once per side, and are allocated back
/// with their own fills; a host stopped between the venues' fills and the allocation is started again and allocates
/// once, from its journal, without sending anything twice.
/// </summary>
public sealed class BlockDeskTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly DateTimeOffset _clockStart = DateTimeOffset.UtcNow;
    private readonly List<GrpcTestServer<Program>> _servers = [];

    public BlockDeskTests(RedisServer redis) => _redis = redis;

    public Task InitializeAsync() => ExecutionReplicas.ResetWithDaxQuotesAsync(_redis);

    public async Task DisposeAsync()
    {
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task Concurrent_plans_cross_at_the_mid_and_send_one_block_to_the_venues_allocated_at_its_average_price()
    {
        var (server, clock) = Start("A");
        var plans = new[] { Plan("buy-30", Side.Buy, 30m), Plan("buy-20", Side.Buy, 20m), Plan("sell-40", Side.Sell, 40m) };
        await RunTogetherAsync(server, clock, plans);

        // 40 cross at the mid (100): the buyers get 24 and 16 (30:20); their 6 and 4 left go to the venues as one
        // order of 10, filled on SIM-A at 100.1 (all-in cheapest) with a fee of 1.001, allocated 6 and 4.
        var store = server.Services.GetRequiredService<ExecutionStore>();
        var blockId = (await store.GetBlockOfMemberAsync("buy-30:L1"))!;
        Assert.Equal(blockId, await store.GetBlockOfMemberAsync("sell-40:L1"));
        var venueOrders = await store.GetPlanOrdersAsync(blockId);
        var order = Assert.Single(venueOrders);
        Assert.Equal(("SIM-A", 10m, 10m, 100.1m), (order.Venue, order.Quantity.ToDecimal(), order.FilledQuantity.ToDecimal(), order.AveragePrice.ToDecimal()));
        foreach (var plan in plans)
        {
            Assert.Empty(await store.GetPlanOrdersAsync(plan.PlanId)); // no plan sent an order of its own
        }

        var fills = Fills(server);
        Assert.Equal(
            [
                ("buy-20", FillSource.BlockAllocation, 4m, 100.1m, 0.4004m), ("buy-20", FillSource.InternalCross, 16m, 100m, 0m),
                ("buy-30", FillSource.BlockAllocation, 6m, 100.1m, 0.6006m), ("buy-30", FillSource.InternalCross, 24m, 100m, 0m),
                ("sell-40", FillSource.InternalCross, 40m, 100m, 0m),
            ],
            fills.Select(f => (f.PlanId, f.Fill.Source, f.Fill.Quantity.ToDecimal(), f.Fill.Price.ToDecimal(), f.Fill.Fee.ToDecimal())).OrderBy(f => f.PlanId, StringComparer.Ordinal).ThenBy(f => f.Source).ToArray());
        Assert.All(fills, f => Assert.Equal(blockId, f.Fill.BlockId));
        foreach (var plan in plans)
        {
            var execution = (await store.GetExecutionAsync(plan.PlanId))!;
            Assert.Equal((ExecutionStatus.Completed, plan.Legs[0].Quantity.ToDecimal()), (execution.Status, execution.Legs[0].FilledQuantity.ToDecimal()));
        }

        // GetBlock shows it whole; bad and unknown ids are answered as such.
        var client = new ExecutionService.ExecutionServiceClient(server.CreateMeshInvoker());
        var block = (await client.GetBlockAsync(new GetBlockRequest { BlockId = blockId })).Block;
        Assert.Equal((true, 40m, 100m, 3), (block.Allocated, block.Crossed.ToDecimal(), block.CrossPrice.ToDecimal(), block.MemberCount));
        Assert.Equal(order.ClientOrderId, Assert.Single(block.Orders).ClientOrderId);
        Assert.Equal((Side.Buy, 10m, 10m, 100.1m), (block.Sides.Single().Side, block.Sides[0].Quantity.ToDecimal(), block.Sides[0].Filled.ToDecimal(), block.Sides[0].AveragePrice.ToDecimal()));
        Assert.Equal(
            [("buy-20", 16m, 4m), ("buy-30", 24m, 6m), ("sell-40", 40m, 0m)],
            block.Members.Select(m => (m.PlanId, m.Crossed.ToDecimal(), m.Allocated.ToDecimal())).OrderBy(m => m.PlanId, StringComparer.Ordinal));
        Assert.Equal(blockId, (await client.ListBlocksAsync(new ListBlocksRequest())).Blocks.Single().BlockId);
        var bad = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => client.GetBlockAsync(new GetBlockRequest { BlockId = "" }).ResponseAsync);
        Assert.Equal(Grpc.Core.StatusCode.InvalidArgument, bad.StatusCode);
        var unknown = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => client.GetBlockAsync(new GetBlockRequest { BlockId = "blk-none" }).ResponseAsync);
        Assert.Equal(Grpc.Core.StatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task A_host_stopped_before_its_block_is_allocated_allocates_it_once_when_started_again()
    {
        // The first host pauses between the venues' fills and the allocation (fault injection) and is stopped there.
        var (first, firstClock) = Start("A", allocationPause: TimeSpan.FromHours(1));
        var plans = new[] { Plan("a-30", Side.Buy, 30m, BlockTrading.Block), Plan("a-20", Side.Buy, 20m, BlockTrading.Block) };
        var queue = first.Services.GetRequiredService<RunQueue>();
        foreach (var plan in plans)
        {
            await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null);
        }

        await first.Services.GetRequiredService<PlanRunner>().TickAsync();
        await WaitUntilAsync(() => first.Services.GetRequiredService<BlockDesk>().Waiting == 2);
        firstClock.Advance(TimeSpan.FromSeconds(1));
        var store = new ExecutionStore(_redis.Connection!); // outlives the hosts
        string? blockId = null;
        await WaitUntilAsync(async () => (blockId = await store.GetBlockOfMemberAsync("a-30:L1")) is not null
            && (await store.GetPlanOrdersAsync(blockId)).Sum(o => o.FilledQuantity.ToDecimal()) == 50m);
        var before = await store.GetPlanOrdersAsync(blockId!);
        Assert.Empty(Fills(first));
        await first.DisposeAsync();
        _servers.Remove(first);
        Assert.Null((await store.GetBlockAsync(blockId!))!.Value.Outcome);

        // Started again under its name: the plans resume, find their block, run it on from its journal — nothing is
        // sent again — and allocate it once.
        var (second, secondClock) = Start("A");
        await second.Services.GetRequiredService<PlanRunner>().TickAsync();
        foreach (var plan in plans)
        {
            var execution = await WaitForEndAsync(second.Services.GetRequiredService<ExecutionStore>(), plan.PlanId, secondClock);
            Assert.Equal((ExecutionStatus.Completed, plan.Legs[0].Quantity.ToDecimal()), (execution.Status, execution.Legs[0].FilledQuantity.ToDecimal()));
        }

        var after = await store.GetPlanOrdersAsync(blockId!);
        Assert.Equal(before.Select(o => (o.ClientOrderId, o.FilledQuantity)), after.Select(o => (o.ClientOrderId, o.FilledQuantity)));
        var fills = Fills(second);
        Assert.Equal(50m, fills.Sum(f => f.Fill.Quantity.ToDecimal()));
        Assert.Equal(fills.Count, fills.Select(f => f.Fill.FillId).Distinct().Count());
        var venueNotional = after.Sum(o => o.FilledQuantity.ToDecimal() * o.AveragePrice.ToDecimal());
        var average = venueNotional / 50m;
        Assert.All(fills, f => Assert.Equal(average, f.Fill.Price.ToDecimal()));
        Assert.Equal(after.Sum(o => o.Fees.ToDecimal()), fills.Sum(f => f.Fill.Fee.ToDecimal()));
        Assert.Equal([("a-20", 20m), ("a-30", 30m)], fills.Select(f => (f.PlanId, f.Fill.Quantity.ToDecimal())).Order());
    }

    [Fact]
    public async Task A_block_lock_is_held_by_one_replica_renewed_only_by_it_and_released_only_by_it()
    {
        var store = new ExecutionStore(_redis.Connection!);
        var block = "lock-" + Guid.NewGuid().ToString("N");
        var db = _redis.Connection!.GetDatabase();
        var key = "exe:block-lock:" + block;

        Assert.True(await store.TryLockBlockAsync(block, "replica-a", TimeSpan.FromSeconds(5)));
        Assert.False(await store.TryLockBlockAsync(block, "replica-b", TimeSpan.FromSeconds(60)));
        Assert.InRange((await db.KeyTimeToLiveAsync(key))!.Value.TotalSeconds, 0.1, 5); // b's try did not extend a's lease

        Assert.True(await store.TryLockBlockAsync(block, "replica-a", TimeSpan.FromSeconds(60))); // a renews, to its new lease
        Assert.InRange((await db.KeyTimeToLiveAsync(key))!.Value.TotalSeconds, 50, 60);

        await store.UnlockBlockAsync(block, "replica-b"); // not b's: nothing happens
        Assert.Equal("replica-a", (string?)await db.StringGetAsync(key));
        await store.UnlockBlockAsync(block, "replica-a");
        Assert.False(await db.KeyExistsAsync(key));
        Assert.True(await store.TryLockBlockAsync(block, "replica-b", TimeSpan.FromSeconds(5))); // free: b takes it
    }

    [Fact]
    public async Task A_forming_block_closes_once_quiet_or_at_the_end_of_its_window()
    {
        // Quiet 200 ms, window 500 ms: a lone slice waits 200 ms; slices joining every 150 ms keep a block open until
        // its window ends.
        var (server, clock) = Start("A", window: TimeSpan.FromMilliseconds(500));
        var desk = server.Services.GetRequiredService<BlockDesk>();
        var queue = server.Services.GetRequiredService<RunQueue>();
        var runner = server.Services.GetRequiredService<PlanRunner>();
        var store = server.Services.GetRequiredService<ExecutionStore>();

        async Task JoinAsync(string id)
        {
            var plan = Plan(id, Side.Buy, 1m, BlockTrading.Block);
            await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null);
            await runner.TickAsync();
            await WaitUntilAsync(() => desk.IsWaiting(id + ":L1"));
        }

        await JoinAsync("lone");
        clock.Advance(TimeSpan.FromMilliseconds(199));
        Assert.Equal(1, desk.Waiting);
        clock.Advance(TimeSpan.FromMilliseconds(1));
        await WaitForEndAsync(store, "lone", clock);
        Assert.Single((await store.GetRecentBlocksAsync(10)));

        await JoinAsync("k0");
        foreach (var id in new[] { "k1", "k2", "k3" })
        {
            clock.Advance(TimeSpan.FromMilliseconds(150));
            await JoinAsync(id); // each within 150 ms of the one before: still open at 450 ms
        }

        Assert.Equal(4, desk.Waiting);
        clock.Advance(TimeSpan.FromMilliseconds(50)); // 500 ms since k0: the window ends though k3 joined 50 ms ago
        foreach (var id in new[] { "k0", "k1", "k2", "k3" })
        {
            await WaitForEndAsync(store, id, clock);
        }

        var blocks = await store.GetRecentBlocksAsync(10);
        Assert.Equal(2, blocks.Count);
        Assert.Equal(blocks[0], await store.GetBlockOfMemberAsync("k3:L1"));
        Assert.Equal(blocks[0], await store.GetBlockOfMemberAsync("k0:L1"));
    }

    /// <summary>Accepts the plans, lets the replica start them all, closes their block by moving its clock, and waits for their ends.</summary>
    private static async Task RunTogetherAsync(GrpcTestServer<Program> server, FakeTimeProvider clock, IReadOnlyList<PlanApproved> plans)
    {
        var queue = server.Services.GetRequiredService<RunQueue>();
        foreach (var plan in plans)
        {
            await queue.AcceptAsync(plan, PlanExecutor.NewExecution(plan), null);
        }

        await server.Services.GetRequiredService<PlanRunner>().TickAsync();
        await WaitUntilAsync(() => server.Services.GetRequiredService<BlockDesk>().Waiting == plans.Count);
        clock.Advance(TimeSpan.FromSeconds(1));
        foreach (var plan in plans)
        {
            await WaitForEndAsync(server.Services.GetRequiredService<ExecutionStore>(), plan.PlanId, clock);
        }
    }

    private static Task<PlanExecution> WaitForEndAsync(ExecutionStore store, string planId, FakeTimeProvider clock) =>
        ExecutionReplicas.WaitForEndAsync(store, planId, [clock], TimeSpan.FromMilliseconds(500));

    private static Task WaitUntilAsync(Func<bool> condition) => WaitUntilAsync(() => Task.FromResult(condition()));

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        for (var i = 0; i < 400; i++)
        {
            if (await condition())
            {
                return;
            }

            await Task.Delay(25);
        }

        throw new TimeoutException("The condition did not hold.");
    }

    /// <summary>
    /// The fill reports published, each report once: delivery is at least once (planning applies a fill id once), and
    /// these tests run the clock 20 times faster than real time, so the outbox relay may publish a report its committer
    /// is still publishing once the report's virtual age passes <see cref="ReportOutbox.Grace"/>.
    /// </summary>
    private static List<ExecutionReport> Fills(GrpcTestServer<Program> server) => server.Services.GetRequiredService<InMemoryEventBus>().Published
        .Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.Kind == ReportKind.Fill)
        .DistinctBy(r => r.ReportId).ToList();

    private (GrpcTestServer<Program> Server, FakeTimeProvider Clock) Start(string name, TimeSpan? allocationPause = null, TimeSpan? window = null)
    {
        var clock = new FakeTimeProvider(_clockStart);
        var server = ExecutionReplicas.Start(_redis, name, clock, new Dictionary<string, string?>
        {
            ["Execution:BlockWindow"] = (window ?? TimeSpan.FromSeconds(1)).ToString("c", System.Globalization.CultureInfo.InvariantCulture),
            ["Execution:BlockAllocationPause"] = (allocationPause ?? TimeSpan.Zero).ToString("c", System.Globalization.CultureInfo.InvariantCulture),
        });
        _servers.Add(server);
        _ = server.Services; // started now, on its clock
        return (server, clock);
    }

    private static PlanApproved Plan(string id, Side side, decimal quantity, BlockTrading blocks = BlockTrading.BlockAndCross) => new()
    {
        PlanId = id,
        PortfolioId = "p-" + id,
        BlockTrading = blocks,
        Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = side, Quantity = quantity, ReferencePrice = 100m, LotSize = 1m } },
    };
}
