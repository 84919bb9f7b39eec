using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing;

/// <summary>
/// At start, loads the instrument registry and teaches the tick validator the newest stored quote time per venue and
/// instrument, so a restarted pricing service accepts registered instruments and still rejects ticks older than what
/// market state already holds.
/// </summary>
public sealed class TickOrderSeeder(MarketStateStore market, TickValidator validator, InstrumentCatalog catalog, ILogger<TickOrderSeeder> logger) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            await catalog.RefreshAsync();
            var quotes = await market.GetQuotesAsync([]);
            foreach (var quote in quotes)
            {
                validator.Seed(quote.Venue, quote.InstrumentId, quote.Timestamp.ToDateTimeOffset());
            }

            logger.LogInformation("Tick ordering seeded from {Count} stored quotes", quotes.Count);
        }
        catch (StackExchange.Redis.RedisException ex)
        {
            // Redis down at start: readiness reports it; ordering then starts from the first tick received.
            logger.LogWarning(ex, "Could not seed tick ordering from market state");
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
