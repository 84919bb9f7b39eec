using Google.Protobuf;

namespace RebalanceMesh.EventBus;

/// <summary>Publishes protobuf events as CloudEvents on a pub/sub topic.</summary>
public interface IEventBus
{
    /// <summary>
    /// Publishes <paramref name="message"/> on <paramref name="topic"/>. Returns once the broker has the event
    /// (Redis XADD acknowledged, Dapr accepted), so a caller that stores state first and publishes second never
    /// reports success for an event that was lost.
    /// </summary>
    Task PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default);

    /// <summary>
    /// Publishes <paramref name="messages"/> on <paramref name="topic"/> in their order (a consumer sees them in that
    /// order); returns once the broker has every one. By default one after another; a broker that keeps the order of
    /// pipelined writes sends them together.
    /// </summary>
    async Task PublishAllAsync(string topic, IReadOnlyList<IMessage> messages, CancellationToken cancellationToken = default)
    {
        foreach (var message in messages)
        {
            await PublishAsync(topic, message, cancellationToken);
        }
    }
}

/// <summary>Handles one event type. Throwing retries the event (bounded); a malformed event is dead-lettered.</summary>
public interface IEventHandler<in T>
    where T : IMessage<T>
{
    Task HandleAsync(T message, EventContext context, CancellationToken cancellationToken);
}

/// <summary>
/// Handles one event type several events at a time where the adapter can (Redis Streams hands over what a delivery
/// lane holds; the other adapters deliver one at a time): the events come in delivery order, those of one ordering key
/// in their order. When the batch throws, each of its events is delivered again on its own through
/// <see cref="IEventHandler{T}.HandleAsync"/>, so one bad event is retried or dead-lettered alone — a batch handler
/// must be idempotent per event (by business key) like any handler, since part of a failed batch may have been applied.
/// </summary>
public interface IEventBatchHandler<T> : IEventHandler<T>
    where T : IMessage<T>
{
    Task HandleBatchAsync(IReadOnlyList<DeliveredEvent<T>> events, CancellationToken cancellationToken);
}

/// <summary>One event of a batch: its message and what the handler knows about it.</summary>
public sealed record DeliveredEvent<T>(T Message, EventContext Context);

/// <summary>What a handler knows about the event besides its data.</summary>
/// <param name="EventId">CloudEvent id; handlers use it (or a business key) to be idempotent.</param>
/// <param name="Topic">Topic the event arrived on.</param>
/// <param name="Source">App id of the publisher.</param>
/// <param name="Time">Publish time.</param>
/// <param name="DeliveryCount">1 on first delivery, more on redelivery.</param>
public sealed record EventContext(string EventId, string Topic, string Source, DateTimeOffset Time, int DeliveryCount);

/// <summary>Well-known topics of the mesh.</summary>
public static class Topics
{
    /// <summary>Coalesced consolidated prices from pricing.</summary>
    public const string MarketQuotes = "market.quotes";

    /// <summary>Plans approved by planning, for execution.</summary>
    public const string PlansApproved = "plans.approved";

    /// <summary>Trading halt changes from planning.</summary>
    public const string PlansHalted = "plans.halted";

    /// <summary>Clients' requests to stop a plan, from planning.</summary>
    public const string PlansCancelled = "plans.cancelled";

    /// <summary>Fills, leg and plan outcomes from execution.</summary>
    public const string ExecutionReports = "execution.reports";

    /// <summary>Name of the dead-letter topic of <paramref name="topic"/>.</summary>
    public static string DeadLetter(string topic) => topic + ".deadletter";
}
