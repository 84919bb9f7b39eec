using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.BuildingBlocks.Tests;

public sealed class MarketStateTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time = new(Now);

    public Task InitializeAsync() => redis.FlushAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private MarketStateStore Store(int maxCloses = 5_200) =>
        new(redis.Connection!, Options.Create(new MarketStateOptions { StaleAfter = TimeSpan.FromMinutes(1), MaxDailyCloses = maxCloses }), _time);

    [Fact]
    public async Task Consolidates_the_best_bid_and_ask_across_venues_and_flags_staleness()
    {
        var store = Store();
        await store.WriteQuotesAsync(
        [
            new Quote { Venue = "A", InstrumentId = "X", Bid = 99m, Ask = 101m, Timestamp = Now.AddSeconds(-5).ToTimestamp() },
            new Quote { Venue = "B", InstrumentId = "X", Bid = 99.5m, Ask = 102m, Timestamp = Now.ToTimestamp() },
        ]);
        var price = Assert.Single(await store.GetPricesAsync(["X"]));
        Assert.Equal((99.5m, 101m, 100.25m), (price.Bid.ToDecimal(), price.Ask.ToDecimal(), price.Mid.ToDecimal()));
        Assert.False(price.Stale);
        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.True(Assert.Single(await store.GetPricesAsync(["X"])).Stale);
        Assert.Equal(["X"], await store.GetQuotedInstrumentsAsync());
        Assert.Equal(2, (await store.GetQuotesAsync([])).Count);
    }

    [Fact]
    public async Task Daily_closes_upsert_by_day_and_stay_bounded()
    {
        var store = Store(maxCloses: 3);
        await store.UpsertDailyClosesAsync("X", [new(1, 10), new(2, 11), new(3, 12), new(4, 13)]);
        await store.UpsertDailyClosesAsync("X", [new(4, 14)]);
        var closes = await store.GetDailyClosesAsync("X", 10);
        Assert.Equal([new DailyClose(2, 11), new DailyClose(3, 12), new DailyClose(4, 14)], closes);
        Assert.Equal([new DailyClose(4, 14)], await store.GetDailyClosesAsync("X", 1));
    }

    [Fact]
    public async Task Writing_a_quote_records_todays_close()
    {
        var store = Store();
        await store.WriteQuotesAsync([new Quote { Venue = "A", InstrumentId = "Y", Bid = 9m, Ask = 11m, Timestamp = Now.ToTimestamp() }]);
        var close = Assert.Single(await store.GetDailyClosesAsync("Y", 5));
        Assert.Equal((DailyClose.DayOf(Now), 10.0), (close.Day, close.Close));
        Assert.Equal(new DateOnly(2026, 11, 25), close.Date);
    }

    [Fact]
    public async Task A_batch_spanning_several_days_closes_each_day_at_its_last_consolidated_mid()
    {
        // Venue B quoted Z yesterday-but-two before the batch; the batch backfills A over three days.
        var store = Store();
        await store.WriteQuotesAsync([new Quote { Venue = "B", InstrumentId = "Z", Bid = 95m, Ask = 105m, Timestamp = Now.AddDays(-3).ToTimestamp() }]);
        await store.WriteQuotesAsync(
        [
            new Quote { Venue = "A", InstrumentId = "Z", Bid = 98m, Ask = 104m, Timestamp = Now.AddDays(-2).AddHours(-1).ToTimestamp() },
            new Quote { Venue = "A", InstrumentId = "Z", Bid = 99m, Ask = 103m, Timestamp = Now.AddDays(-2).ToTimestamp() },
            new Quote { Venue = "A", InstrumentId = "Z", Bid = 100m, Ask = 106m, Timestamp = Now.AddDays(-1).ToTimestamp() },
            new Quote { Venue = "A", InstrumentId = "Z", Bid = 101m, Ask = 102m, Timestamp = Now.ToTimestamp() },
        ]);

        // Day −2 closes on its last quote with B's: best bid 99, best ask 103 → 101; day −1: bid 100, ask 105 → 102.5;
        // today: bid 101, ask 102 → 101.5. The day before the batch keeps B's own close.
        var today = DailyClose.DayOf(Now);
        Assert.Equal(
            [new DailyClose(today - 3, 100), new DailyClose(today - 2, 101), new DailyClose(today - 1, 102.5), new DailyClose(today, 101.5)],
            await store.GetDailyClosesAsync("Z", 10));
    }
}
