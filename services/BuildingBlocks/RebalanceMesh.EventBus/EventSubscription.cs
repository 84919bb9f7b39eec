using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;

namespace RebalanceMesh.EventBus;

/// <summary>A topic and the handler that consumes it; registered with <see cref="EventBusExtensions.AddEventSubscription{T,THandler}"/>.</summary>
public sealed class EventSubscription
{
    private readonly Func<IServiceProvider, CloudEventEnvelope, EventContext, CancellationToken, Task> _invoke;

    private EventSubscription(string topic, string messageType, Func<IServiceProvider, CloudEventEnvelope, EventContext, CancellationToken, Task> invoke)
    {
        Topic = topic;
        MessageType = messageType;
        _invoke = invoke;
    }

    public string Topic { get; }

    /// <summary>Full protobuf name of the message the topic carries.</summary>
    public string MessageType { get; }

    public static EventSubscription For<T, THandler>(string topic)
        where T : IMessage<T>, new()
        where THandler : IEventHandler<T>
    {
        var parser = new MessageParser<T>(() => new T());
        return new EventSubscription(topic, new T().Descriptor.FullName, async (services, envelope, context, ct) =>
        {
            var message = envelope.ReadData(parser);
            var handler = services.GetRequiredService<THandler>();
            await handler.HandleAsync(message, context, ct);
        });
    }

    internal Task InvokeAsync(IServiceProvider scopedServices, CloudEventEnvelope envelope, EventContext context, CancellationToken ct) =>
        _invoke(scopedServices, envelope, context, ct);
}
