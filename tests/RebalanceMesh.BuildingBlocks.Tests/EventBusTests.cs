using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Testing;
using StackExchange.Redis;

namespace RebalanceMesh.BuildingBlocks.Tests;

/// <summary>What the test handler saw.</summary>
public sealed class Received
{
    public ConcurrentQueue<(TradingHaltChanged Message, EventContext Context, ActivityTraceId TraceId, ActivitySpanId ParentSpanId)> Events { get; } = new();

    /// <summary>Deliveries to fail before succeeding, per reason text.</summary>
    public ConcurrentDictionary<string, int> FailuresLeft { get; } = new();
}

public sealed class RecordingHandler(Received received) : IEventHandler<TradingHaltChanged>
{
    public Task HandleAsync(TradingHaltChanged message, EventContext context, CancellationToken cancellationToken)
    {
        if (received.FailuresLeft.TryGetValue(message.Reason, out var left) && left > 0)
        {
            received.FailuresLeft[message.Reason] = left - 1;
            throw new InvalidOperationException("transient failure");
        }

        var current = Activity.Current!;
        received.Events.Enqueue((message, context, current.TraceId, current.ParentSpanId));
        return Task.CompletedTask;
    }
}

/// <summary>A handler that holds its topic until the gate opens (a long plan execution).</summary>
public sealed class Gate
{
    public TaskCompletionSource Open { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ConcurrentQueue<string> Seen { get; } = new();
}

public sealed class GatedHandler(Gate gate) : IEventHandler<PlanCancelRequested>
{
    public async Task HandleAsync(PlanCancelRequested message, EventContext context, CancellationToken cancellationToken)
    {
        await gate.Open.Task.WaitAsync(cancellationToken);
        gate.Seen.Enqueue(message.PlanId);
    }
}

/// <summary>Handlers held at a gate that count how many run at once, overall and per portfolio (the ordering key).</summary>
public sealed class Concurrency
{
    private readonly ConcurrentDictionary<string, int> _perKey = new();
    private int _inFlight;
    private int _most;
    private int _mostForOneKey;

    public TaskCompletionSource Open { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ConcurrentQueue<string> Seen { get; } = new();

    public int InFlight => Volatile.Read(ref _inFlight);

    public int MostInFlight => Volatile.Read(ref _most);

    public int MostInFlightForOneKey => Volatile.Read(ref _mostForOneKey);

    public void Enter(string key)
    {
        Max(ref _most, Interlocked.Increment(ref _inFlight));
        Max(ref _mostForOneKey, _perKey.AddOrUpdate(key, 1, (_, n) => n + 1));
    }

    public void Leave(string key)
    {
        _perKey.AddOrUpdate(key, 0, (_, n) => n - 1);
        Interlocked.Decrement(ref _inFlight);
    }

    private static void Max(ref int target, int value)
    {
        for (var seen = Volatile.Read(ref target); value > seen; seen = Volatile.Read(ref target))
        {
            if (Interlocked.CompareExchange(ref target, value, seen) == seen)
            {
                return;
            }
        }
    }
}

public sealed class ConcurrencyHandler(Concurrency state) : IEventHandler<PlanCancelRequested>
{
    public async Task HandleAsync(PlanCancelRequested message, EventContext context, CancellationToken cancellationToken)
    {
        state.Enter(message.PortfolioId);
        try
        {
            await state.Open.Task.WaitAsync(cancellationToken);
            state.Seen.Enqueue(message.PlanId);
        }
        finally
        {
            state.Leave(message.PortfolioId);
        }
    }
}

/// <summary>
/// A handler taking batches: records the plan ids of each call (an event handed alone too); holds on a plan id with a gate
/// until the gate opens; fails any batch holding "poison", and "poison" alone always.
/// </summary>
public sealed class Batches
{
    /// <summary>Per plan id that holds its lane: set when it is being handled, and the gate that lets it go.</summary>
    public ConcurrentDictionary<string, (TaskCompletionSource Holding, TaskCompletionSource Open)> Gates { get; } = new();

