using Google.Protobuf;
using System.Reflection;
using System.Runtime.ExceptionServices;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Logging.Abstractions;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;
using StackExchange.Redis;

namespace RebalanceMesh.BuildingBlocks.Tests;

public sealed class RedisBroadcastTests(RedisServer redis) : IClassFixture<RedisServer>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_message_published_by_one_replica_reaches_the_watchers_of_another()
    {
        await using var first = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        await using var second = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var publisher = new RedisBroadcast<StringValue>(first, "tests:broadcast:a", NullLogger.Instance);
        var receiver = new RedisBroadcast<StringValue>(second, "tests:broadcast:a", NullLogger.Instance);
        await publisher.StartAsync(CancellationToken.None);
        await receiver.StartAsync(CancellationToken.None);
        using var watcher = receiver.Subscribe();

        await publisher.PublishAsync(new StringValue { Value = "plan-1" });

        using var timeout = new CancellationTokenSource(Wait);
        Assert.Equal("plan-1", (await watcher.Reader.ReadAsync(timeout.Token)).Value);
        await publisher.StopAsync(CancellationToken.None);
        await receiver.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task A_replica_started_while_Redis_is_down_starts_and_receives_once_Redis_is_up()
    {
        var down = new RedisServer();
        await down.StartAsync();
        await down.StopAsync(); // its port, nothing listening
        try
        {
            await using var connection = await ConnectionMultiplexer.ConnectAsync(ServiceDefaultsExtensions.RedisOptions($"127.0.0.1:{down.Port}", "broadcast-test"));
            var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
            var receiver = new RedisBroadcast<StringValue>(connection, "tests:broadcast:late", NullLogger.Instance, time);
            await receiver.StartAsync(CancellationToken.None); // does not throw: the host starts
            Assert.False(receiver.Subscribed.IsCompleted);
            using var watcher = receiver.Subscribe();

            await down.StartAsync();
            for (var attempt = 0; attempt < 200 && !receiver.Subscribed.IsCompleted; attempt++)
            {
                time.Advance(RedisBroadcast<StringValue>.SubscribeRetry); // the retry runs on the virtual clock
                await Task.WhenAny(receiver.Subscribed, Task.Delay(50)); // the connection reconnects on its own
            }

            Assert.True(receiver.Subscribed.IsCompletedSuccessfully);
            await using var other = await ConnectionMultiplexer.ConnectAsync(down.ConnectionString);
            var publisher = new RedisBroadcast<StringValue>(other, "tests:broadcast:late", NullLogger.Instance);
            await publisher.StartAsync(CancellationToken.None);
            await publisher.PublishAsync(new StringValue { Value = "after the outage" });
            using var timeout = new CancellationTokenSource(Wait);
            Assert.Equal("after the outage", (await watcher.Reader.ReadAsync(timeout.Token)).Value);
            await publisher.StopAsync(CancellationToken.None);
            await receiver.StopAsync(CancellationToken.None);
        }
        finally
        {
            await down.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_message_of_a_replica_of_the_earlier_version_on_the_plain_channel_still_reaches_the_watchers()
    {
        await using var first = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var receiver = new RedisBroadcast<StringValue>(first, "tests:broadcast:d", NullLogger.Instance);
        await receiver.StartAsync(CancellationToken.None);
        using var watcher = receiver.Subscribe();

        // The earlier version published one message per publish, undelimited, on the channel's own name.
        await redis.Connection!.GetSubscriber().PublishAsync(RedisChannel.Literal("tests:broadcast:d"), new StringValue { Value = "old" }.ToByteArray());

        using var timeout = new CancellationTokenSource(Wait);
        Assert.Equal("old", (await watcher.Reader.ReadAsync(timeout.Token)).Value);
        await receiver.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task A_replica_hands_its_own_messages_to_its_watchers_once_and_the_others_get_them_once_too()
    {
        await using var first = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        await using var second = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var publisher = new RedisBroadcast<StringValue>(first, "tests:broadcast:c", NullLogger.Instance);
        var other = new RedisBroadcast<StringValue>(second, "tests:broadcast:c", NullLogger.Instance);
        await publisher.StartAsync(CancellationToken.None);
        await other.StartAsync(CancellationToken.None);
        using var own = publisher.Subscribe();
        using var theirs = other.Subscribe();

        // One alone, a batch of 2,500 (three publishes), the same text twice, and one from the other replica.
        await publisher.PublishAsync(new StringValue { Value = "one" });
        await publisher.PublishAsync([.. Enumerable.Range(0, 2_500).Select(i => new StringValue { Value = $"b{i}" })]);
        await publisher.PublishAsync(new StringValue { Value = "twice" });
        await publisher.PublishAsync(new StringValue { Value = "twice" });
        await other.PublishAsync(new StringValue { Value = "from the other" });
        await publisher.PublishAsync(new StringValue { Value = "last" });

        string[] expected = ["one", .. Enumerable.Range(0, 2_500).Select(i => $"b{i}"), "twice", "twice", "last"];
        using var timeout = new CancellationTokenSource(Wait);
        var seenByOther = new List<string>();
        while (seenByOther.Count < expected.Length + 1)
        {
            seenByOther.Add((await theirs.Reader.ReadAsync(timeout.Token)).Value);
        }

        // The other replica got every message once (its own included), and its own before the publisher's last.
        Assert.Equal(expected, seenByOther.Where(v => v != "from the other"));
        Assert.Single(seenByOther, "from the other");

        // The publisher's watcher got its own at once, in order, each once; the other replica's message came through
        // Redis. Markers the other replica sends on both channels now arrive after every echo of the publisher's
        // messages (Redis delivers a connection's messages in publish order): a copy handed twice would show before them.
        await other.PublishAsync([new StringValue { Value = "end-1" }, new StringValue { Value = "end-2" }]);
        await other.PublishAsync(new StringValue { Value = "end-3" });
        var seenOwn = new List<string>();
        while (!new[] { "end-1", "end-2", "end-3" }.All(seenOwn.Contains))
        {
            seenOwn.Add((await own.Reader.ReadAsync(timeout.Token)).Value);
        }

        Assert.Equal(expected, seenOwn.Where(v => v != "from the other" && !v.StartsWith("end-", StringComparison.Ordinal)));
        Assert.Single(seenOwn, "from the other");
        await publisher.StopAsync(CancellationToken.None);
        await other.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Stopping_on_a_connection_disposed_under_it_completes_and_ends_the_watchers()
    {
        // ASP.NET's test host may stop a host twice, the first stop disposing the services while the second still
        // runs (dotnet/aspnetcore#40271): the connection then throws ObjectDisposedException from the unsubscribe
        // (a CI run failed so). The proxy makes that window certain: the connection is disposed as the unsubscribe
        // reaches it.
        var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var broadcast = new RedisBroadcast<StringValue>(DisposedOnUnsubscribe.Wrap(connection), "tests:broadcast:b", NullLogger.Instance);
        await broadcast.StartAsync(CancellationToken.None);
        var watcher = broadcast.Subscribe();

        await broadcast.StopAsync(CancellationToken.None);

        Assert.True(watcher.Reader.Completion.IsCompleted);
        await DisposedOnUnsubscribe.Disposal;
        Assert.False(connection.IsConnected);
    }

    /// <summary>A connection whose subscriber starts disposing the connection when asked to unsubscribe, then unsubscribes.</summary>
    public class DisposedOnUnsubscribe : DispatchProxy
    {
        private object _target = null!;
        private ConnectionMultiplexer _connection = null!;
        private static Task? _disposal;

        /// <summary>The disposal the last unsubscribe started.</summary>
        public static Task Disposal => _disposal ?? Task.CompletedTask;

        public static IConnectionMultiplexer Wrap(ConnectionMultiplexer connection)
        {
            var proxy = Create<IConnectionMultiplexer, DisposedOnUnsubscribe>();
            ((DisposedOnUnsubscribe)(object)proxy)._target = connection;
            ((DisposedOnUnsubscribe)(object)proxy)._connection = connection;
            return proxy;
        }

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            var method = targetMethod!;
            if (method.Name == nameof(IConnectionMultiplexer.GetSubscriber))
            {
                var subscriber = Create<ISubscriber, DisposedOnUnsubscribe>();
                ((DisposedOnUnsubscribe)(object)subscriber)._target = method.Invoke(_target, args)!;
                ((DisposedOnUnsubscribe)(object)subscriber)._connection = _connection;
                return subscriber;
            }

            if (method.Name == nameof(ISubscriber.UnsubscribeAsync))
            {
                // Disposal marks the connection disposed at once, then waits for the servers to quit before it lets
                // them go: the unsubscribe runs in between, as the second stop did.
                _disposal = _connection.DisposeAsync().AsTask();
            }

            try
            {
                return method.Invoke(_target, args);
            }
            catch (TargetInvocationException ex) when (ex.InnerException is not null)
            {
                ExceptionDispatchInfo.Throw(ex.InnerException);
                throw;
            }
        }
    }
}
