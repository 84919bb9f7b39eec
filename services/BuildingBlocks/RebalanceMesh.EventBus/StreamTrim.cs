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
            // The pending count comes from XINFO a moment before XPENDING: entries acknowledged in between leave no
            // lowest pending id, and then the last delivered id (as XINFO read it, so no later) is what it needs.
            var lowestPending = group.PendingMessageCount > 0
                ? (await db.StreamPendingAsync(topic, group.Name)).LowestPendingMessageId
                : RedisValue.Null;
            if (ParseId(lowestPending.IsNullOrEmpty ? group.LastDeliveredId ?? "0-0" : lowestPending.ToString()) is not { } id)
            {
                return (0, lag); // an id this code cannot read: trim nothing rather than something still needed
            }

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

    /// <summary>A stream entry id ("ms-seq", or "ms"), or null when it is not one (empty, malformed).</summary>
    public static (long Ms, long Seq)? ParseId(string? id)
    {
        const System.Globalization.NumberStyles Digits = System.Globalization.NumberStyles.None;
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        if (string.IsNullOrEmpty(id))
        {
            return null;
        }

        var dash = id.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0)
        {
            return long.TryParse(id, Digits, invariant, out var only) ? (only, 0) : null;
        }

        return long.TryParse(id.AsSpan(0, dash), Digits, invariant, out var ms) && long.TryParse(id.AsSpan(dash + 1), Digits, invariant, out var seq)
            ? (ms, seq)
            : null;
    }
}
