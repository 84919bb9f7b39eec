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

    [Fact]
    public async Task A_return_matrix_is_reused_while_its_closes_are_the_same_and_rebuilt_when_one_moves()
    {
        await redis.FlushAsync();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
        var today = DailyClose.DayOf(time.GetUtcNow());
        var market = new MarketStateStore(redis.Connection!, Options.Create(new MarketStateOptions()), time);
        await market.UpsertDailyClosesAsync("X", [new(today - 2, 100), new(today - 1, 101), new(today, 102)]);
        await market.UpsertDailyClosesAsync("Y", [new(today - 2, 50), new(today - 1, 50), new(today, 49)]);
        var inputs = new RiskInputs(market, new HistoryCache(market, time));

        var first = await inputs.LoadReturnsAsync(["X", "Y"], 2);
        Assert.Equal(new[,] { { Math.Log(101.0 / 100), 0 }, { Math.Log(102.0 / 101), Math.Log(49.0 / 50) } }, first.Values);
        Assert.Same(first, await inputs.LoadReturnsAsync(["X", "Y"], 2)); // the same closes: the same matrix
        Assert.NotSame(first, await inputs.LoadReturnsAsync(["Y", "X"], 2)); // other columns: its own

        // Today's close of X moves (a tick): the matrix is built again from the new close.
        await market.UpsertDailyClosesAsync("X", [new(today, 103)]);
        var moved = await inputs.LoadReturnsAsync(["X", "Y"], 2);
        Assert.NotSame(first, moved);
        Assert.Equal(Math.Log(103.0 / 101), moved.Values[1, 0], 15);
        Assert.Equal(Math.Log(101.0 / 100), moved.Values[0, 0], 15);
    }
}
