using System.Collections.Concurrent;
using System.Threading.Channels;
using RebalanceMesh.Contracts.Planning.V1;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>
/// Fans plan changes out to WatchPlans streams. Changes arrive on a Redis channel that every planning replica
/// publishes to, so a watcher on one replica sees plans changed by another.
/// </summary>
public sealed class PlanWatchers(IConnectionMultiplexer redis, ILogger<PlanWatchers> logger) : IHostedService
{
    private readonly ConcurrentDictionary<Guid, Channel<Plan>> _watchers = new();

    public (Guid Id, ChannelReader<Plan> Reader) Subscribe()
    {
        var channel = Channel.CreateBounded<Plan>(new BoundedChannelOptions(1_000) { FullMode = BoundedChannelFullMode.DropOldest });
        var id = Guid.NewGuid();
        _watchers[id] = channel;
        return (id, channel.Reader);
    }

    public void Unsubscribe(Guid id)
    {
        if (_watchers.TryRemove(id, out var channel))
        {
            channel.Writer.TryComplete();
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var queue = await redis.GetSubscriber().SubscribeAsync(PlanningStore.PlanUpdatesChannel);
        queue.OnMessage(message =>
        {
            try
            {
                var plan = Plan.Parser.ParseFrom((byte[])message.Message!);
                foreach (var watcher in _watchers.Values)
                {
                    watcher.Writer.TryWrite(plan);
                }
            }
            catch (Google.Protobuf.InvalidProtocolBufferException ex)
            {
                logger.LogWarning(ex, "Ignoring a malformed plan update");
            }
        });
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        foreach (var id in _watchers.Keys)
        {
            Unsubscribe(id);
        }

        return redis.GetSubscriber().UnsubscribeAsync(PlanningStore.PlanUpdatesChannel);
    }
}