    public (TaskCompletionSource Holding, TaskCompletionSource Open) Gate(string planId) =>
        Gates.GetOrAdd(planId, _ => (new(TaskCreationOptions.RunContinuationsAsynchronously), new(TaskCreationOptions.RunContinuationsAsynchronously)));

    public ConcurrentQueue<string[]> Handled { get; } = new();

    public ConcurrentQueue<string> Alone { get; } = new();
}

public sealed class BatchHandler(Batches state) : IEventBatchHandler<PlanCancelRequested>
{
    public async Task HandleAsync(PlanCancelRequested message, EventContext context, CancellationToken cancellationToken)
    {
        if (message.PlanId == "poison")
        {
            throw new InvalidOperationException("poison");
        }

        await HoldAsync([message.PlanId], cancellationToken);
        state.Alone.Enqueue(message.PlanId);
        state.Handled.Enqueue([message.PlanId]);
    }

    public async Task HandleBatchAsync(IReadOnlyList<DeliveredEvent<PlanCancelRequested>> events, CancellationToken cancellationToken)
    {
        var ids = events.Select(e => e.Message.PlanId).ToArray();
        await HoldAsync(ids, cancellationToken);
        if (ids.Contains("poison"))
        {
            throw new InvalidOperationException("a batch with poison");
        }

        state.Handled.Enqueue(ids);
    }

    private async Task HoldAsync(string[] ids, CancellationToken cancellationToken)
    {
        foreach (var id in ids.Where(state.Gates.ContainsKey))
        {
            var (holding, open) = state.Gate(id);
            holding.TrySetResult();
            await open.Task.WaitAsync(cancellationToken);
        }
    }
}

public sealed class EventBusTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private const string Topic = "test.halts";
    private readonly RedisServer _redis;
    private readonly ActivityListener _listener;
    private readonly ConcurrentQueue<Activity> _activities = new();

