using Google.Protobuf;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace RebalanceMesh.EventBus;

/// <summary>
/// Publishes exactly as Dapr's pubsub.redis component does: <c>XADD &lt;topic&gt; MAXLEN ~ N * data &lt;CloudEvent JSON&gt;</c>,
/// so services run under Dapr and services run locally share one Redis.
/// </summary>
public sealed class RedisStreamsEventBus(IConnectionMultiplexer redis, IOptions<EventBusOptions> options, TimeProvider time) : IEventBus
{
    /// <summary>Name of the stream field that holds the CloudEvent, as Dapr writes it.</summary>
    public const string DataField = "data";

    /// <summary>
    /// Pipelined: each publish issues its XADD before its first await, and one connection writes commands in the order
    /// they were issued, so the stream holds the messages in their order.
    /// </summary>
    public Task PublishAllAsync(string topic, IReadOnlyList<IMessage> messages, CancellationToken cancellationToken = default) =>
        Task.WhenAll(messages.Select(message => PublishAsync(topic, message, cancellationToken)).ToArray());

    public async Task PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default)
    {
        using var activity = EventDispatcher.StartPublishActivity(topic);
        var settings = options.Value;
        var envelope = CloudEventEnvelope.Create(message, topic, settings.PubSubName, settings.AppId, time.GetUtcNow());
        activity?.SetTag("messaging.message.id", envelope.Id);
        var id = await redis.GetDatabase().StreamAddAsync(
            topic,
            DataField,
            envelope.ToJsonBytes(),
            maxLength: settings.MaxStreamLength,
            useApproximateMaxLength: true).WaitAsync(cancellationToken);
        activity?.SetTag("messaging.redis.stream_id", id.ToString());
    }
}
