using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace RebalanceMesh.EventBus;

/// <summary>
/// In-process bus for unit tests and single-process runs. Events go through the same CloudEvent envelope and
/// dispatcher as the other adapters; every published envelope is also kept for inspection.
/// </summary>
public sealed class InMemoryEventBus(IOptions<EventBusOptions> options, TimeProvider time) : IEventBus
{
    private readonly Channel<(string Topic, byte[] Json)> _channel = Channel.CreateUnbounded<(string, byte[])>();

    /// <summary>Every event published, in order.</summary>
    public ConcurrentQueue<CloudEventEnvelope> Published { get; } = new();

    internal ChannelReader<(string Topic, byte[] Json)> Reader => _channel.Reader;

    public Task PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default)
    {
        using var activity = EventDispatcher.StartPublishActivity(topic);
        var settings = options.Value;
        var envelope = CloudEventEnvelope.Create(message, topic, settings.PubSubName, settings.AppId, time.GetUtcNow());
        Published.Enqueue(envelope);
        return _channel.Writer.WriteAsync((topic, envelope.ToJsonBytes()), cancellationToken).AsTask();
    }
}

/// <summary>
/// Delivers the in-memory bus's events to this process's subscriptions, once each: in order within a topic, topics
/// side by side (as the Redis Streams adapter and Dapr deliver them), so a long handler on one topic — a plan executing —
/// does not hold back another — the cancel of that plan.
/// </summary>
public sealed class InMemoryEventPump(InMemoryEventBus bus, EventDispatcher dispatcher) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var topics = new Dictionary<string, Channel<byte[]>>(StringComparer.Ordinal);
        var loops = new List<Task>();
        try
        {
            await foreach (var (topic, json) in bus.Reader.ReadAllAsync(stoppingToken))
            {
                if (!dispatcher.Subscriptions.Any(s => s.Topic == topic))
                {
                    continue;
                }

                if (!topics.TryGetValue(topic, out var queue))
                {
                    queue = topics[topic] = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
                    loops.Add(DeliverAsync(topic, queue.Reader, stoppingToken));
                }

                queue.Writer.TryWrite(json);
            }
        }
        finally
        {
            foreach (var queue in topics.Values)
            {
                queue.Writer.TryComplete();
            }

            await Task.WhenAll(loops).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    private async Task DeliverAsync(string topic, ChannelReader<byte[]> events, CancellationToken stoppingToken)
    {
        await Task.Yield();
        await foreach (var json in events.ReadAllAsync(stoppingToken))
        {
            await dispatcher.DispatchAsync(topic, json, 1, stoppingToken);
        }
    }
}
