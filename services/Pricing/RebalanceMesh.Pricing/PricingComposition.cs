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

    public static TickValidator CreateValidator(PricingOptions options, IQuoteFeed? feed, TimeProvider time)
    {
        var universe = options.Instruments.Concat(feed?.Instruments ?? []);
        return new TickValidator(universe, time, options.MaxClockSkew);
    }
}
