using Microsoft.Extensions.Options;
using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;
using RebalanceMesh.Pricing.Core.Feeds;

namespace RebalanceMesh.Pricing;

/// <summary>
/// Runs the configured feed: seeds its history into market state once, then ingests its ticks — with, when
/// <see cref="PricingOptions.QuotePerpetuals"/> is on, the same quotes for each registered perpetual on a quoted index.
/// </summary>
public sealed class FeedService(ConfiguredFeed configured, QuoteIngestor ingestor, MarketStateStore market, InstrumentCatalog catalog, IOptions<PricingOptions> options, TimeProvider time, ILogger<FeedService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var feed = configured.Feed;
        if (feed is null)
        {
            logger.LogInformation("No feed configured; quotes arrive only through IngestQuotes");
            return;
        }

        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await RunAsync(feed, stoppingToken);
                return;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is StackExchange.Redis.RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Feed {Feed} lost Redis; restarting in 1 s", feed.Name);
                await Task.Delay(TimeSpan.FromSeconds(1), time, stoppingToken);
            }
        }
    }

    private async Task RunAsync(IQuoteFeed source, CancellationToken stoppingToken)
    {
        var today = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
        using (var activity = QuoteIngestor.ActivitySource.StartActivity("seed history"))
        {
            var history = source.History(today);
            foreach (var (instrument, closes) in history)
            {
                await market.UpsertDailyClosesAsync(instrument, closes.Select(c => new DailyClose(c.Date.DayNumber - DateOnly.FromDateTime(DateTime.UnixEpoch).DayNumber, c.Close)));
            }

            activity?.SetTag("pricing.instruments", history.Count);
            logger.LogInformation("Feed {Feed} seeded {Days} days of history for {Count} instruments", source.Name, history.Values.FirstOrDefault()?.Count ?? 0, history.Count);
        }

        await foreach (var batch in source.StreamAsync(stoppingToken))
        {
            await ingestor.IngestAsync(options.Value.QuotePerpetuals ? WithPerpetuals(batch) : batch, source.Name);
        }

        logger.LogInformation("Feed {Feed} ended", source.Name);
    }

    /// <summary>The batch plus, for each tick of an index with registered perpetuals, the same quote for each of them.</summary>
    private IReadOnlyList<Tick> WithPerpetuals(IReadOnlyList<Tick> batch)
    {
        var derived = batch.SelectMany(tick => catalog.PerpetualsOn(tick.InstrumentId).Select(perpetual => tick with { InstrumentId = perpetual.InstrumentId })).ToArray();
        return derived.Length == 0 ? batch : [.. batch, .. derived];
    }
}
