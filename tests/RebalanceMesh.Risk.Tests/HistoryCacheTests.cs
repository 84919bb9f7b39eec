using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Risk.Tests;

public sealed class HistoryCacheTests(RedisServer redis) : IClassFixture<RedisServer>
{
    [Fact]
    public async Task An_import_is_seen_on_the_next_call_even_after_an_empty_answer()
    {
        await redis.FlushAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
        var today = DailyClose.DayOf(time.GetUtcNow());
        var market = new MarketStateStore(redis.Connection!, Options.Create(new MarketStateOptions()), time);
        var cache = new HistoryCache(market, time);

        // No history yet: the empty answer must not stick (it did, for five minutes).
        Assert.Empty(await cache.GetAsync("X", 3));
        await market.UpsertDailyClosesAsync("X", [new(today - 2, 100), new(today - 1, 101)]);
        Assert.Equal([100.0, 101.0], (await cache.GetAsync("X", 3)).Select(c => c.Close));

        // A correction of a closed day is seen at once too.
        await market.UpsertDailyClosesAsync("X", [new(today - 1, 999)]);
        Assert.Equal([100.0, 999.0], (await cache.GetAsync("X", 3)).Select(c => c.Close));
    }

    [Fact]
    public async Task Closed_days_are_read_once_per_version_and_today_on_every_call()
    {
        await redis.FlushAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
        var today = DailyClose.DayOf(time.GetUtcNow());
        var market = new MarketStateStore(redis.Connection!, Options.Create(new MarketStateOptions()), time);
        await market.UpsertDailyClosesAsync("X", [new(today - 2, 100), new(today - 1, 101), new(today, 102)]);
        var cache = new HistoryCache(market, time);
        Assert.Equal([100.0, 101.0, 102.0], (await cache.GetAsync("X", 3)).Select(c => c.Close));

        // Behind the version's back (no import raised it), yesterday changes in Redis: the cache keeps what it read,
        // which shows closed days are not re-read on every call. Today's close is.
        await redis.Connection!.GetDatabase().SortedSetAddAsync("mkt:daily:X", $"{today - 1}:555", today - 1);
        await redis.Connection!.GetDatabase().SortedSetRemoveAsync("mkt:daily:X", $"{today - 1}:101");
        await redis.Connection!.GetDatabase().SortedSetAddAsync("mkt:daily:X", $"{today}:103", today);
        await redis.Connection!.GetDatabase().SortedSetRemoveAsync("mkt:daily:X", $"{today}:102");
        Assert.Equal([100.0, 101.0, 103.0], (await cache.GetAsync("X", 3)).Select(c => c.Close));
        Assert.Equal([101.0, 103.0], (await cache.GetAsync("X", 2)).Select(c => c.Close));

        // A new day reads the closed days again.
        time.Advance(TimeSpan.FromDays(1));
        Assert.Equal([100.0, 555.0, 103.0], (await cache.GetAsync("X", 3)).Select(c => c.Close));
    }
}
