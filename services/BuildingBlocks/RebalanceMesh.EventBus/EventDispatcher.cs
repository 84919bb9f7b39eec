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
        CloudEventEnvelope envelope;
        try
        {
            envelope = CloudEventEnvelope.Parse(cloudEventJson.Span);
        }
        catch (MalformedEventException ex)
        {
            _logger.LogWarning(ex, "Dropping malformed event on {Topic}", topic);
            Delivered.Add(1, new("topic", topic), new("outcome", "drop"));
            return DeliveryOutcome.Drop;
        }

        if (!_byTopic.TryGetValue(topic, out var subscription))
        {
            _logger.LogWarning("No subscription for topic {Topic}; dropping event {EventId}", topic, envelope.Id);
            Delivered.Add(1, new("topic", topic), new("outcome", "drop"));
            return DeliveryOutcome.Drop;
        }

        ActivityContext.TryParse(envelope.TraceParent, envelope.TraceState, isRemote: true, out var parent);
        using var activity = ActivitySource.StartActivity($"{topic} process", ActivityKind.Consumer, parent);
        activity?.SetTag("messaging.system", "rebalancemesh");
        activity?.SetTag("messaging.destination.name", topic);
        activity?.SetTag("messaging.operation.type", "process");
        activity?.SetTag("messaging.message.id", envelope.Id);
        activity?.SetTag("messaging.message.delivery_count", deliveryCount);

        if (envelope.Time != DateTimeOffset.MinValue)
        {
            DeliveryLag.Record((_time.GetUtcNow() - envelope.Time).TotalMilliseconds, new KeyValuePair<string, object?>("topic", topic));
        }

        var started = _time.GetTimestamp();
        var context = new EventContext(envelope.Id, topic, envelope.Source, envelope.Time, deliveryCount);
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
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            _logger.LogWarning(ex, "Dropping event {EventId} on {Topic}: {Reason}", envelope.Id, topic, ex.Message);
            Delivered.Add(1, new("topic", topic), new("outcome", "drop"));
            return DeliveryOutcome.Drop;
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
