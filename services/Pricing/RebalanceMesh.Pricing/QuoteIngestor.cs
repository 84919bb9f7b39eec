using System.Diagnostics;
using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing;

/// <summary>
/// The one path ticks take into market state, whether from IngestQuotes or a feed: validate, store, and hand
/// the changed consolidated prices to the coalescer that publishes market.quotes.
/// </summary>
public sealed class QuoteIngestor(TickValidator validator, MarketStateStore market, QuoteCoalescer<ConsolidatedPrice> coalescer, VolSurfaceService surfaces, ILogger<QuoteIngestor> logger)
{
    public static readonly ActivitySource ActivitySource = new("RebalanceMesh.Pricing");
    private static readonly Meter Meter = new("RebalanceMesh.Pricing");
    private static readonly Counter<long> Accepted = Meter.CreateCounter<long>("rebalancemesh.pricing.ticks.accepted", description: "Ticks stored in market state.");
    private static readonly Counter<long> Rejected = Meter.CreateCounter<long>("rebalancemesh.pricing.ticks.rejected", description: "Ticks rejected, by reason.");

    /// <summary>Validates every tick, stores the accepted ones and returns the rejections by position.</summary>
    public async Task<IReadOnlyList<(int Index, TickRejection Rejection)>> IngestAsync(IReadOnlyList<Tick> ticks, string origin)
    {
        using var activity = ActivitySource.StartActivity("ingest ticks");
        activity?.SetTag("pricing.origin", origin);
        activity?.SetTag("pricing.ticks", ticks.Count);
        var accepted = new List<Quote>(ticks.Count);
        var rejections = new List<(int, TickRejection)>();
        for (var i = 0; i < ticks.Count; i++)
        {
            var rejection = validator.Validate(ticks[i]);
            if (rejection is null)
            {
                accepted.Add(ticks[i].ToQuote());
            }
            else
            {
                rejections.Add((i, rejection));
                Record(rejection, ticks[i].Venue, ticks[i].InstrumentId);
            }
        }

        var prices = await market.WriteQuotesAsync(accepted);
        foreach (var price in prices)
        {
            coalescer.Add(price.InstrumentId, price);
            surfaces.OptionQuoted(price.InstrumentId);
        }

        Accepted.Add(accepted.Count, new KeyValuePair<string, object?>("origin", origin));
        return rejections;
    }

    /// <summary>Counts and logs a rejection made before a tick could be mapped (malformed wire input).</summary>
    public void Record(TickRejection rejection, string venue, string instrument)
    {
        Rejected.Add(1, new KeyValuePair<string, object?>("reason", rejection.Reason.ToString()));
        logger.LogInformation("Rejected tick {Venue}/{Instrument}: {Reason} {Detail}", venue, instrument, rejection.Reason, rejection.Detail);
    }
}
