namespace RebalanceMesh.EventBus;

/// <summary>Configuration section <c>EventBus</c>.</summary>
public sealed class EventBusOptions
{
    /// <summary>Adapter: <c>redis</c> (Redis Streams, Dapr pubsub.redis format), <c>dapr</c> or <c>inmemory</c>.</summary>
    public string Provider { get; set; } = "redis";

    /// <summary>Dapr pub/sub component name; also written into each CloudEvent's <c>pubsubname</c>.</summary>
    public string PubSubName { get; set; } = "pubsub";

    /// <summary>The app id: CloudEvent source and the Redis consumer group, as Dapr uses it.</summary>
    public string AppId { get; set; } = string.Empty;

    /// <summary>
    /// This replica's consumer name in the Redis consumer group. Stable across restarts (from Mesh:InstanceId, which
    /// the local mesh sets per service instance), a restarted replica takes back its own unacknowledged events at
    /// once; otherwise (empty: machine name and process id) they are reclaimed after <see cref="ProcessingTimeout"/>.
    /// </summary>
    public string ConsumerName { get; set; } = string.Empty;

    /// <summary>A delivered event not acknowledged within this time is claimed and delivered again.</summary>
    public TimeSpan ProcessingTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How often pending entries are checked for reclaiming.</summary>
    public TimeSpan RedeliverInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Deliveries after which a failing event goes to the dead-letter topic.</summary>
    public int MaxDeliveries { get; set; } = 5;

    /// <summary>
    /// A safety cap on each stream's length (XADD MAXLEN ~), against a consumer that stopped for good: a group further
    /// behind than this loses the oldest entries it has not read. Streams are kept short by trimming what every group
    /// has consumed (<see cref="StreamTrim"/>), not by this cap.
    /// </summary>
    public int MaxStreamLength { get; set; } = 2_000_000;

    /// <summary>
    /// Events of one subscription handled at once, as Dapr's pubsub.redis component's <c>concurrency</c> metadata (whose
    /// default is 10): a topic's events are handled concurrently and may complete out of order, but events of one
    /// ordering key (see <see cref="EventSubscription"/>) go one at a time, in stream order. 1 delivers one at a time.
    /// </summary>
    public int Concurrency { get; set; } = 10;

    /// <summary>
    /// Events a handler that takes batches (<c>IEventBatchHandler</c>) gets at most in one call, from one delivery lane
    /// (Redis Streams only; the other adapters deliver one at a time). Batching is what lets a handler share its reads
    /// and writes over many events (planning books a run of execution reports in one transaction per plan).
    /// </summary>
    public int MaxBatch { get; set; } = 64;

    /// <summary>How long one blocking read waits for new entries.</summary>
    public TimeSpan ReadBlock { get; set; } = TimeSpan.FromSeconds(1);
}
