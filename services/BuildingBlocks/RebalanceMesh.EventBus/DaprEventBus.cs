using Dapr.Client;
using Google.Protobuf;
using Microsoft.Extensions.Options;

namespace RebalanceMesh.EventBus;

/// <summary>
/// Publishes through the Dapr sidecar. The CloudEvent is built here (content type
/// <c>application/cloudevents+json</c>), so Dapr forwards it as is and subscribers of every adapter see the same envelope.
/// </summary>
public sealed class DaprEventBus(DaprClient dapr, IOptions<EventBusOptions> options, TimeProvider time) : IEventBus
{
    public async Task PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default)
    {
        using var activity = EventDispatcher.StartPublishActivity(topic);
        var settings = options.Value;
        var envelope = CloudEventEnvelope.Create(message, topic, settings.PubSubName, settings.AppId, time.GetUtcNow());
        activity?.SetTag("messaging.message.id", envelope.Id);
        await dapr.PublishByteEventAsync(
            settings.PubSubName,
            topic,
            envelope.ToJsonBytes(),
            CloudEventEnvelope.MediaType,
            cancellationToken: cancellationToken);
    }
}
