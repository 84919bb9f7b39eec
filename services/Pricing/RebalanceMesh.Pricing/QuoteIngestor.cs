using System.Diagnostics;
using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing;

/// <summary>
/// The one path ticks take into market state, whether from IngestQuotes or a feed: validate each tick (venue, prices,
/// time), screen each instrument's ticks against the other venues (outliers are quarantined until confirmed), store
/// what passed, and hand the changed consolidated prices to the coalescer that publishes market.quotes.
/// </summary>
public sealed class QuoteIngestor(TickValidator validator, BookRules rules, MarketStateStore market, QuoteCoalescer<ConsolidatedPrice> coalescer, VolSurfaceService surfaces, ILogger<QuoteIngestor> logger)
{
    public static readonly ActivitySource ActivitySource = new("RebalanceMesh.Pricing");
    private static readonly Meter Meter = new("RebalanceMesh.Pricing");
    private static readonly Counter<long> Accepted = Meter.CreateCounter<long>("rebalancemesh.pricing.ticks.accepted", description: "Ticks stored in market state.");
    private static readonly Counter<long> Rejected = Meter.CreateCounter<long>("rebalancemesh.pricing.ticks.rejected", description: "Ticks rejected, by reason.");
    private static readonly Counter<long> Quarantined = Meter.CreateCounter<long>("rebalancemesh.pricing.ticks.quarantined", description: "Ticks held out of the book as outliers, by venue.");

    /// <summary>Validates and screens every tick, stores what passed and returns the rejections by position.</summary>
    public async Task<IReadOnlyList<(int Index, TickRejection Rejection)>> IngestAsync(IReadOnlyList<Tick> ticks, string origin)
    {
        using var activity = ActivitySource.StartActivity("ingest ticks");
        activity?.SetTag("pricing.origin", origin);
        activity?.SetTag("pricing.ticks", ticks.Count);
        var valid = new List<int>(ticks.Count);
        var rejections = new List<(int, TickRejection)>();
        for (var i = 0; i < ticks.Count; i++)
        {
            if (validator.Validate(ticks[i]) is { } rejection)
            {
                rejections.Add((i, rejection));
                Record(rejection, ticks[i].Venue, ticks[i].InstrumentId);
            }
            else
            {
                valid.Add(i);
            }
        }

        var byInstrument = valid.GroupBy(i => ticks[i].InstrumentId, StringComparer.Ordinal).ToArray();
        var books = byInstrument.Length > 0 ? await market.GetBooksAsync(byInstrument.Select(g => g.Key).ToArray()) : new Dictionary<string, (IReadOnlyList<Quote>, IReadOnlyList<Quote>)>();
        var stored = new List<Quote>(valid.Count);
        var quarantine = new Dictionary<string, IReadOnlyList<Quote>>(StringComparer.Ordinal);
        foreach (var group in byInstrument)
        {
            var indexes = group.ToArray();
            var (quotes, held) = books[group.Key];
            var state = new VenueBookState(ToTicks(quotes), ToTicks(held));
            var screened = QuoteScreen.Apply(state, indexes.Select(i => ticks[i]).ToArray(), rules);
            stored.AddRange(screened.Accepted.Select(t => t.ToQuote()));
            if (held.Count > 0 || screened.Quarantined.Count > 0)
            {
                quarantine[group.Key] = screened.Quarantined.Select(t => t.ToQuote()).ToArray();
            }

            foreach (var (position, detail) in screened.Held)
            {
                var tick = ticks[indexes[position]];
                var rejection = new TickRejection(TickRejectReason.Quarantined, detail);
                rejections.Add((indexes[position], rejection));
                Record(rejection, tick.Venue, tick.InstrumentId);
                Quarantined.Add(1, new KeyValuePair<string, object?>("venue", tick.Venue));
            }
        }

        var prices = await market.WriteQuotesAsync(stored, quarantine);
        foreach (var price in prices)
        {
            coalescer.Add(price.InstrumentId, price);
            surfaces.OptionQuoted(price.InstrumentId);
        }

        Accepted.Add(ticks.Count - rejections.Count, new KeyValuePair<string, object?>("origin", origin));
        rejections.Sort((a, b) => a.Item1.CompareTo(b.Item1));
        return rejections;
    }

    /// <summary>Counts and logs a rejection made before a tick could be mapped (malformed wire input).</summary>
    public void Record(TickRejection rejection, string venue, string instrument)
    {
        Rejected.Add(1, new KeyValuePair<string, object?>("reason", rejection.Reason.ToString()));
        logger.LogInformation("Rejected tick {Venue}/{Instrument}: {Reason} {Detail}", venue, instrument, rejection.Reason, rejection.Detail);
    }

    private static Tick[] ToTicks(IReadOnlyList<Quote> quotes) =>
        quotes.Select(q => QuoteMapping.ToTick(q, out _)).OfType<Tick>().ToArray();
}
