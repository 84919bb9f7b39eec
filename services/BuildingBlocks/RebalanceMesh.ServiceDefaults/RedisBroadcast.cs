using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Fans protobuf messages out to server-streaming RPCs across every replica of a service: each replica publishes
/// changes on one Redis pub/sub channel, <c>{channel}:batch</c>, and hands every message it receives there to its local
/// watchers. A publish is one or more length-delimited messages (a breach storm's alerts go a thousand to a publish);
/// one channel keeps a replica's messages in the order it published them (two channels have two delivery queues, and
/// a message published after a batch was seen before the batch's end). The plain <c>{channel}</c> is still read, one
/// message per publish, for a replica of an earlier version during a rolling upgrade. A
/// watcher too slow to keep up loses its oldest messages beyond <see cref="WatcherCapacity"/>, never blocks the others.
/// A replica hands what it publishes to its own watchers at once, and drops the copy Redis sends back (recognised by
/// the payload's SHA-256): its watchers do not wait for the round trip, nor parse their own messages again.
/// </summary>
public sealed class RedisBroadcast<T> : IHostedService, IDisposable
    where T : IMessage<T>, new()
{
    /// <summary>Messages buffered per watcher: a burst this large reaches a watcher whole.</summary>
    public const int WatcherCapacity = 65_536;

    /// <summary>Messages per batch publish.</summary>
    private const int BatchSize = 1_000;

    private readonly IConnectionMultiplexer _redis;
    private readonly RedisChannel _channel;
    private readonly RedisChannel _batchChannel;
    private readonly ILogger _logger;
    private readonly MessageParser<T> _parser = new(() => new T());
    private readonly ConcurrentDictionary<Guid, Channel<T>> _watchers = new();

    /// <summary>Payloads this replica published whose copy from Redis has not come back yet, by digest.</summary>
    private readonly ConcurrentDictionary<(long, long, long, long), int> _echoes = new();

    /// <summary>Echoes awaited at most: past it they are forgotten (a copy that then comes back is handed twice).</summary>
    private const int MaxEchoes = 100_000;

    /// <summary>How often subscribing is tried again while Redis is unreachable.</summary>
    public static readonly TimeSpan SubscribeRetry = TimeSpan.FromSeconds(1);

    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private ChannelMessageQueue? _queue;
    private ChannelMessageQueue? _batches;

    public RedisBroadcast(IConnectionMultiplexer redis, string channel, ILogger logger, TimeProvider? time = null)
    {
        _redis = redis;
        _channel = RedisChannel.Literal(channel);
        _batchChannel = RedisChannel.Literal(channel + ":batch");
        _logger = logger;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Completes once both channels are subscribed (at once when Redis answered at start).</summary>
    public Task Subscribed { get; private set; } = Task.CompletedTask;

    /// <summary>Starts receiving; dispose the returned subscription to stop.</summary>
    public Subscription Subscribe()
    {
        var channel = Channel.CreateBounded<T>(new BoundedChannelOptions(WatcherCapacity) { FullMode = BoundedChannelFullMode.DropOldest });
        var id = Guid.NewGuid();
        _watchers[id] = channel;
        return new Subscription(this, id, channel.Reader);
    }

    public Task PublishAsync(T message) => PublishAsync([message]);

    /// <summary>Publishes many messages in few publishes (<see cref="BatchSize"/> each), in order.</summary>
    public async Task PublishAsync(IReadOnlyCollection<T> messages)
    {
        // This replica's watchers get them all at once; the publishes follow.
        foreach (var message in messages)
        {
            Hand(message);
        }

        foreach (var chunk in messages.Chunk(BatchSize))
        {
            using var buffer = new MemoryStream();
            foreach (var message in chunk)
            {
                message.WriteDelimitedTo(buffer);
            }

            await PublishAsync(buffer.ToArray());
        }
    }

    /// <summary>Publishes a payload whose messages this replica's watchers already have, awaiting its echo.</summary>
    private async Task PublishAsync(byte[] payload)
    {
        if (_echoes.Count >= MaxEchoes)
        {
            _echoes.Clear();
        }

        var digest = Digest(payload);
        _echoes.AddOrUpdate(digest, 1, (_, count) => count + 1);

        try
        {
            await _redis.GetSubscriber().PublishAsync(_batchChannel, payload);
        }
        catch
        {
            Forget(digest); // nothing comes back
            throw;
        }
    }

    private static (long, long, long, long) Digest(ReadOnlySpan<byte> payload)
    {
        Span<byte> hash = stackalloc byte[32];
        System.Security.Cryptography.SHA256.HashData(payload, hash);
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(hash);
        return (words[0], words[1], words[2], words[3]);
    }

    /// <summary>True when <paramref name="digest"/> was awaited as the echo of this replica's publish (and is no more).</summary>
    private bool Forget((long, long, long, long) digest)
    {
        while (_echoes.TryGetValue(digest, out var count))
        {
            if (count <= 1 ? _echoes.TryRemove(new KeyValuePair<(long, long, long, long), int>(digest, count)) : _echoes.TryUpdate(digest, count - 1, count))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Subscribes to both channels. Redis may be unreachable when the host starts (its connection keeps trying): then the
    /// host starts anyway — its readiness says Redis is down — and subscribing is tried again every
    /// <see cref="SubscribeRetry"/> in the background until it succeeds, instead of failing the host's start.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (!await TrySubscribeAsync())
        {
            _logger.LogWarning("Cannot subscribe to {Channel} yet (Redis unreachable); retrying every {Interval} s", _batchChannel, SubscribeRetry.TotalSeconds);
            Subscribed = RetrySubscribeAsync(_stopping.Token);
        }
    }

    private async Task RetrySubscribeAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(SubscribeRetry, _time, stopping);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            if (await TrySubscribeAsync())
            {
                _logger.LogInformation("Subscribed to {Channel}", _batchChannel);
                return;
            }
        }
    }

    /// <summary>Subscribes to what is not subscribed yet; false while Redis does not answer.</summary>
    private async Task<bool> TrySubscribeAsync()
    {
        try
        {
            if (_queue is null)
            {
                _queue = await _redis.GetSubscriber().SubscribeAsync(_channel);
                _queue.OnMessage(message => Receive(message.Message, batch: false));
            }

            if (_batches is null)
            {
                _batches = await _redis.GetSubscriber().SubscribeAsync(_batchChannel);
                _batches.OnMessage(message => Receive(message.Message, batch: true));
            }

            return true;
        }
        catch (RedisException)
        {
            return false;
        }
    }

    private void Receive(RedisValue payload, bool batch)
    {
        try
        {
            var bytes = (byte[])payload!;
            if (Forget(Digest(bytes)))
            {
                return; // this replica's own, handed to its watchers when published
            }

            if (!batch)
            {
                Hand(_parser.ParseFrom(bytes));
                return;
            }

            using var stream = new MemoryStream(bytes, writable: false);
            while (stream.Position < stream.Length)
            {
                Hand(_parser.ParseDelimitedFrom(stream));
            }
        }
        catch (InvalidProtocolBufferException ex)
        {
            _logger.LogWarning(ex, "Ignoring a malformed message on {Channel}", batch ? _batchChannel : _channel);
        }
    }

    private void Hand(T message)
    {
        foreach (var watcher in _watchers.Values)
        {
            watcher.Writer.TryWrite(message);
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        foreach (var id in _watchers.Keys)
        {
            Remove(id);
        }

        try
        {
            await _redis.GetSubscriber().UnsubscribeAsync(_channel);
            await _redis.GetSubscriber().UnsubscribeAsync(_batchChannel);
        }
        catch (RedisConnectionException)
        {
            // Stopping while Redis is unreachable: the subscription went with the connection; nothing to undo.
        }
        catch (ObjectDisposedException)
        {
            // The host was stopped twice and its first stop already disposed the connection (ASP.NET's test host does
            // this: dotnet/aspnetcore#40271); the subscription went with it.
        }
    }

    /// <summary>
    /// Cancels, not disposes, the stopping token (as BackgroundService treats its own): a host may be stopped again after
    /// it was disposed (ASP.NET's test host: dotnet/aspnetcore#40271), and StopAsync then cancels it once more.
    /// </summary>
    public void Dispose() => _stopping.Cancel();

    private void Remove(Guid id)
    {
        if (_watchers.TryRemove(id, out var channel))
        {
            channel.Writer.TryComplete();
        }
    }

    /// <summary>One watcher's view of the broadcast.</summary>
    public sealed class Subscription(RedisBroadcast<T> owner, Guid id, ChannelReader<T> reader) : IDisposable
    {
        public ChannelReader<T> Reader { get; } = reader;

        public void Dispose() => owner.Remove(id);
    }
}

/// <summary>Registration of <see cref="RedisBroadcast{T}"/>.</summary>
public static class RedisBroadcastExtensions
{
    public static IServiceCollection AddRedisBroadcast<T>(this IServiceCollection services, string channel)
        where T : IMessage<T>, new()
    {
        services.AddSingleton(sp => new RedisBroadcast<T>(
            sp.GetRequiredService<IConnectionMultiplexer>(),
            channel,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger("RebalanceMesh.Broadcast." + typeof(T).Name),
            sp.GetService<TimeProvider>()));
        services.AddHostedService(sp => sp.GetRequiredService<RedisBroadcast<T>>());
        return services;
    }
}
