using System.Collections.Concurrent;

namespace RebalanceMesh.Pricing.Core;

/// <summary>
/// Decides whether a tick may enter market state. Rejects ticks from venues that are not configured (or do not list
/// the instrument), non-positive prices, negative sizes, crossed books, timestamps beyond the allowed clock skew or
/// older than a live quote may be (<paramref name="maxAge"/>: history has its own path), ticks older than the last
/// accepted one of the same venue and instrument, and instruments outside the universe. Thread-safe; the
/// last-accepted times live in memory and are seeded from market state at start so a restart keeps the ordering rule.
/// </summary>
public sealed class TickValidator(IEnumerable<string> universe, TimeProvider time, TimeSpan maxClockSkew, TimeSpan maxAge, VenueRegistry venues)
{
    private readonly ConcurrentDictionary<string, bool> _universe = new(universe.Select(i => KeyValuePair.Create(i, true)), StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Venue, string Instrument), DateTimeOffset> _lastAccepted = new();

    /// <summary>Whether an instrument may be quoted (and have history imported).</summary>
    public bool Knows(string instrument) => _universe.ContainsKey(instrument);

    public IReadOnlyCollection<string> Universe => _universe.Keys.ToArray();

    /// <summary>Adds instruments to the universe (registered instruments become quotable).</summary>
    public void Admit(IEnumerable<string> instruments)
    {
        foreach (var instrument in instruments)
        {
            _universe.TryAdd(instrument, true);
        }
    }

    /// <summary>Records a quote already in market state so later ticks are ordered against it.</summary>
    public void Seed(string venue, string instrument, DateTimeOffset timestamp) =>
        _lastAccepted.AddOrUpdate((venue, instrument), timestamp, (_, existing) => existing > timestamp ? existing : timestamp);

    /// <summary>Returns null when the tick is accepted (and records it), else the rejection.</summary>
    public TickRejection? Validate(Tick tick)
    {
        if (!_universe.ContainsKey(tick.InstrumentId))
        {
            return new(TickRejectReason.UnknownInstrument, $"instrument '{tick.InstrumentId}' is not in the universe");
        }

        if (venues.Check(tick.Venue, tick.InstrumentId) is { } venueRejection)
        {
            return venueRejection;
        }

        if (tick.Bid <= 0m || tick.Ask <= 0m || tick.Last is <= 0m)
        {
            return new(TickRejectReason.NonPositivePrice, $"prices must be positive (bid {tick.Bid}, ask {tick.Ask}, last {tick.Last})");
        }

        if (tick.BidSize < 0m || tick.AskSize < 0m)
        {
            return new(TickRejectReason.NonPositivePrice, $"sizes must not be negative (bid size {tick.BidSize}, ask size {tick.AskSize})");
        }

        if (tick.Bid > tick.Ask)
        {
            return new(TickRejectReason.CrossedBook, $"bid {tick.Bid} > ask {tick.Ask}");
        }

        var now = time.GetUtcNow();
        if (tick.Timestamp > now + maxClockSkew)
        {
            return new(TickRejectReason.FutureTimestamp, $"timestamp {tick.Timestamp:O} is ahead of now {now:O} by more than {maxClockSkew.TotalSeconds} s");
        }

        if (tick.Timestamp < now - maxAge)
        {
            return new(TickRejectReason.Stale, $"timestamp {tick.Timestamp:O} is more than {maxAge.TotalSeconds} s before now {now:O}: live quotes only (daily history goes through ImportPriceHistory)");
        }

        var key = (tick.Venue, tick.InstrumentId);
        while (true)
        {
            if (_lastAccepted.TryGetValue(key, out var last))
            {
                if (tick.Timestamp < last)
                {
                    return new(TickRejectReason.OutOfOrder, $"timestamp {tick.Timestamp:O} is older than the last accepted {last:O}");
                }

                if (_lastAccepted.TryUpdate(key, tick.Timestamp, last))
                {
                    return null;
                }
            }
            else if (_lastAccepted.TryAdd(key, tick.Timestamp))
            {
                return null;
            }
        }
    }
}
