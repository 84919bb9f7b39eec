using RebalanceMesh.Pricing.Core.Feeds;

namespace RebalanceMesh.Pricing;

/// <summary>Configuration section <c>Pricing</c>.</summary>
public sealed class PricingOptions
{
    /// <summary>Instruments accepted besides those of the feed.</summary>
    public List<string> Instruments { get; set; } = [];

    /// <summary>Feed: <c>csv</c>, <c>simulated</c> or <c>none</c> (quotes only through IngestQuotes).</summary>
    public string Feed { get; set; } = "csv";

    /// <summary>CSV file replayed by the csv feed; relative paths are resolved against the app directory.</summary>
    public string CsvPath { get; set; } = "data/eustockmarkets.csv";

    /// <summary>Settings of the CSV replay.</summary>
    public CsvReplayOptions Csv { get; set; } = new();

    /// <summary>Settings of the simulated market.</summary>
    public SimulatedMarketOptions Simulated { get; set; } = new();

    /// <summary>Venues the feeds quote on, each with its own spread.</summary>
    public List<VenueQuoteStyle> Venues { get; set; } =
    [
        new("SIM-A", 2.0, 1_000m),
        new("SIM-B", 3.0, 5_000m),
        new("SIM-C", 5.0, 20_000m),
    ];

    /// <summary>
    /// Venues that quote only some instruments, venue → instruments (for example a currency venue quoting only USD).
    /// Each is a known venue besides those of <see cref="Venues"/>; a venue in both is restricted to its list.
    /// </summary>
    public Dictionary<string, List<string>> VenueInstruments { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// A tick whose mid is further than this (basis points) from the median mid of the other venues in the book is
    /// quarantined until another venue confirms its level.
    /// </summary>
    public double OutlierThresholdBps { get; set; } = 1_000;

    /// <summary>Minimum time between two market.quotes events (coalescing).</summary>
    public TimeSpan PublishInterval { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How often volatility surfaces of newly quoted options are rebuilt.</summary>
    public TimeSpan VolSurfaceInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Allowed clock skew of tick timestamps ahead of now.</summary>
    public TimeSpan MaxClockSkew { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Volatility used for options when the request gives none.</summary>
    public double DefaultVolatility { get; set; } = 0.20;

    /// <summary>Risk-free rate used when the request gives none.</summary>
    public double DefaultRate { get; set; } = 0.03;

    /// <summary>
    /// The feeds also quote registered perpetuals on the instruments they quote, at the same venues and prices as
    /// their index (a perpetual's mark tracks its index through funding), so they can be traded as hedges.
    /// </summary>
    public bool QuotePerpetuals { get; set; } = true;
}
