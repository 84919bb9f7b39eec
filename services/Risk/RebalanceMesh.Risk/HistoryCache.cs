using System.Collections.Concurrent;
using RebalanceMesh.MarketState;

namespace RebalanceMesh.Risk;

/// <summary>
/// A per-replica read-through cache of daily closes. Closed days do not change, so they are kept for a few minutes
/// (a backfill shows up within that time) and only today's close — which moves with every tick — is read from Redis
/// on each call. Losing the cache loses nothing: risk stays stateless.
/// </summary>
public sealed class HistoryCache(MarketStateStore market, TimeProvider time)
{
    private static readonly TimeSpan ClosedDaysLifetime = TimeSpan.FromMinutes(5);
    private const int MaxInstruments = 20_000;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    private sealed record Entry(int Today, int Count, DailyClose[] Closed, DateTimeOffset Expires);

    /// <summary>The most recent <paramref name="count"/> daily closes of an instrument, oldest first.</summary>
    public async Task<IReadOnlyList<DailyClose>> GetAsync(string instrument, int count)
    {
        var now = time.GetUtcNow();
        var today = DailyClose.DayOf(now);
        if (!_entries.TryGetValue(instrument, out var entry) || entry.Today != today || entry.Count < count || entry.Expires <= now)
        {
            var closes = await market.GetDailyClosesAsync(instrument, count);
            entry = new Entry(today, count, closes.Where(c => c.Day < today).ToArray(), now + ClosedDaysLifetime);
            if (_entries.Count >= MaxInstruments)
            {
                _entries.Clear(); // crude bound; the cache refills on demand
            }

            _entries[instrument] = entry;
        }

        var live = await market.GetDailyClosesFromAsync(instrument, today);
        var keepClosed = Math.Min(entry.Closed.Length, Math.Max(0, count - live.Count));
        return entry.Closed.AsSpan(entry.Closed.Length - keepClosed).ToArray().Concat(live).ToArray();
    }
}
