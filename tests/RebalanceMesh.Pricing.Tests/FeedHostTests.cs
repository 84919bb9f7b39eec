using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Pricing.Tests;

/// <summary>The feeds running inside the pricing host: history seeded, ticks stored, market.quotes coalesced.</summary>
public sealed class FeedHostTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    public Task InitializeAsync() => redis.FlushAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Theory]
    [InlineData("csv", "DAX", 50)]
    [InlineData("simulated", "BTC", 40)]
    public async Task Feed_seeds_history_streams_quotes_and_publishes_coalesced_events(string feed, string instrument, int historyDays)
    {
        await using var server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>
        {
            ["Pricing:Feed"] = feed,
            ["Pricing:Csv:WarmupRows"] = historyDays.ToString(),
            ["Pricing:Csv:RowsPerSecond"] = "100",
            ["Pricing:Simulated:HistoryDays"] = historyDays.ToString(),
            ["Pricing:Simulated:StepsPerSecond"] = "100",
            ["Pricing:PublishInterval"] = "00:00:00.200",
        });
        var client = new PricingService.PricingServiceClient(server.CreateMeshInvoker());
        var bus = server.Services.GetRequiredService<InMemoryEventBus>();

        var started = DateTime.UtcNow;
        while (bus.Published.Count(e => e.Topic == Topics.MarketQuotes) < 4)
        {
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(20), "no market.quotes events");
            await Task.Delay(50);
        }

        var elapsed = DateTime.UtcNow - started;
        var events = bus.Published.Where(e => e.Topic == Topics.MarketQuotes).ToArray();
        // 100 tick batches a second, but at most one event per 200 ms interval (plus the one in flight).
        Assert.True(events.Length <= (elapsed.TotalMilliseconds / 200) + 2, $"{events.Length} events in {elapsed.TotalMilliseconds} ms");
        var last = events[^1].ReadData(QuotesUpdated.Parser);
        Assert.Contains(last.Prices, p => p.InstrumentId == instrument);

        var quotes = await client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { instrument } });
        Assert.Equal(3, quotes.Quotes.Count); // one per configured venue
        Assert.Single(quotes.Prices);

        var closes = await server.Services.GetRequiredService<MarketStateStore>().GetDailyClosesAsync(instrument, 1_000);
        Assert.Equal(historyDays + 1, closes.Count); // seeded history plus today's live close
    }
}
