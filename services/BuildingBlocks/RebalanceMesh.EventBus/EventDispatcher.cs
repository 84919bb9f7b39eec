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
    /// Reads an event once: its envelope, its subscription, its message and the ordering key its subscription defines —
    /// or, when it cannot be delivered (not a CloudEvent, no subscription, data that is not the topic's message), why;
    /// the delivery reports that. Adapters read an event on arrival (its key picks its lane) and deliver what they read.
    /// </summary>
    public IncomingEvent Read(string topic, ReadOnlyMemory<byte> cloudEventJson)
    {
        CloudEventEnvelope envelope;
        try
        {
            envelope = CloudEventEnvelope.Parse(cloudEventJson.Span);
        }
        catch (MalformedEventException ex)
        {
            return new IncomingEvent(topic, null, null, null, ex);
        }

        if (!_byTopic.TryGetValue(topic, out var subscription))
        {
            return new IncomingEvent(topic, envelope, null, null, null);
        }

        try
        {
            return new IncomingEvent(topic, envelope, subscription, subscription.Read(envelope), null);
        }
        catch (MalformedEventException ex)
        {
            return new IncomingEvent(topic, envelope, subscription, null, ex);
        }
    }

    public Task<DeliveryOutcome> DispatchAsync(string topic, ReadOnlyMemory<byte> cloudEventJson, int deliveryCount, CancellationToken cancellationToken) =>
        DispatchAsync(Read(topic, cloudEventJson), deliveryCount, cancellationToken);

    public async Task<DeliveryOutcome> DispatchAsync(IncomingEvent incoming, int deliveryCount, CancellationToken cancellationToken) =>
        Undeliverable(incoming, deliveryCount) is { } dropped ? dropped : await DeliverOneAsync(incoming, deliveryCount, cancellationToken);

    /// <summary>
    /// Delivers several events of one topic, in their order, and returns each one's outcome. A subscription whose handler
    /// takes batches (<see cref="EventSubscription.Batches"/>) gets every deliverable event in one call, each in a consumer
    /// span of its own (the child of its publisher's span, lasting the batch); when that call throws, each event is
    /// delivered again on its own, so only a bad event is retried or dropped. Other subscriptions get one at a time.
    /// </summary>
    public async Task<DeliveryOutcome[]> DispatchBatchAsync(IReadOnlyList<(IncomingEvent Event, int DeliveryCount)> events, CancellationToken cancellationToken)
    {
        var outcomes = new DeliveryOutcome[events.Count];
        var subscription = events.Count > 1 ? events.Select(e => e.Event.Subscription).FirstOrDefault(s => s is not null) : null;
        if (subscription is not { Batches: true } || events.Any(e => e.Event.Topic != subscription.Topic))
        {
            for (var i = 0; i < events.Count; i++)
            {
                outcomes[i] = await DispatchAsync(events[i].Event, events[i].DeliveryCount, cancellationToken);
            }

            return outcomes;
        }

        var topic = subscription.Topic;
        var deliverable = new List<(int Index, IncomingEvent Event, EventContext Context)>(events.Count);
        for (var i = 0; i < events.Count; i++)
        {
            if (Undeliverable(events[i].Event, events[i].DeliveryCount) is { } dropped)
            {
                outcomes[i] = dropped;
            }
            else
            {
                deliverable.Add((i, events[i].Event, ContextOf(topic, events[i].Event.Envelope!, events[i].DeliveryCount)));
            }
        }

        if (deliverable.Count == 0)
        {
            return outcomes;
        }

        var activities = new List<Activity>(deliverable.Count);
        var started = _time.GetTimestamp();
        try
        {
            foreach (var (_, incoming, context) in deliverable)
            {
                if (StartProcessActivity(topic, incoming.Envelope!, context.DeliveryCount) is { } activity)
                {
                    activity.SetTag("messaging.batch.message_count", deliverable.Count);
                    activities.Add(activity);
                }
            }

            using (await _keys.AcquireAllAsync(deliverable.Select(e => e.Event.Key).OfType<string>().Select(key => topic + "\n" + key), cancellationToken))
            {
                await using var scope = _scopes.CreateAsyncScope();
                await subscription.HandleBatchAsync(scope.ServiceProvider, deliverable.Select(e => (e.Event.Message!, e.Context)).ToArray(), cancellationToken);
            }

            Delivered.Add(deliverable.Count, new("topic", topic), new("outcome", "success"));
            foreach (var (index, _, _) in deliverable)
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

            _logger.LogWarning(ex, "Handling {Count} events of {Topic} together failed; delivering each on its own", deliverable.Count, topic);
            foreach (var (index, incoming, context) in deliverable)
            {
                outcomes[index] = await DeliverOneAsync(incoming, context.DeliveryCount, cancellationToken, context);
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

    /// <summary>The outcome of an event that cannot be delivered (dropped, logged and counted), or null.</summary>
    private DeliveryOutcome? Undeliverable(IncomingEvent incoming, int deliveryCount)
    {
        var topic = incoming.Topic;
        if (incoming.Envelope is null)
        {
            _logger.LogWarning(incoming.Malformed, "Dropping malformed event on {Topic}", topic);
        }
        else if (incoming.Subscription is null)
        {
            _logger.LogWarning("No subscription for topic {Topic}; dropping event {EventId}", topic, incoming.Envelope.Id);
        }
        else if (incoming.Malformed is { } ex)
        {
            using var activity = StartProcessActivity(topic, incoming.Envelope, deliveryCount);
            return Dropped(topic, incoming.Envelope.Id, ex, activity);
        }
        else
        {
            return null;
        }

        Delivered.Add(1, new("topic", topic), new("outcome", "drop"));
        return DeliveryOutcome.Drop;
    }

    private EventContext ContextOf(string topic, CloudEventEnvelope envelope, int deliveryCount)
    {
        if (envelope.Time != DateTimeOffset.MinValue)
        {
            DeliveryLag.Record((_time.GetUtcNow() - envelope.Time).TotalMilliseconds, new KeyValuePair<string, object?>("topic", topic));
        }

        return new EventContext(envelope.Id, topic, envelope.Source, envelope.Time, deliveryCount);
    }

    private DeliveryOutcome Dropped(string topic, string eventId, MalformedEventException ex, Activity? activity)
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

    /// <summary>Delivers one deliverable event to its handler, in its consumer span, under its ordering key's lock.</summary>
    /// <param name="context">The event's context when it was made before (a batch's event delivered again alone).</param>
    private async Task<DeliveryOutcome> DeliverOneAsync(IncomingEvent incoming, int deliveryCount, CancellationToken cancellationToken, EventContext? context = null)
    {
        var (subscription, envelope, message) = (incoming.Subscription!, incoming.Envelope!, incoming.Message!);
        var topic = subscription.Topic;
        using var activity = StartProcessActivity(topic, envelope, deliveryCount);
        var started = _time.GetTimestamp();
        context ??= ContextOf(topic, envelope, deliveryCount);
        try
        {
            using var held = await _keys.AcquireAllAsync(incoming.Key is { } key ? [topic + "\n" + key] : [], cancellationToken);
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

/// <summary>
/// An event as read off a broker (<see cref="EventDispatcher.Read"/>): read once, its ordering key picks its lane and
/// its message is what the handler gets.
/// </summary>
public sealed class IncomingEvent
{
    internal IncomingEvent(string topic, CloudEventEnvelope? envelope, EventSubscription? subscription, IMessage? message, MalformedEventException? malformed)
    {
        Topic = topic;
        Envelope = envelope;
        Subscription = subscription;
        Message = message;
        Malformed = malformed;
        Key = message is null ? null : subscription?.KeyOf(message);
    }

    public string Topic { get; }

    /// <summary>The ordering key its subscription defines, or null (none, or not deliverable: the delivery says why).</summary>
    public string? Key { get; }

    internal CloudEventEnvelope? Envelope { get; }

    internal EventSubscription? Subscription { get; }

    internal IMessage? Message { get; }

    internal MalformedEventException? Malformed { get; }
}
