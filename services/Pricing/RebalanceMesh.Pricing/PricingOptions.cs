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
