using StackExchange.Redis;

namespace RebalanceMesh.EventBus;

/// <summary>
/// Keeps a topic's stream short without losing an event: entries are removed only once every consumer group of the
/// stream has taken them and acknowledged them — everything older than the oldest entry any group still has pending
/// or has not been delivered yet. (A length cap on XADD alone drops the oldest entries whether or not a slow group has
/// read them: 200,000 execution reports of a 10,000-account batch were lost that way.) Consumers trim the topics they
/// read, each replica now and then; trimming twice is harmless.
/// </summary>
public static class StreamTrim
{
    /// <summary>Trims what every group of <paramref name="topic"/> has consumed; returns the entries removed and the largest group lag (entries not yet delivered to a group, when Redis reports it).</summary>
    public static async Task<(long Removed, long? Lag)> TrimConsumedAsync(IDatabase db, string topic)
    {
        var groups = await db.StreamGroupInfoAsync(topic);
        if (groups.Length == 0)
        {
            return (0, null);
        }

        (long Ms, long Seq)? keepFrom = null;
        long? lag = null;
        foreach (var group in groups)
        {
            // What a group still needs: its oldest pending entry, or (nothing pending) what follows its last delivered.
            var needed = group.PendingMessageCount > 0
                ? (await db.StreamPendingAsync(topic, group.Name)).LowestPendingMessageId.ToString()
                : group.LastDeliveredId ?? "0-0";
            var id = Parse(needed);
            keepFrom = keepFrom is not { } current || id.CompareTo(current) < 0 ? id : current;
            if (group.Lag is { } groupLag)
            {
                lag = Math.Max(lag ?? 0, groupLag);
            }
        }

        if (keepFrom is not { } minimum || minimum == (0, 0))
        {
            return (0, lag);
        }

        var removed = (long)await db.ExecuteAsync("XTRIM", topic, "MINID", $"{minimum.Ms}-{minimum.Seq}");
        return (removed, lag);
    }

    private static (long Ms, long Seq) Parse(string id)
    {
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        return dash < 0
            ? (long.Parse(id, System.Globalization.CultureInfo.InvariantCulture), 0)
            : (long.Parse(id.AsSpan(0, dash), System.Globalization.CultureInfo.InvariantCulture), long.Parse(id.AsSpan(dash + 1), System.Globalization.CultureInfo.InvariantCulture));
    }
}
