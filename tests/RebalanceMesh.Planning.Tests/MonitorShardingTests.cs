using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Planning replicas share the book: replicas join and leave (1 → 3 → 2, then one dies → 1) while market ticks keep
/// coming, and every tick is evaluated for every portfolio it touches by exactly one replica — none missed at a
/// handover, none evaluated twice. Each replica is a planning host on the in-process test server (its monitor driven
/// by hand, on a virtual clock) over one real Redis and the real pricing service.
/// </summary>
public sealed class MonitorShardingTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private static readonly string[] Instruments = ["DAX", "CAC", "SMI"];

    private readonly RedisServer _redis;
    private readonly PricingUnderTest _pricing;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 5, 9, 0, 0, TimeSpan.Zero));
    private readonly List<GrpcTestServer<Program>> _replicas = [];
    private readonly List<MonitorCoverage> _covered = [];

    public MonitorShardingTests(RedisServer redis)
    {
        _redis = redis;
        _pricing = new PricingUnderTest(redis);
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        await _pricing.WriteQuotesAsync(Instruments.Select(i => (i, 100m)));
    }

    public async Task DisposeAsync()
    {
        foreach (var replica in _replicas)
        {
            await replica.DisposeAsync();
        }

        await _pricing.DisposeAsync();
    }

    /// <summary>A planning replica named <paramref name="name"/>; its monitor runs only when the test says (no background loop).</summary>
    private DriftMonitor Replica(string name, int tickBatch = 1_000)
    {
        var replica = new GrpcTestServer<Program>(_redis,
            new Dictionary<string, string?>(PricingUnderTest.PlanningSettings)
            {
                ["Monitor:ReplicaId"] = name,
                ["Monitor:TickBatch"] = tickBatch.ToString(System.Globalization.CultureInfo.InvariantCulture),
            },
            services =>
            {
                _pricing.Route(services);
                services.AddSingleton<TimeProvider>(_time);
                foreach (var loop in services.Where(d => d.ServiceType == typeof(IHostedService) && d.ImplementationType == typeof(MonitorLoop)).ToArray())
                {
                    services.Remove(loop);
                }
            });
        _replicas.Add(replica);
        return replica.Services.GetRequiredService<DriftMonitor>();
    }

    private async Task TickAsync(string instrument)
    {
        var bus = _replicas[0].Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.MarketQuotes, new QuotesUpdated { AsOf = _time.GetUtcNow().ToTimestamp(), Prices = { new ConsolidatedPrice { InstrumentId = instrument, Mid = 100m } } });
        await bus.WhenDeliveredAsync();
    }

    private async Task ProcessAsync(params DriftMonitor[] monitors)
    {
        foreach (var monitor in monitors)
        {
            _covered.AddRange(await monitor.ProcessAsync(CancellationToken.None));
        }
    }

    private static async Task HeartbeatAsync(params DriftMonitor[] monitors)
    {
        foreach (var monitor in monitors)
        {
            await monitor.HeartbeatAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Replicas_join_and_leave_and_every_tick_is_evaluated_once_for_every_portfolio_it_touches()
    {
        var a = Replica("replica-a");
        var store = _replicas[0].Services.GetRequiredService<PlanningStore>();
        var holds = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < 150; i++)
        {
            var id = $"pf-{i:D3}";
            holds[id] = Instruments[i % 3];
            await store.UpsertPortfolioAsync(new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = 100m, Positions = { new Position { InstrumentId = holds[id], Quantity = 9m } } }, -1);
            await store.SetPolicyAsync(new Policy { PortfolioId = id, AbsoluteBand = 0.05, ExecutionMode = ExecutionMode.Manual, Targets = { new TargetWeight { InstrumentId = holds[id], Weight = 0.9 } } });
        }

        // One replica holds the whole book.
        await HeartbeatAsync(a);
        Assert.Equal(64, a.Held.Count);
        await TickAsync("DAX");
        await ProcessAsync(a);

        // Two join. They cannot take a partition a still holds; a gives two thirds back at its heartbeat — without having
        // evaluated the CAC tick for them — and they take them, with their cursors, at theirs.
        var b = Replica("replica-b");
        var c = Replica("replica-c");
        await HeartbeatAsync(b, c);
        Assert.Empty(b.Held);
        await TickAsync("CAC");
        await HeartbeatAsync(a, b, c);
        Assert.Equal([22, 21, 21], new[] { a.Held.Count, b.Held.Count, c.Held.Count });
        Assert.Empty(a.Held.Intersect(b.Held).Concat(a.Held.Intersect(c.Held)).Concat(b.Held.Intersect(c.Held)));
        await TickAsync("SMI");
        await ProcessAsync(b, a, c);

        // c leaves (a rolling update) with a DAX tick it has not evaluated; a and b take its partitions and that tick.
        await TickAsync("DAX");
        await c.LeaveAsync(CancellationToken.None);
        await TickAsync("CAC");
        await HeartbeatAsync(a, b); // each gives back what is dealt to the other and takes what is free ...
        Assert.NotEqual(64, a.Held.Count + b.Held.Count);
        await HeartbeatAsync(a); // ... and a takes what b gave back at its heartbeat
        Assert.Equal([32, 32], new[] { a.Held.Count, b.Held.Count });
        await ProcessAsync(a, b);

        // b dies (no leave, no heartbeat) with two ticks unevaluated; once its membership has ended a takes everything.
        await TickAsync("SMI");
        await ProcessAsync(a);
        await TickAsync("DAX");
        await HeartbeatAsync(a);
        Assert.Equal(32, a.Held.Count); // b's membership has not ended yet
        _time.Advance(TimeSpan.FromSeconds(6));
        await HeartbeatAsync(a);
        Assert.Equal(64, a.Held.Count);
        await ProcessAsync(a);

        // Every tick: each portfolio holding its instrument evaluated exactly once (by whichever replica held it), any
        // other at most once (a partition's first pass evaluates all its portfolios).
        var ticks = await _replicas[0].Services.GetRequiredService<MonitorShards>().ReadTicksAsync("0-0", 100);
        Assert.Equal(7, ticks.Count);
        foreach (var tick in ticks)
        {
            var counts = _covered.Where(e => MonitorBook.IsOlder(e.AfterTick, tick.Id) && !MonitorBook.IsOlder(e.ThroughTick, tick.Id))
                .GroupBy(e => e.PortfolioId).ToDictionary(g => g.Key, g => g.Count());
            foreach (var (portfolio, instrument) in holds)
            {
                var times = counts.GetValueOrDefault(portfolio);
                if (instrument == tick.Instruments.Single())
                {
                    Assert.True(times == 1, $"{portfolio} ({instrument}) evaluated {times} times for tick {tick.Id} ({tick.Instruments.Single()})");
                }
                else
                {
                    Assert.True(times <= 1, $"{portfolio} evaluated {times} times for tick {tick.Id}");
                }
            }
        }
    }

    [Fact]
    public async Task A_cursor_that_is_not_a_stream_id_restarts_its_partition_and_never_stops_the_monitor()
    {
        var a = Replica("replica-a");
        var store = _replicas[0].Services.GetRequiredService<PlanningStore>();
        for (var i = 0; i < 30; i++)
        {
            var id = $"pc-{i:D2}";
            await store.UpsertPortfolioAsync(new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = 100m, Positions = { new Position { InstrumentId = "DAX", Quantity = 9m } } }, -1);
            await store.SetPolicyAsync(new Policy { PortfolioId = id, AbsoluteBand = 0.05, ExecutionMode = ExecutionMode.Manual, Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.9 } } });
        }

        // Every partition's cursor is junk when the replica takes them.
        var db = _redis.Connection!.GetDatabase();
        for (var p = 0; p < 64; p++)
        {
            await db.HashSetAsync(MonitorShards.CursorsKey, p, p % 2 == 0 ? "not-an-id" : "-1-x");
        }

        await HeartbeatAsync(a);
        await TickAsync("CAC"); // no portfolio holds CAC: only a restarted partition evaluates anything
        Assert.Equal(30, (await a.ProcessAsync(CancellationToken.None)).Count);
        await TickAsync("DAX");
        Assert.Equal(30, (await a.ProcessAsync(CancellationToken.None)).Count);
        await TickAsync("CAC");
        Assert.Empty(await a.ProcessAsync(CancellationToken.None));
    }

    [Fact]
    public async Task A_partition_taken_far_behind_catches_up_without_moving_the_others_back()
    {
        // Batches of two ticks. Two portfolios hold DAX: "late" sits in a partition whose cursor is five ticks behind
        // the others' (taken from a replica that had fallen behind).
        var a = Replica("replica-a", tickBatch: 2);
        var store = _replicas[0].Services.GetRequiredService<PlanningStore>();
        var ids = Enumerable.Range(0, 40).Select(i => $"pb-{i:D2}").ToArray();
        foreach (var id in ids)
        {
            await store.UpsertPortfolioAsync(new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = 100m, Positions = { new Position { InstrumentId = "DAX", Quantity = 9m } } }, -1);
            await store.SetPolicyAsync(new Policy { PortfolioId = id, AbsoluteBand = 0.05, ExecutionMode = ExecutionMode.Manual, Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.9 } } });
        }

        await HeartbeatAsync(a);
        await TickAsync("DAX");
        await ProcessAsync(a); // the first pass: every partition evaluated once, cursors at the first tick
        var late = MonitorPartitions.Of(ids[0], MonitorPartitions.Default);
        var shards = _replicas[0].Services.GetRequiredService<MonitorShards>();
        var first = (await shards.ReadTicksAsync("0-0", 10)).Single().Id;
        for (var i = 0; i < 5; i++)
        {
            await TickAsync("DAX");
        }

        // Every partition but the late one is already past the five ticks (as a replica ahead of this one left them).
        var ticks = await shards.ReadTicksAsync(first, 10);
        var db = _redis.Connection!.GetDatabase();
        await a.LeaveAsync(CancellationToken.None);
        for (var p = 0; p < 64; p++)
        {
            await db.HashSetAsync(MonitorShards.CursorsKey, p, p == late ? first : ticks[^1].Id);
        }

        _covered.Clear();
        await HeartbeatAsync(a);
        await ProcessAsync(a);

        // Only the late partition's portfolios were evaluated, each once for each of the five ticks; the others not again.
        var inLate = ids.Where(id => MonitorPartitions.Of(id, MonitorPartitions.Default) == late).ToHashSet();
        Assert.All(_covered, c => Assert.Contains(c.PortfolioId, inLate));
        foreach (var tick in ticks)
        {
            Assert.All(inLate, id => Assert.Single(_covered, c => c.PortfolioId == id && MonitorBook.IsOlder(c.AfterTick, tick.Id) && !MonitorBook.IsOlder(c.ThroughTick, tick.Id)));
        }

        Assert.Equal(ticks[^1].Id, (await db.HashGetAsync(MonitorShards.CursorsKey, (late + 1) % 64)).ToString());
    }

    [Fact]
    public void Partitions_are_dealt_evenly_and_the_same_by_every_replica()
    {
        // FNV-1a over the UTF-16 bytes of "a" (0x61, 0x00) is 0x2B24D044 (python: h = 2166136261; h = ((h ^ b) * 16777619) % 2**32
        // per byte); its partition of 64 is its top 6 bits, 0x2B24D044 >> 26 = 10.
        Assert.Equal(10, MonitorPartitions.Of("a", 64));
        var assigned = MonitorPartitions.Assign(["r-b", "r-a", "r-c"], 64);
        Assert.Equal(MonitorPartitions.Assign(["r-c", "r-a", "r-b"], 64), assigned);
        Assert.Equal([22, 21, 21], assigned.GroupBy(r => r).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => g.Count()));

        // A joining replica takes nothing while the holders have not given back; a holder gives back what is dealt away.
        var heldByA = Enumerable.Range(0, 64).ToHashSet();
        var moves = MonitorPartitions.Moves("r-a", ["r-a", "r-b"], heldByA, 64);
        Assert.Equal(Enumerable.Range(0, 64).Where(p => p % 2 == 1), moves.Release);
        Assert.Empty(moves.Take);
        Assert.Equal(Enumerable.Range(0, 64).Where(p => p % 2 == 1), MonitorPartitions.Moves("r-b", ["r-a", "r-b"], new HashSet<int>(), 64).Take);

        // 100,000 ids over 64 partitions: every partition within 10 % of its share.
        var sizes = Enumerable.Range(0, 100_000).GroupBy(i => MonitorPartitions.Of($"acct-{i:D6}", 64)).Select(g => g.Count()).ToArray();
        Assert.Equal(64, sizes.Length);
        Assert.All(sizes, size => Assert.InRange(size, 1_562.5 * 0.9, 1_562.5 * 1.1));
    }
}
