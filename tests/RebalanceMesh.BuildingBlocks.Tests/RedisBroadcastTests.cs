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
