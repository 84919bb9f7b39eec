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
    public async Task Registered_instruments_are_read_at_once_in_the_order_asked_with_null_for_the_unregistered()
    {
        var store = Store();
        Assert.Empty(await store.GetRegisteredInstrumentsAsync(Array.Empty<string>()));
        await store.UpsertInstrumentsAsync(
        [
            new Instrument { InstrumentId = "BTC-PERP", Kind = InstrumentKind.Perpetual, UnderlyingId = "BTC" },
            new Instrument { InstrumentId = "ETH-PERP", Kind = InstrumentKind.Perpetual, UnderlyingId = "ETH" },
        ]);

        var read = await store.GetRegisteredInstrumentsAsync(["ETH-PERP", "BTC", "BTC-PERP", "ETH-PERP"]);

        Assert.Equal(["ETH-PERP", null, "BTC-PERP", "ETH-PERP"], read.Select(i => i?.InstrumentId));
        Assert.Equal("ETH", read[0]!.UnderlyingId);
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
    public async Task A_venue_that_stopped_quoting_leaves_the_book_and_a_crossed_book_is_flagged()
    {
        var store = Store();
        await store.WriteQuotesAsync([new Quote { Venue = "A", InstrumentId = "Z", Bid = 50m, Ask = 150m, Timestamp = Now.AddSeconds(-61).ToTimestamp() }]);
        await store.WriteQuotesAsync([new Quote { Venue = "B", InstrumentId = "Z", Bid = 99m, Ask = 101m, Timestamp = Now.ToTimestamp() }]);

        // A's quote is 61 s older than B's (window 60 s): only B counts. A's quote stays readable as A's last quote.
        var price = Assert.Single(await store.GetPricesAsync(["Z"]));
        Assert.Equal((99m, 101m, false), (price.Bid.ToDecimal(), price.Ask.ToDecimal(), price.Crossed));
        Assert.Equal(2, (await store.GetQuotesAsync(["Z"])).Count);

        // Two fresh venues whose quotes cross each other: the consolidated book says so.
        await store.WriteQuotesAsync([new Quote { Venue = "C", InstrumentId = "Z", Bid = 101.5m, Ask = 102m, Timestamp = Now.ToTimestamp() }]);
        price = Assert.Single(await store.GetPricesAsync(["Z"]));
        Assert.Equal((101.5m, 101m, true), (price.Bid.ToDecimal(), price.Ask.ToDecimal(), price.Crossed));
    }

    [Fact]
    public async Task Quarantined_quotes_are_kept_apart_from_the_book_and_replaced_per_instrument()
    {
        var store = Store();
        var held = new Quote { Venue = "C", InstrumentId = "Z", Bid = 10m, Ask = 11m, Timestamp = Now.ToTimestamp() };
        await store.WriteQuotesAsync([new Quote { Venue = "A", InstrumentId = "Z", Bid = 99m, Ask = 101m, Timestamp = Now.ToTimestamp() }],
            new Dictionary<string, IReadOnlyList<Quote>> { ["Z"] = [held] });
        Assert.Equal([held], await store.GetQuarantinedAsync(["Z"]));
        Assert.Equal(100m, Assert.Single(await store.GetPricesAsync(["Z"])).Mid.ToDecimal());
        var (quotes, quarantined) = (await store.GetBooksAsync(["Z"]))["Z"];
        Assert.Equal(("A", 1), (Assert.Single(quotes).Venue, quarantined.Count));

        await store.WriteQuotesAsync([], new Dictionary<string, IReadOnlyList<Quote>> { ["Z"] = [] });
        Assert.Empty(await store.GetQuarantinedAsync(["Z"]));
    }

    [Fact]
    public async Task Imported_closes_upsert_by_day_and_raise_the_history_version()
    {
        var store = Store();
        Assert.Equal(0, await store.GetHistoryVersionAsync("X"));
        Assert.Equal((0, 3), await store.UpsertDailyClosesAsync("X", [new(10, 100), new(11, 101), new(12, 102)]));
        Assert.Equal((1, 4), await store.UpsertDailyClosesAsync("X", [new(12, 103), new(13, 104)])); // a correction and a new day
        Assert.Equal([100.0, 101.0, 103.0, 104.0], (await store.GetDailyClosesAsync("X", 10)).Select(c => c.Close));
        Assert.Equal(2, await store.GetHistoryVersionAsync("X"));

        // A live quote writes only today's close and leaves the version (closed days did not change).
        await store.WriteQuotesAsync([new Quote { Venue = "A", InstrumentId = "X", Bid = 9m, Ask = 11m, Timestamp = Now.ToTimestamp() }]);
        Assert.Equal(2, await store.GetHistoryVersionAsync("X"));
    }
}
