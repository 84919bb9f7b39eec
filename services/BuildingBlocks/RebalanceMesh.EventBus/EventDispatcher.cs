using Google.Protobuf;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace RebalanceMesh.EventBus;

/// <summary>Outcome of delivering one event, in the terms Dapr's subscription protocol uses.</summary>
public enum DeliveryOutcome
{
    /// <summary>Handled; acknowledge.</summary>
    Success,
    /// <summary>Failed transiently; deliver again later.</summary>
    Retry,
    /// <summary>Can never succeed (malformed, unknown topic); dead-letter and acknowledge.</summary>
    Drop,
}

/// <summary>
/// Delivers a raw CloudEvent to its subscription, in a consumer span that is the child of the publisher's span,
/// inside a DI scope. Shared by every adapter so all deliver identically. Events of one subscription's ordering key
/// are handled one at a time, whichever adapter delivers them and however concurrently (Dapr pushes a subscription's
/// events through several workers at once).
/// </summary>
public sealed class EventDispatcher
{
    internal static readonly ActivitySource ActivitySource = new("RebalanceMesh.EventBus");
    internal static readonly Meter Meter = new("RebalanceMesh.EventBus");
    private static readonly Counter<long> Delivered = Meter.CreateCounter<long>("rebalancemesh.events.delivered", description: "Events delivered to handlers, by topic and outcome.");
    private static readonly Histogram<double> HandlerDuration = Meter.CreateHistogram<double>("rebalancemesh.events.handler.duration", "ms", "Time spent in event handlers.");
    private static readonly Histogram<double> DeliveryLag = Meter.CreateHistogram<double>("rebalancemesh.events.lag", "ms", "Time from publish to handler start.");

    private readonly IServiceScopeFactory _scopes;
    private readonly ILogger<EventDispatcher> _logger;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, EventSubscription> _byTopic;
    private readonly KeyedLock _keys = new();

    public EventDispatcher(IEnumerable<EventSubscription> subscriptions, IServiceScopeFactory scopes, ILogger<EventDispatcher> logger, TimeProvider time)
    {
        _scopes = scopes;
        _logger = logger;
        _time = time;
        _byTopic = subscriptions.ToDictionary(s => s.Topic, StringComparer.Ordinal);
    }

    public IReadOnlyCollection<EventSubscription> Subscriptions => _byTopic.Values;

    /// <summary>
    /// The ordering key of an event as its subscription defines it, or null (no key, no subscription, or not readable:
    /// the delivery itself says why).
    /// </summary>
    public string? OrderingKeyOf(string topic, ReadOnlyMemory<byte> cloudEventJson)
    {
        if (!_byTopic.TryGetValue(topic, out var subscription))
        {
            return null;
        }

        try
        {
            return subscription.KeyOf(subscription.Read(CloudEventEnvelope.Parse(cloudEventJson.Span)));
        }
        catch (MalformedEventException)
        {
            return null;
        }
    }

    public async Task<DeliveryOutcome> DispatchAsync(string topic, ReadOnlyMemory<byte> cloudEventJson, int deliveryCount, CancellationToken cancellationToken)
    {
        var (outcome, subscription, envelope) = Open(topic, cloudEventJson);
        return outcome is { } dropped ? dropped : await DeliverOneAsync(subscription!, envelope!, deliveryCount, cancellationToken);
    }

