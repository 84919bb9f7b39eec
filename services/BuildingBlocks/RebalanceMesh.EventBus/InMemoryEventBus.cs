using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
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

    private readonly Lock _gate = new();
    private int _undelivered;
    private TaskCompletionSource _allDelivered = NewSignal(done: true);

    internal ChannelReader<(string Topic, byte[] Json)> Reader => _channel.Reader;

    public Task PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default)
    {
        using var activity = EventDispatcher.StartPublishActivity(topic);
        var settings = options.Value;
        var envelope = CloudEventEnvelope.Create(message, topic, settings.PubSubName, settings.AppId, time.GetUtcNow());
        Published.Enqueue(envelope);
        lock (_gate)
        {
            if (_undelivered++ == 0)
            {
                _allDelivered = NewSignal(done: false);
            }
        }

        return _channel.Writer.WriteAsync((topic, envelope.ToJsonBytes()), cancellationToken).AsTask();
    }

    /// <summary>
    /// Completes once every event published so far — and every event their handlers published meanwhile — has been
    /// handled (or has no subscription here). Tests await it instead of sleeping before they assert that nothing more happened.
    /// </summary>
    public Task WhenDeliveredAsync()
    {
        lock (_gate)
        {
            return _allDelivered.Task;
        }
    }

    /// <summary>The pump has finished with one event (handled, dropped, or failed).</summary>
    internal void MarkDelivered()
    {
        TaskCompletionSource? done = null;
        lock (_gate)
        {
            if (--_undelivered == 0)
            {
                done = _allDelivered;
            }
        }

        done?.TrySetResult();
    }

    private static TaskCompletionSource NewSignal(bool done)
    {
        var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (done)
        {
            signal.SetResult();
        }

        return signal;
    }
}

/// <summary>
/// Delivers the in-memory bus's events to this process's subscriptions, once each, as the Redis Streams adapter does:
/// topics side by side (a long handler on one topic — a plan executing — does not hold back another — the cancel of
/// that plan), and within a topic through <see cref="EventBusOptions.Concurrency"/> lanes, events of one ordering key
/// in one lane in publish order.
/// </summary>
public sealed class InMemoryEventPump(InMemoryEventBus bus, EventDispatcher dispatcher, IOptions<EventBusOptions> options, ILogger<InMemoryEventPump> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var topics = new Dictionary<string, DeliveryLanes<IncomingEvent>>(StringComparer.Ordinal);
        try
        {
            await foreach (var (topic, json) in bus.Reader.ReadAllAsync(stoppingToken))
            {
                if (!dispatcher.Subscriptions.Any(s => s.Topic == topic))
                {
                    bus.MarkDelivered();
                    continue;
                }

                if (!topics.TryGetValue(topic, out var lanes))
                {
                    lanes = topics[topic] = new DeliveryLanes<IncomingEvent>(
                        options.Value.Concurrency,
                        async (item, ct) =>
                        {
                            try
                            {
                                await dispatcher.DispatchAsync(item, 1, ct);
                            }
                            finally
                            {
                                bus.MarkDelivered();
                            }
                        },
                        (_, ex) => logger.LogWarning(ex, "In-memory delivery on {Topic} failed", topic),
                        stoppingToken);
                }

                var incoming = dispatcher.Read(topic, json);
                await lanes.EnqueueAsync(incoming.Key, incoming, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
        finally
        {
            foreach (var lanes in topics.Values)
            {
                await lanes.DisposeAsync();
            }
        }
    }
}