    public EventBusTests(RedisServer redis)
    {
        _redis = redis;
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name.StartsWith("RebalanceMesh", StringComparison.Ordinal) || source.Name == "test",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _activities.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync()
    {
        _listener.Dispose();
        return Task.CompletedTask;
    }

    private async Task<IHost> StartHostAsync(string provider, Received received, TimeSpan? processingTimeout = null)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["EventBus:Provider"] = provider,
            ["EventBus:ProcessingTimeout"] = (processingTimeout ?? TimeSpan.FromSeconds(30)).ToString(),
            ["EventBus:RedeliverInterval"] = "00:00:00.100",
            ["EventBus:MaxDeliveries"] = "3",
            ["EventBus:ReadBlock"] = "00:00:00.200",
        });
        builder.Services.AddSingleton<IConnectionMultiplexer>(_ => ConnectionMultiplexer.Connect(_redis.ConnectionString));
        builder.Services.AddSingleton(received);
        builder.AddEventBus("test-app");
        builder.Services.AddEventSubscription<TradingHaltChanged, RecordingHandler>(Topic);
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, int timeoutMs = 10_000)
    {
        var stopwatch = Stopwatch.StartNew();
        while (!condition())
        {
            if (stopwatch.ElapsedMilliseconds > timeoutMs)
            {
                throw new TimeoutException("Condition not met in time.");
            }

            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task A_stream_is_trimmed_only_behind_what_every_consumer_group_has_consumed()
    {
        // Ten entries, two groups: "fast" has read and acknowledged all ten, "slow" has read six and acknowledged four.
        var db = _redis.Connection!.GetDatabase();
        const string topic = "trim-test";
        var ids = new List<RedisValue>();
        for (var i = 0; i < 10; i++)
        {
            ids.Add((await db.StreamAddAsync(topic, "data", i)).ToString());
        }

        await db.StreamCreateConsumerGroupAsync(topic, "fast", "0");
        await db.StreamCreateConsumerGroupAsync(topic, "slow", "0");
        var fast = await db.StreamReadGroupAsync(topic, "fast", "f1", ">", count: 10);
        await db.StreamAcknowledgeAsync(topic, "fast", fast.Select(e => e.Id).ToArray());
        var slow = await db.StreamReadGroupAsync(topic, "slow", "s1", ">", count: 6);
        await db.StreamAcknowledgeAsync(topic, "slow", slow.Take(4).Select(e => e.Id).ToArray());

        // The slow group still needs its fifth entry (pending) onward: the four before it go, nothing else.
        var (removed, lag) = await StreamTrim.TrimConsumedAsync(db, topic);
        Assert.Equal(4, removed);
        Assert.Equal(4, lag); // the slow group has four entries not yet delivered
        Assert.Equal(ids.Skip(4), (await db.StreamRangeAsync(topic)).Select(e => (RedisValue)e.Id.ToString()));

        // Once it has acknowledged everything it read, the trim follows it to what it has not read yet.
        await db.StreamAcknowledgeAsync(topic, "slow", slow.Skip(4).Select(e => e.Id).ToArray());
        Assert.Equal(1, (await StreamTrim.TrimConsumedAsync(db, topic)).Removed); // keeps its last delivered (the sixth)
        Assert.Equal(ids.Skip(5), (await db.StreamRangeAsync(topic)).Select(e => (RedisValue)e.Id.ToString()));

        // A stream no group reads is left alone (the publishers' cap bounds it).
        await db.StreamAddAsync("trim-nobody", "data", 1);
        Assert.Equal(0, (await StreamTrim.TrimConsumedAsync(db, "trim-nobody")).Removed);
    }

    [Theory]
    [InlineData("1733400000000-7", 1733400000000L, 7L)]
    [InlineData("42", 42L, 0L)]
    [InlineData("0-0", 0L, 0L)]
    public void Stream_ids_are_read(string id, long ms, long seq) => Assert.Equal((ms, seq), StreamTrim.ParseId(id));

    [Theory]
    [InlineData("")]          // XPENDING's lowest id once everything pending was acknowledged after XINFO counted it
    [InlineData(null)]
    [InlineData("12-")]
    [InlineData("-3")]
    [InlineData("a-1")]
    [InlineData("1-2-3")]
    public void What_is_not_a_stream_id_is_refused_not_thrown(string? id) => Assert.Null(StreamTrim.ParseId(id));

    [Fact]
    public async Task Redis_stream_entries_have_Dapr_pubsub_redis_format()
    {
        using var host = await StartHostAsync("redis", new Received());
        var bus = host.Services.GetRequiredService<IEventBus>();
        using var source = new ActivitySource("test");
        using (source.StartActivity("publisher"))
        {
            await bus.PublishAsync(Topic, new TradingHaltChanged { Halted = true, Reason = "wire" });
        }

        var entries = await _redis.Connection!.GetDatabase().StreamRangeAsync(Topic);
        var entry = Assert.Single(entries);
        var field = Assert.Single(entry.Values);
        Assert.Equal("data", field.Name.ToString());

        var cloudEvent = JsonNode.Parse(field.Value.ToString())!.AsObject();
        Assert.Equal("1.0", (string?)cloudEvent["specversion"]);
        Assert.Equal("test-app", (string?)cloudEvent["source"]);
        Assert.Equal("rebalance.events.v1.TradingHaltChanged", (string?)cloudEvent["type"]);
        Assert.Equal("application/json", (string?)cloudEvent["datacontenttype"]);
        Assert.Equal(Topic, (string?)cloudEvent["topic"]);
        Assert.Equal("pubsub", (string?)cloudEvent["pubsubname"]);
        Assert.Matches("^[0-9a-f]{32}$", (string?)cloudEvent["id"]);
        Assert.Matches("^00-[0-9a-f]{32}-[0-9a-f]{16}-01$", (string?)cloudEvent["traceparent"]);
        Assert.True((bool?)cloudEvent["data"]!["halted"]);
        Assert.Equal("wire", (string?)cloudEvent["data"]!["reason"]);
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("inmemory")]
    public async Task Messages_published_together_reach_the_stream_and_the_handler_in_their_order(string provider)
    {
        var received = new Received();
        using var host = await StartHostAsync(provider, received);
        if (provider == "redis")
        {
            // A group that reads nothing: the consumer trims what every group has acknowledged (every 100 ms here), and
            // without it could trim what the handler acknowledged before the XRANGE below reads the stream.
            await _redis.Connection!.GetDatabase().StreamCreateConsumerGroupAsync(Topic, "observer", "0-0", createStream: true);
        }

        var bus = host.Services.GetRequiredService<IEventBus>();
        var messages = Enumerable.Range(0, 200).Select(i => new TradingHaltChanged { Reason = $"m{i:D3}" }).ToArray();
        await bus.PublishAllAsync(Topic, messages);

        if (provider == "redis")
        {
            // Returned: the broker has every one, in order.
            var entries = await _redis.Connection!.GetDatabase().StreamRangeAsync(Topic);
            Assert.Equal(messages.Select(m => m.Reason), entries.Select(e => (string?)JsonNode.Parse(e.Values.Single().Value.ToString())!["data"]!["reason"]));
        }

        await WaitUntilAsync(() => received.Events.Count >= messages.Length);
        Assert.Equal(messages.Select(m => m.Reason).Order(StringComparer.Ordinal), received.Events.Select(e => e.Message.Reason).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Consumes_with_the_app_id_as_group_acks_and_continues_the_trace()
    {
        var received = new Received();
        using var host = await StartHostAsync("redis", received);
        var bus = host.Services.GetRequiredService<IEventBus>();
        using var source = new ActivitySource("test");
        ActivityTraceId traceId;
        using (var parent = source.StartActivity("publisher"))
        {
            traceId = parent!.TraceId;
            await bus.PublishAsync(Topic, new TradingHaltChanged { Halted = true, Reason = "trace" });
        }

        await WaitUntilAsync(() => !received.Events.IsEmpty);
        var (message, context, consumerTrace, consumerParent) = received.Events.Single();
        Assert.Equal("trace", message.Reason);
        Assert.Equal(1, context.DeliveryCount);
        Assert.Equal(traceId, consumerTrace);
        var publishSpan = _activities.Single(a => a.DisplayName == $"{Topic} publish" && a.TraceId == traceId);
        var consumeSpan = _activities.Single(a => a.DisplayName == $"{Topic} process" && a.TraceId == traceId);
        Assert.Equal(publishSpan.SpanId, consumeSpan.ParentSpanId);
        Assert.Equal(ActivityKind.Consumer, consumeSpan.Kind);

        var db = _redis.Connection!.GetDatabase();
        var groups = await db.StreamGroupInfoAsync(Topic);
        Assert.Equal("test-app", Assert.Single(groups).Name);
        await WaitUntilAsync(() => db.StreamPending(Topic, "test-app").PendingMessageCount == 0);
    }

    [Fact]
    public async Task Raw_bytes_on_a_topic_are_dead_lettered_and_the_events_behind_them_are_handled()
    {
        // What anyone with access to the stream can XADD: text that is not UTF-8 inside a CloudEvent (it used to throw
        // while the consumer read it, and the consumer read it again after each back-off: the topic stalled), bytes
        // that are no JSON at all, a second value after the event, an entry without the data field.
        var db = _redis.Connection!.GetDatabase();
        byte[] notUtf8 = [.. "{\"specversion\":\"1.0\",\"id\":\"\xff\",\"type\":\""u8, 0xC3, 0x28, .. "\",\"data\":{}}"u8];
        byte[] garbage = [0x00, 0xFF, 0x7B, 0x22, 0x80, 0x81];
        await db.StreamAddAsync(Topic, "data", notUtf8);
        await db.StreamAddAsync(Topic, "data", garbage);
        await db.StreamAddAsync(Topic, "data", """{"specversion":"1.0","id":"1","type":"rebalance.events.v1.TradingHaltChanged","data":{}} {}""");
        await db.StreamAddAsync(Topic, "other", "no data field");

        var received = new Received();
        using var host = await StartHostAsync("redis", received);
        await host.Services.GetRequiredService<IEventBus>().PublishAsync(Topic, new TradingHaltChanged { Reason = "after the bytes" });

        await WaitUntilAsync(() => received.Events.Any(e => e.Message.Reason == "after the bytes"));
        await WaitUntilAsync(() => db.StreamPending(Topic, "test-app").PendingMessageCount == 0);
        var dead = await db.StreamRangeAsync(Topics.DeadLetter(Topic));
        Assert.Equal(4, dead.Count(e => e["reason"] == "malformed"));
        Assert.Single(received.Events);
    }

    [Fact]
    public async Task Failed_events_are_redelivered_after_the_processing_timeout_then_dead_lettered()
    {
        var received = new Received();
        received.FailuresLeft["flaky"] = 1;    // succeeds on the second delivery
        received.FailuresLeft["poison"] = 100; // never succeeds
        using var host = await StartHostAsync("redis", received, processingTimeout: TimeSpan.FromMilliseconds(300));
        var bus = host.Services.GetRequiredService<IEventBus>();
        await bus.PublishAsync(Topic, new TradingHaltChanged { Reason = "flaky" });
        await bus.PublishAsync(Topic, new TradingHaltChanged { Reason = "poison" });
        await _redis.Connection!.GetDatabase().StreamAddAsync(Topic, "data", "{not a cloud event");

        await WaitUntilAsync(() => received.Events.Any(e => e.Message.Reason == "flaky"));
        Assert.Equal(2, received.Events.Single(e => e.Message.Reason == "flaky").Context.DeliveryCount);

        var db = _redis.Connection!.GetDatabase();
        await WaitUntilAsync(() => db.StreamLength(Topics.DeadLetter(Topic)) == 2);
        var dead = await db.StreamRangeAsync(Topics.DeadLetter(Topic));
        Assert.Contains(dead, e => e["reason"] == "malformed");
        Assert.Contains(dead, e => e["reason"] == "failed 3 deliveries" && e["data"].ToString().Contains("poison", StringComparison.Ordinal));
        await WaitUntilAsync(() => db.StreamPending(Topic, "test-app").PendingMessageCount == 0);
        Assert.DoesNotContain(received.Events, e => e.Message.Reason == "poison");
    }

    [Fact]
    public async Task In_memory_bus_delivers_through_the_same_envelope()
    {
        var received = new Received();
        using var host = await StartHostAsync("inmemory", received);
        var bus = host.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topic, new TradingHaltChanged { Reason = "memory" });
        await WaitUntilAsync(() => !received.Events.IsEmpty);
        Assert.Equal("memory", received.Events.Single().Message.Reason);
        Assert.Equal("rebalance.events.v1.TradingHaltChanged", bus.Published.Single().Type);
    }

    [Fact]
    public async Task In_memory_bus_delivers_each_topic_in_order_and_topics_side_by_side()
    {
        // A handler still busy on one topic (an executing plan) must not hold back another topic (its cancel), as with
        // Redis Streams and Dapr; within the busy topic, order is kept.
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["EventBus:Provider"] = "inmemory" });
        var received = new Received();
        var gate = new Gate();
        builder.Services.AddSingleton(received).AddSingleton(gate);
        builder.AddEventBus("test-app");
        builder.Services.AddEventSubscription<TradingHaltChanged, RecordingHandler>(Topic);
        builder.Services.AddEventSubscription<PlanCancelRequested, GatedHandler>("test.gated", cancel => cancel.PortfolioId);
        using var host = builder.Build();
        await host.StartAsync();
        var bus = host.Services.GetRequiredService<InMemoryEventBus>();

        await bus.PublishAsync("test.gated", new PlanCancelRequested { PlanId = "first", PortfolioId = "p" });
        await bus.PublishAsync("test.gated", new PlanCancelRequested { PlanId = "second", PortfolioId = "p" });
        await bus.PublishAsync(Topic, new TradingHaltChanged { Reason = "not held back" });
        await WaitUntilAsync(() => !received.Events.IsEmpty);
        Assert.Empty(gate.Seen);

        gate.Open.SetResult();
        await WaitUntilAsync(() => gate.Seen.Count == 2);
        Assert.Equal(["first", "second"], gate.Seen);
        await host.StopAsync();
    }

    [Theory]
    [InlineData("inmemory")]
    [InlineData("redis")]
    public async Task A_topics_events_run_concurrently_and_one_keys_events_one_at_a_time_in_order(string provider)
    {
        // As Dapr's pubsub.redis delivers a subscription through `concurrency` workers (10): ten portfolios' events are
        // handled at once, while one portfolio's three events go one at a time, in the order they were published.
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["EventBus:Provider"] = provider,
            ["EventBus:ReadBlock"] = "00:00:00.200",
        });
        builder.Services.AddSingleton<IConnectionMultiplexer>(_ => ConnectionMultiplexer.Connect(_redis.ConnectionString));
        var state = new Concurrency();
        builder.Services.AddSingleton(state);
        builder.AddEventBus("test-app");
        builder.Services.AddEventSubscription<PlanCancelRequested, ConcurrencyHandler>("test.keyed", cancel => cancel.PortfolioId);
        using var host = builder.Build();
        await host.StartAsync();
        var bus = host.Services.GetRequiredService<IEventBus>();

        foreach (var plan in new[] { "same-1", "same-2", "same-3" })
        {
            await bus.PublishAsync("test.keyed", new PlanCancelRequested { PlanId = plan, PortfolioId = "same" });
        }

        for (var k = 0; k < 10; k++)
        {
            await bus.PublishAsync("test.keyed", new PlanCancelRequested { PlanId = $"other-{k}", PortfolioId = $"p{k}" });
        }

        await WaitUntilAsync(() => state.InFlight >= 5); // held at the gate together
        state.Open.SetResult();
        await WaitUntilAsync(() => state.Seen.Count == 13);
        Assert.Equal(["same-1", "same-2", "same-3"], state.Seen.Where(p => p.StartsWith("same", StringComparison.Ordinal)));
        Assert.Equal(1, state.MostInFlightForOneKey);
        Assert.InRange(state.MostInFlight, 5, 10);
        await host.StopAsync();
    }

    [Fact]
    public async Task A_batch_handler_gets_what_a_lane_holds_in_order_and_a_failed_batch_is_delivered_one_by_one()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["EventBus:Provider"] = "redis",
            ["EventBus:ReadBlock"] = "00:00:00.200",
            ["EventBus:ProcessingTimeout"] = "00:00:00.300",
            ["EventBus:RedeliverInterval"] = "00:00:00.100",
            ["EventBus:MaxDeliveries"] = "2",
        });
        builder.Services.AddSingleton<IConnectionMultiplexer>(_ => ConnectionMultiplexer.Connect(_redis.ConnectionString));
        var state = new Batches();
        builder.Services.AddSingleton(state);
        builder.AddEventBus("test-app");
        builder.Services.AddEventSubscription<PlanCancelRequested, BatchHandler>("test.batched", cancel => cancel.PortfolioId);
        using var host = builder.Build();
        await host.StartAsync();
        var bus = host.Services.GetRequiredService<IEventBus>();

        // "hold" occupies portfolio p's lane; what p publishes meanwhile waits in the lane and comes as one batch.
        var (holding, open) = state.Gate("hold");
        await bus.PublishAsync("test.batched", new PlanCancelRequested { PlanId = "hold", PortfolioId = "p" });
        await holding.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var first = Enumerable.Range(1, 20).Select(i => $"first-{i:D2}").ToArray();
        await bus.PublishAllAsync("test.batched", first.Select(id => (Google.Protobuf.IMessage)new PlanCancelRequested { PlanId = id, PortfolioId = "p" }).ToArray());
        var db = _redis.Connection!.GetDatabase();
        await WaitUntilAsync(() => db.StreamPending("test.batched", "test-app").PendingMessageCount == 21); // read, in p's lane behind "hold"
        open.SetResult();
        await WaitUntilAsync(() => state.Handled.SelectMany(b => b).Count() == 21);
        Assert.Equal(["hold", .. first], state.Handled.SelectMany(b => b)); // in order
        Assert.Contains(state.Handled, batch => batch.Length > 1); // what the lane held, together (exactly: DeliveryLanesTests)

        // Each event of a batch has its own consumer span, the child of its publisher's span.
        var processed = _activities.Where(a => a.DisplayName == "test.batched process").ToArray();
        Assert.Equal(21, processed.Length);
        foreach (var size in state.Handled.Select(b => b.Length).Where(n => n > 1).Distinct())
        {
            // Every event of a batch of n has a span saying n.
            Assert.Equal(state.Handled.Where(b => b.Length == size).Sum(b => b.Length), processed.Count(span => span.GetTagItem("messaging.batch.message_count") is int n && n == size));
        }
        var publishes = _activities.Where(a => a.DisplayName == "test.batched publish").Select(a => a.SpanId).ToHashSet();
        Assert.All(processed, span => Assert.Contains(span.ParentSpanId, publishes));

        // A batch with a poisoned event fails; its events are then delivered one by one: the good ones handled alone,
        // the poisoned one retried and dead-lettered; nothing is left pending.
        var (holdingQ, openQ) = state.Gate("hold-q");
        await bus.PublishAsync("test.batched", new PlanCancelRequested { PlanId = "hold-q", PortfolioId = "q" });
        await holdingQ.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var second = new[] { "second-1", "poison", "second-2" };
        await bus.PublishAllAsync("test.batched", second.Select(id => (Google.Protobuf.IMessage)new PlanCancelRequested { PlanId = id, PortfolioId = "q" }).ToArray());
        await WaitUntilAsync(() => db.StreamPending("test.batched", "test-app").PendingMessageCount == 4); // read, in q's lane behind "hold-q"
        openQ.SetResult();
        await WaitUntilAsync(() => db.StreamLength(Topics.DeadLetter("test.batched")) == 1);
        Assert.Contains("poison", (await db.StreamRangeAsync(Topics.DeadLetter("test.batched"))).Single()["data"].ToString(), StringComparison.Ordinal);
        await WaitUntilAsync(() => state.Alone.Contains("second-2"));
        Assert.Contains("second-1", state.Alone);
        Assert.Contains("second-2", state.Alone);
        Assert.DoesNotContain("poison", state.Handled.SelectMany(b => b));
        Assert.DoesNotContain(state.Handled, batch => batch.Contains("second-1") && batch.Length > 1); // not handed over with the poison
        await WaitUntilAsync(() => db.StreamPending("test.batched", "test-app").PendingMessageCount == 0);
        await host.StopAsync();
    }

    [Fact]
    public void Envelope_rejects_events_that_are_not_CloudEvents()
    {
        Assert.Throws<MalformedEventException>(() => CloudEventEnvelope.Parse("[]"u8));
        Assert.Throws<MalformedEventException>(() => CloudEventEnvelope.Parse("""{"specversion":"0.3","id":"1","type":"x"}"""u8));
        var envelope = CloudEventEnvelope.Parse("""{"specversion":"1.0","id":"1","type":"rebalance.events.v1.QuotesUpdated","data":{}}"""u8);
        Assert.Throws<MalformedEventException>(() => envelope.ReadData(TradingHaltChanged.Parser));
        Assert.NotNull(envelope.ReadData(QuotesUpdated.Parser));

        // What a careless or hostile publisher sends: a second value after the event, bytes that are not UTF-8, data
        // that is a string holding no JSON, data that is not an object, no data at all.
        Assert.Throws<MalformedEventException>(() => CloudEventEnvelope.Parse("""{"specversion":"1.0","id":"1","type":"x"} {"id":"2"}"""u8));
        Assert.Throws<MalformedEventException>(() => CloudEventEnvelope.Parse([.. "{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\""u8, 0xFF, 0xFE, .. "\"}"u8]));
        Assert.Throws<MalformedEventException>(() => CloudEventEnvelope.Parse("""{"specversion":"1.0","id":"1","type":"x","data":"{not json"}"""u8));
        Assert.Throws<MalformedEventException>(() => CloudEventEnvelope.Parse("""{"specversion":"1.0","id":"1","type":"x","data":"{} []"}"""u8));
        const string type = "rebalance.events.v1.TradingHaltChanged";
        foreach (var data in new[] { "[1,2]", "true", "42", "null", "\"[3]\"" })
        {
            var odd = CloudEventEnvelope.Parse(System.Text.Encoding.UTF8.GetBytes($$"""{"specversion":"1.0","id":"1","type":"{{type}}","data":{{data}}}"""));
            Assert.Throws<MalformedEventException>(() => odd.ReadData(TradingHaltChanged.Parser));
        }

        Assert.Throws<MalformedEventException>(() => CloudEventEnvelope.Parse(System.Text.Encoding.UTF8.GetBytes($$"""{"specversion":"1.0","id":"1","type":"{{type}}"}""")).ReadData(TradingHaltChanged.Parser));

        // Data sent as a string holding the object is read like the object.
        var embedded = CloudEventEnvelope.Parse(System.Text.Encoding.UTF8.GetBytes($$"""{"specversion":"1.0","id":"1","type":"{{type}}","data":" {\"halted\": true, \"reason\": \"fat finger\"} "}"""));
        Assert.Equal(new TradingHaltChanged { Halted = true, Reason = "fat finger" }, embedded.ReadData(TradingHaltChanged.Parser));
    }

    [Fact]
    public void Envelope_written_is_a_structured_CloudEvent_whose_data_is_the_message_in_protobufs_JSON_mapping_and_reads_back_equal()
    {
        var message = new TradingHaltChanged { Halted = true, Reason = "Ünïcode \"quoted\" <tag> & 1+1", ChangedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero)) };
        var time = new DateTimeOffset(2026, 12, 7, 12, 0, 1, TimeSpan.Zero);
        var bytes = CloudEventEnvelope.Create(message, "plans.halted", "pubsub", "planning", time).ToJsonBytes();

        // Read by an independent JSON reader: the CloudEvents 1.0 attributes, and data as an object.
        using var json = System.Text.Json.JsonDocument.Parse(bytes);
        var root = json.RootElement;
        Assert.Equal(("1.0", "planning", "rebalance.events.v1.TradingHaltChanged", "application/json", "plans.halted", "pubsub"), (root.GetProperty("specversion").GetString(), root.GetProperty("source").GetString(), root.GetProperty("type").GetString(), root.GetProperty("datacontenttype").GetString(), root.GetProperty("topic").GetString(), root.GetProperty("pubsubname").GetString()));
        Assert.Equal(time, root.GetProperty("time").GetDateTimeOffset());
        Assert.Equal(32, root.GetProperty("id").GetString()!.Length);
        var data = root.GetProperty("data");
        Assert.Equal((true, message.Reason, "2026-12-07T12:00:00Z"), (data.GetProperty("halted").GetBoolean(), data.GetProperty("reason").GetString(), data.GetProperty("changedAt").GetString()));

        var read = CloudEventEnvelope.Parse(bytes);
        Assert.Equal(message, read.ReadData(TradingHaltChanged.Parser));
        Assert.Equal((time, "plans.halted"), (read.Time, read.Topic));
        Assert.Equal(bytes, read.ToJsonBytes()); // written again as read: a dead letter keeps the event as it came
    }
}
