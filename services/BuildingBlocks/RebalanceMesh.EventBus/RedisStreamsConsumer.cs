using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace RebalanceMesh.EventBus;

/// <summary>
/// Consumes every subscribed topic the way Dapr's pubsub.redis does: consumer group = app id (created from
/// the start of the stream), XACK only after the handler succeeded, entries left pending longer than the
/// processing timeout are claimed and delivered again, and after <see cref="EventBusOptions.MaxDeliveries"/>
/// (or at once when malformed) an entry moves to the topic's dead-letter stream.
/// Each topic has its own loop and its own connection for the blocking read, so a slow handler on one topic
/// does not hold up another; within a topic, <see cref="EventBusOptions.Concurrency"/> lanes handle events at once
/// (Dapr's <c>concurrency</c>), events of one ordering key in one lane, in stream order.
/// </summary>
public sealed class RedisStreamsConsumer(
    IConnectionMultiplexer redis,
    EventDispatcher dispatcher,
    IOptions<EventBusOptions> options,
    ILogger<RedisStreamsConsumer> logger) : BackgroundService
{
    private readonly string _consumerName = options.Value.ConsumerName.Length > 0
        ? $"{options.Value.AppId}-{options.Value.ConsumerName}"
        : $"{options.Value.AppId}-{Environment.MachineName}-{Environment.ProcessId}";

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var loops = dispatcher.Subscriptions.Select(s => Task.Run(() => ConsumeTopicAsync(s.Topic, stoppingToken), stoppingToken)).ToArray();
        return Task.WhenAll(loops);
    }

    private async Task ConsumeTopicAsync(string topic, CancellationToken stoppingToken)
    {
        var settings = options.Value;
        var group = settings.AppId;
        ConnectionMultiplexer? blocking = null;
        var nextReclaim = DateTime.UtcNow;
        // A handler that takes batches gets what a lane holds (up to MaxBatch), acknowledged in one XACK.
        var maxBatch = dispatcher.Subscriptions.Any(s => s.Topic == topic && s.Batches) ? settings.MaxBatch : 1;
        var readCount = Math.Max(50, maxBatch * 4);
        await using var lanes = new DeliveryLanes<(StreamEntry Entry, IncomingEvent? Event, int DeliveryCount)>(
            settings.Concurrency,
            maxBatch,
            (items, ct) => DeliverAsync(redis.GetDatabase(), topic, group, items, ct),
            (item, ex) => logger.LogWarning(ex, "Delivering {StreamId} on {Topic} failed; it stays pending and is delivered again", item.Entry.Id, topic),
            stoppingToken);
        Task EnqueueAsync(StreamEntry entry, int deliveryCount)
        {
            // Read once here: its key picks the lane, and the lane delivers what was read.
            var data = entry[RedisStreamsEventBus.DataField];
            var incoming = data.IsNull ? null : dispatcher.Read(topic, (byte[])data!);
            return lanes.EnqueueAsync(incoming?.Key, (entry, incoming, deliveryCount), stoppingToken).AsTask();
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var db = redis.GetDatabase();
                await EnsureGroupAsync(db, topic, group);
                blocking ??= await ConnectBlockingAsync(settings);

                // First our own pending entries (a restart resumes where it stopped), then new ones.
                await DrainPendingOfThisConsumerAsync(db, topic, group, EnqueueAsync);
                while (!stoppingToken.IsCancellationRequested)
                {
                    var entries = await ReadNewAsync(blocking.GetDatabase(), topic, group, readCount, settings);
                    foreach (var entry in entries)
                    {
                        await EnqueueAsync(entry, 1);
                    }

                    if (DateTime.UtcNow >= nextReclaim)
                    {
                        await ReclaimStaleAsync(db, topic, group, EnqueueAsync);
                        await TrimAsync(db, topic, settings);
                        nextReclaim = DateTime.UtcNow + settings.RedeliverInterval;
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                // Never let one bad moment stop consumption: log, drop the reader connection, back off, resume.
                logger.LogWarning(ex, "Redis stream consumer for {Topic} failed; resuming in 1 s", topic);
                blocking?.Dispose();
                blocking = null;
                await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }

        blocking?.Dispose();
    }

    private async Task<ConnectionMultiplexer> ConnectBlockingAsync(EventBusOptions settings)
    {
        var config = ConfigurationOptions.Parse(redis.Configuration);
        config.AbortOnConnectFail = true;
        config.ClientName = _consumerName + "-reader";
        config.AsyncTimeout = (int)settings.ReadBlock.TotalMilliseconds + 5_000;
        config.SyncTimeout = config.AsyncTimeout;
        return await ConnectionMultiplexer.ConnectAsync(config);
    }

    private static async Task EnsureGroupAsync(IDatabase db, string topic, string group)
    {
        try
        {
            await db.StreamCreateConsumerGroupAsync(topic, group, "0", createStream: true);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("BUSYGROUP", StringComparison.Ordinal))
        {
            // The group exists already: another replica or an earlier run created it.
        }
    }

    private async Task<IReadOnlyList<StreamEntry>> ReadNewAsync(IDatabase db, string topic, string group, int count, EventBusOptions settings)
    {
        // XREADGROUP with BLOCK on a dedicated connection: new entries arrive within a millisecond of XADD.
        var result = await db.ExecuteAsync(
            "XREADGROUP", "GROUP", group, _consumerName, "COUNT", count.ToString(System.Globalization.CultureInfo.InvariantCulture), "BLOCK", ((int)settings.ReadBlock.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture),
            "STREAMS", topic, ">");
        return ParseReadResult(result);
    }

    /// <summary>
    /// Parses an XREADGROUP reply: per stream, [name, [[id, [field, value, …]], …]] under RESP2, or a map
    /// name → entries under RESP3.
    /// </summary>
    internal static IReadOnlyList<StreamEntry> ParseReadResult(RedisResult result)
    {
        if (result.IsNull)
        {
            return [];
        }

        var streams = new List<RedisResult>();
        var top = (RedisResult[])result!;
        if (result.Resp3Type == ResultType.Map)
        {
            for (var i = 1; i < top.Length; i += 2)
            {
                streams.Add(top[i]);
            }
        }
        else
        {
            streams.AddRange(top.Select(stream => ((RedisResult[])stream!)[1]));
        }

        var entries = new List<StreamEntry>();
        foreach (var streamEntries in streams.Where(s => !s.IsNull))
        {
            foreach (var raw in (RedisResult[])streamEntries!)
            {
                var pair = (RedisResult[])raw!;
                var id = (RedisValue)pair[0];
                var values = new List<NameValueEntry>();
                if (!pair[1].IsNull)
                {
                    var fields = (RedisResult[])pair[1]!;
                    for (var i = 0; i + 1 < fields.Length; i += 2)
                    {
                        values.Add(new NameValueEntry((RedisValue)fields[i], (RedisValue)fields[i + 1]));
                    }
                }

                entries.Add(new StreamEntry(id, values.ToArray()));
            }
        }

        return entries;
    }

    private async Task DrainPendingOfThisConsumerAsync(IDatabase db, string topic, string group, Func<StreamEntry, int, Task> enqueue)
    {
        var pending = await db.StreamReadGroupAsync(topic, group, _consumerName, "0", count: 500);
        foreach (var entry in pending)
        {
            await enqueue(entry, 2);
        }
    }

    private async Task ReclaimStaleAsync(IDatabase db, string topic, string group, Func<StreamEntry, int, Task> enqueue)
    {
        var settings = options.Value;
        var pending = await db.StreamPendingMessagesAsync(topic, group, 100, RedisValue.Null);
        var stale = pending.Where(p => p.IdleTimeInMilliseconds >= settings.ProcessingTimeout.TotalMilliseconds).ToArray();
        if (stale.Length == 0)
        {
            return;
        }

        var claimed = await db.StreamClaimAsync(topic, group, _consumerName, (long)settings.ProcessingTimeout.TotalMilliseconds, stale.Select(p => p.MessageId).ToArray());
        var deliveries = stale.ToDictionary(p => p.MessageId.ToString(), p => p.DeliveryCount + 1);
        foreach (var entry in claimed.Where(e => !e.IsNull))
        {
            await enqueue(entry, deliveries.GetValueOrDefault(entry.Id.ToString(), 2));
        }
    }

    /// <summary>Trims the stream behind every group (<see cref="StreamTrim"/>) and warns while a group lags toward the publishers' cap.</summary>
    private async Task TrimAsync(IDatabase db, string topic, EventBusOptions settings)
    {
        var (removed, lag) = await StreamTrim.TrimConsumedAsync(db, topic);
        if (removed > 0)
        {
            logger.LogDebug("Trimmed {Removed} consumed entries from {Topic}", removed, topic);
        }

        if (lag > settings.MaxStreamLength / 2)
        {
            logger.LogWarning("A consumer group of {Topic} is {Lag} entries behind; past {Cap} the publishers' cap drops the oldest unread", topic, lag, settings.MaxStreamLength);
        }
    }

    /// <summary>
    /// Delivers a lane's batch (one event unless the handler takes batches), then dead-letters what can never succeed
    /// or failed its last delivery, and acknowledges everything but what is left pending for redelivery in one XACK.
    /// </summary>
    private async Task DeliverAsync(IDatabase db, string topic, string group, IReadOnlyList<(StreamEntry Entry, IncomingEvent? Event, int DeliveryCount)> items, CancellationToken ct)
    {
        var readable = Enumerable.Range(0, items.Count).Where(i => items[i].Event is not null).ToArray();
        var dispatched = readable.Length == 0
            ? []
            : await dispatcher.DispatchBatchAsync(readable.Select(i => (items[i].Event!, items[i].DeliveryCount)).ToArray(), ct);
        var outcomes = Enumerable.Repeat(DeliveryOutcome.Drop, items.Count).ToArray(); // an entry without data: dropped
        for (var k = 0; k < readable.Length; k++)
        {
            outcomes[readable[k]] = dispatched[k];
        }

        var acknowledge = new List<RedisValue>(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            var (entry, _, deliveryCount) = items[i];
            var data = entry[RedisStreamsEventBus.DataField];
            if (outcomes[i] == DeliveryOutcome.Retry && deliveryCount < options.Value.MaxDeliveries)
            {
                continue; // left pending; reclaimed after the processing timeout
            }

            if (outcomes[i] != DeliveryOutcome.Success)
            {
                var reason = outcomes[i] == DeliveryOutcome.Drop ? "malformed" : $"failed {deliveryCount} deliveries";
                await db.StreamAddAsync(Topics.DeadLetter(topic), [
                    new NameValueEntry(RedisStreamsEventBus.DataField, data.IsNull ? RedisValue.EmptyString : data),
                    new NameValueEntry("reason", reason),
                    new NameValueEntry("source_id", entry.Id),
                ]);
                logger.LogWarning("Event {StreamId} on {Topic} dead-lettered: {Reason}", entry.Id, topic, reason);
            }

            acknowledge.Add(entry.Id);
        }

        if (acknowledge.Count > 0)
        {
            await db.StreamAcknowledgeAsync(topic, group, acknowledge.ToArray());
        }
    }
}
