using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Risk.Tests;

public sealed class HistoryCacheTests(RedisServer redis) : IClassFixture<RedisServer>
{
    [Fact]
    public async Task Today_is_always_fresh_and_closed_days_are_cached_for_minutes()
    {
        await redis.FlushAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
        var today = DailyClose.DayOf(time.GetUtcNow());
        var market = new MarketStateStore(redis.Connection!, Options.Create(new MarketStateOptions()), time);
        await market.UpsertDailyClosesAsync("X", [new(today - 2, 100), new(today - 1, 101), new(today, 102)]);
        var cache = new HistoryCache(market, time);

        Assert.Equal([100.0, 101.0, 102.0], (await cache.GetAsync("X", 3)).Select(c => c.Close));

        await market.UpsertDailyClosesAsync("X", [new(today, 103), new(today - 1, 999)]);
        Assert.Equal([100.0, 101.0, 103.0], (await cache.GetAsync("X", 3)).Select(c => c.Close)); // today fresh, yesterday cached
        Assert.Equal([101.0, 103.0], (await cache.GetAsync("X", 2)).Select(c => c.Close));

        time.Advance(TimeSpan.FromMinutes(6));
        Assert.Equal([100.0, 999.0, 103.0], (await cache.GetAsync("X", 3)).Select(c => c.Close)); // backfill visible after expiry
    }
}
