using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core.Feeds;

namespace RebalanceMesh.Pricing;

/// <summary>Runs the configured feed: seeds its history into market state once, then ingests its ticks.</summary>
public sealed class FeedService(ConfiguredFeed configured, QuoteIngestor ingestor, MarketStateStore market, TimeProvider time, ILogger<FeedService> logger) : BackgroundService
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
            await ingestor.IngestAsync(batch, source.Name);
        }

        logger.LogInformation("Feed {Feed} ended", source.Name);
    }
}
