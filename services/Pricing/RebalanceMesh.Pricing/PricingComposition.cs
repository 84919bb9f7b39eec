using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;
using RebalanceMesh.Pricing.Core.Feeds;

namespace RebalanceMesh.Pricing;

/// <summary>The feed chosen by configuration; null when quotes arrive only through IngestQuotes.</summary>
public sealed record ConfiguredFeed(IQuoteFeed? Feed);

/// <summary>Builds the configured feed and the tick validator of its instrument universe.</summary>
public static class PricingComposition
{
    public static IQuoteFeed? CreateFeed(PricingOptions options, TimeProvider time)
    {
        switch (options.Feed.ToLowerInvariant())
        {
            case "none":
                return null;
            case "simulated":
                return new SimulatedMarketFeed(options.Simulated, options.Venues, time);
            case "csv":
            {
                var path = Path.IsPathRooted(options.CsvPath) ? options.CsvPath : Path.Combine(AppContext.BaseDirectory, options.CsvPath);
                using var reader = File.OpenText(path);
                return new CsvReplayFeed(PriceTable.ParseCsv(reader), options.Csv, options.Venues, time);
            }

            default:
                throw new InvalidOperationException($"Pricing:Feed '{options.Feed}' is not one of csv, simulated, none.");
        }
    }

    public static TickValidator CreateValidator(PricingOptions options, MarketStateOptions market, IQuoteFeed? feed, TimeProvider time)
    {
        var universe = options.Instruments.Concat(feed?.Instruments ?? []);
        return new TickValidator(universe, time, options.MaxClockSkew, market.VenueStaleAfter, Venues(options));
    }

    /// <summary>The venues quotes are taken from: those the feeds quote on, and those with a listing of their own.</summary>
    public static VenueRegistry Venues(PricingOptions options) => new(
        options.Venues.Select(v => v.Venue),
        options.VenueInstruments.ToDictionary(v => v.Key, v => (IReadOnlyCollection<string>)v.Value, StringComparer.Ordinal));

    /// <summary>The rules of the consolidated book.</summary>
    public static BookRules BookRules(PricingOptions options, MarketStateOptions market) => new(market.VenueStaleAfter, options.OutlierThresholdBps);
}
