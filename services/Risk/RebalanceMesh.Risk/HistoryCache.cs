using System.Collections.Concurrent;
using RebalanceMesh.MarketState;

namespace RebalanceMesh.Risk;

/// <summary>
/// A per-replica read-through cache of daily closes. Closed days change only through an import or a correction, which
/// raises the instrument's history version in market state; each call reads that version together with today's close
/// (which moves with every tick) and re-reads the closed days only when the version, the day or the depth asked for
/// changed. So an import is seen on the next call, a short or empty history is never kept past the change that
/// fills it, and losing the cache loses nothing: risk stays stateless.
/// </summary>
public sealed class HistoryCache(MarketStateStore market, TimeProvider time)
{
    private const int MaxInstruments = 20_000;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    private sealed record Entry(int Today, long Version, int Count, DailyClose[] Closed);

    /// <summary>The most recent <paramref name="count"/> daily closes of an instrument, oldest first.</summary>
    public async Task<IReadOnlyList<DailyClose>> GetAsync(string instrument, int count)
    {
        var today = DailyClose.DayOf(time.GetUtcNow());
        var versionRead = market.GetHistoryVersionAsync(instrument);
        var liveRead = market.GetDailyClosesFromAsync(instrument, today);
        var version = await versionRead;
        if (!_entries.TryGetValue(instrument, out var entry) || entry.Today != today || entry.Version != version || entry.Count < count)
        {
            var closes = await market.GetDailyClosesAsync(instrument, count);
            entry = new Entry(today, version, count, closes.Where(c => c.Day < today).ToArray());
            if (_entries.Count >= MaxInstruments)
            {
                _entries.Clear(); // crude bound; the cache refills on demand
            }

            _entries[instrument] = entry;
        }

        var live = await liveRead;
        var keepClosed = Math.Min(entry.Closed.Length, Math.Max(0, count - live.Count));
        var series = new DailyClose[keepClosed + live.Count];
        entry.Closed.AsSpan(entry.Closed.Length - keepClosed).CopyTo(series);
        for (var i = 0; i < live.Count; i++)
        {
            series[keepClosed + i] = live[i];
        }

        return series;
    }
}