    /// <summary>
    /// Delivers several events of one topic, in their order, and returns each one's outcome. A subscription whose handler
    /// takes batches (<see cref="EventSubscription.Batches"/>) gets every readable event in one call, each in a consumer
    /// span of its own (the child of its publisher's span, lasting the batch); when that call throws, each event is
    /// delivered again on its own, so only a bad event is retried or dropped. Other subscriptions get one at a time.
    /// </summary>
    public async Task<DeliveryOutcome[]> DispatchBatchAsync(string topic, IReadOnlyList<(ReadOnlyMemory<byte> CloudEventJson, int DeliveryCount)> events, CancellationToken cancellationToken)
    {
        var outcomes = new DeliveryOutcome[events.Count];
        if (events.Count <= 1 || !_byTopic.TryGetValue(topic, out var subscription) || !subscription.Batches)
        {
            for (var i = 0; i < events.Count; i++)
            {
                outcomes[i] = await DispatchAsync(topic, events[i].CloudEventJson, events[i].DeliveryCount, cancellationToken);
            }

            return outcomes;
        }

        var readable = new List<(int Index, CloudEventEnvelope Envelope, IMessage Message, EventContext Context)>(events.Count);
        for (var i = 0; i < events.Count; i++)
        {
            var (dropped, _, envelope) = Open(topic, events[i].CloudEventJson);
            if (dropped is { } outcome)
            {
                outcomes[i] = outcome;
                continue;
            }

            try
            {
                readable.Add((i, envelope!, subscription.Read(envelope!), ContextOf(topic, envelope!, events[i].DeliveryCount)));
            }
            catch (MalformedEventException ex)
            {
                outcomes[i] = Dropped(topic, envelope!.Id, ex);
            }
        }

        if (readable.Count == 0)
        {
            return outcomes;
        }

        var activities = new List<Activity>(readable.Count);
        var started = _time.GetTimestamp();
        try
        {
            foreach (var (_, envelope, _, context) in readable)
            {
                if (StartProcessActivity(topic, envelope, context.DeliveryCount) is { } activity)
                {
                    activity.SetTag("messaging.batch.message_count", readable.Count);
                    activities.Add(activity);
                }
            }

            var keys = readable.Select(e => subscription.KeyOf(e.Message)).OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
            var held = new List<IDisposable>(keys.Length);
            try
            {
                // Every key's lock, in one order, so two batches sharing keys cannot deadlock.
                foreach (var key in keys)
                {
                    held.Add(await _keys.AcquireAsync(topic + "\n" + key, cancellationToken));
                }

                await using var scope = _scopes.CreateAsyncScope();
                await subscription.HandleBatchAsync(scope.ServiceProvider, readable.Select(e => (e.Message, e.Context)).ToArray(), cancellationToken);
            }
            finally
            {
                held.ForEach(h => h.Dispose());
            }

            Delivered.Add(readable.Count, new("topic", topic), new("outcome", "success"));
            foreach (var (index, _, _, _) in readable)
            {
                outcomes[index] = DeliveryOutcome.Success;
            }
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            foreach (var activity in activities)
            {
                activity.SetStatus(ActivityStatusCode.Error, "batch failed; delivered again one at a time");
            }

            _logger.LogWarning(ex, "Handling {Count} events of {Topic} together failed; delivering each on its own", readable.Count, topic);
            foreach (var (index, envelope, _, context) in readable)
            {
                outcomes[index] = await DeliverOneAsync(subscription, envelope, context.DeliveryCount, cancellationToken, context);
            }
        }
        finally
        {
            for (var i = activities.Count - 1; i >= 0; i--)
            {
                activities[i].Dispose();
            }

            HandlerDuration.Record(_time.GetElapsedTime(started).TotalMilliseconds, new KeyValuePair<string, object?>("topic", topic));
        }

        return outcomes;
    }

    /// <summary>The event's envelope and subscription, or the outcome of one that cannot be delivered (dropped).</summary>
    private (DeliveryOutcome? Dropped, EventSubscription? Subscription, CloudEventEnvelope? Envelope) Open(string topic, ReadOnlyMemory<byte> cloudEventJson)
    {
        CloudEventEnvelope envelope;
        try
        {
            envelope = CloudEventEnvelope.Parse(cloudEventJson.Span);
        }
        catch (MalformedEventException ex)
        {
            _logger.LogWarning(ex, "Dropping malformed event on {Topic}", topic);
            Delivered.Add(1, new("topic", topic), new("outcome", "drop"));
            return (DeliveryOutcome.Drop, null, null);
        }

        if (!_byTopic.TryGetValue(topic, out var subscription))
        {
            _logger.LogWarning("No subscription for topic {Topic}; dropping event {EventId}", topic, envelope.Id);
            Delivered.Add(1, new("topic", topic), new("outcome", "drop"));
            return (DeliveryOutcome.Drop, null, envelope);
        }

        return (null, subscription, envelope);
    }

    private EventContext ContextOf(string topic, CloudEventEnvelope envelope, int deliveryCount)
    {
        if (envelope.Time != DateTimeOffset.MinValue)
        {
            DeliveryLag.Record((_time.GetUtcNow() - envelope.Time).TotalMilliseconds, new KeyValuePair<string, object?>("topic", topic));
        }

        return new EventContext(envelope.Id, topic, envelope.Source, envelope.Time, deliveryCount);
    }

    private DeliveryOutcome Dropped(string topic, string eventId, MalformedEventException ex, Activity? activity = null)
    {
        activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
        _logger.LogWarning(ex, "Dropping event {EventId} on {Topic}: {Reason}", eventId, topic, ex.Message);
        Delivered.Add(1, new("topic", topic), new("outcome", "drop"));
        return DeliveryOutcome.Drop;
    }

    private static Activity? StartProcessActivity(string topic, CloudEventEnvelope envelope, int deliveryCount)
    {
        ActivityContext.TryParse(envelope.TraceParent, envelope.TraceState, isRemote: true, out var parent);
        var activity = ActivitySource.StartActivity($"{topic} process", ActivityKind.Consumer, parent);
        activity?.SetTag("messaging.system", "rebalancemesh");
        activity?.SetTag("messaging.destination.name", topic);
        activity?.SetTag("messaging.operation.type", "process");
        activity?.SetTag("messaging.message.id", envelope.Id);
        activity?.SetTag("messaging.message.delivery_count", deliveryCount);
        return activity;
    }

    /// <summary>Delivers one event to its handler, in its consumer span, under its ordering key's lock.</summary>
    /// <param name="context">The event's context when it was made before (a batch's event delivered again alone).</param>
    private async Task<DeliveryOutcome> DeliverOneAsync(EventSubscription subscription, CloudEventEnvelope envelope, int deliveryCount, CancellationToken cancellationToken, EventContext? context = null)
    {
        var topic = subscription.Topic;
        using var activity = StartProcessActivity(topic, envelope, deliveryCount);
        var started = _time.GetTimestamp();
        context ??= ContextOf(topic, envelope, deliveryCount);
        try
        {
            var message = subscription.Read(envelope);
            using var held = subscription.KeyOf(message) is { } key ? await _keys.AcquireAsync(topic + "\n" + key, cancellationToken) : null;
            await using var scope = _scopes.CreateAsyncScope();
            await subscription.HandleAsync(scope.ServiceProvider, message, context, cancellationToken);
            Delivered.Add(1, new("topic", topic), new("outcome", "success"));
            return DeliveryOutcome.Success;
        }
        catch (MalformedEventException ex)
        {
            return Dropped(topic, envelope.Id, ex, activity);
        }
        catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
        {
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            _logger.LogError(ex, "Handler for {Topic} failed on event {EventId} (delivery {DeliveryCount}); will retry", topic, envelope.Id, deliveryCount);
            Delivered.Add(1, new("topic", topic), new("outcome", "retry"));
            return DeliveryOutcome.Retry;
        }
        finally
        {
            HandlerDuration.Record(_time.GetElapsedTime(started).TotalMilliseconds, new KeyValuePair<string, object?>("topic", topic));
        }
    }

    /// <summary>Starts the producer span of a publish; adapters call it so the CloudEvent carries its context.</summary>
    internal static Activity? StartPublishActivity(string topic)
    {
        var activity = ActivitySource.StartActivity($"{topic} publish", ActivityKind.Producer);
        activity?.SetTag("messaging.system", "rebalancemesh");
        activity?.SetTag("messaging.destination.name", topic);
        activity?.SetTag("messaging.operation.type", "publish");
        return activity;
    }
}
