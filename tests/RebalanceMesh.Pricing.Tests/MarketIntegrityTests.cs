using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Pricing.Tests;

/// <summary>
/// Market data as an outside caller can break it (the defects found from outside, issue 15): ghost venues, ticks from
/// 1970, a known venue gone rogue, crossed books — and daily history loaded through its own path.
/// </summary>
public sealed class MarketIntegrityTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly PricingService.PricingServiceClient _client;

    public MarketIntegrityTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>
        {
            ["Pricing:Feed"] = "none",
            ["Pricing:Instruments:0"] = "CAC",
            ["Pricing:Instruments:1"] = "DAX",
            ["Pricing:Instruments:2"] = "USD",
            ["Pricing:VenueInstruments:FX:0"] = "USD",
        });
        _client = new PricingService.PricingServiceClient(_server.CreateMeshInvoker());
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Quote Quote(string venue, string instrument, decimal bid, decimal ask, DateTimeOffset at) => new()
    {
        Venue = venue, InstrumentId = instrument, Bid = bid, Ask = ask, BidSize = 10m, AskSize = 10m, Timestamp = at.ToTimestamp(),
    };

    private async Task<IngestQuotesResponse> IngestAsync(params Quote[] quotes)
    {
        using var call = _client.IngestQuotes();
        foreach (var quote in quotes)
        {
            await call.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = quote });
        }

        await call.RequestStream.CompleteAsync();
        return await call;
    }

    private async Task<ConsolidatedPrice> PriceAsync(string instrument) =>
        (await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { instrument } })).Prices.Single();

    [Fact]
    public async Task Ghost_venues_ancient_ticks_and_rogue_venues_cannot_move_a_price()
    {
        var now = DateTimeOffset.UtcNow;
        var ok = await IngestAsync(
            Quote("SIM-A", "CAC", 1966m, 1967m, now.AddSeconds(-2)),
            Quote("SIM-B", "CAC", 1965.5m, 1967.5m, now.AddSeconds(-2)),
            Quote("SIM-A", "DAX", 2083m, 2084.1m, now.AddSeconds(-2)));
        Assert.Equal(3, ok.AcceptedCount);

        var response = await IngestAsync(
            Quote("HO-GHOST", "CAC", 983.65m, 1964.9m, now.AddSeconds(-1)),                 // nobody configured this venue
            Quote("SIM-C", "DAX", 1091m, 1093.14m, DateTimeOffset.UnixEpoch),               // a tick from 1970 on a venue new to DAX
            Quote("SIM-C", "CAC", 983.65m, 1964.9m, now.AddSeconds(-1)),                    // a known venue gone rogue: mid −25 %
            Quote("FX", "CAC", 1966m, 1967m, now.AddSeconds(-1)));                          // FX lists only USD
        Assert.Equal(0, response.AcceptedCount);
        Assert.Equal(
            [RejectReason.UnknownVenue, RejectReason.Stale, RejectReason.Quarantined, RejectReason.UnknownVenue],
            response.Rejections.Select(r => r.Reason));

        // Nothing moved: CAC at 1966.5, not crossed; DAX at 2083.55; the rogue quote is listed apart, as quarantined.
        var cac = await PriceAsync("CAC");
        Assert.Equal((1966m, 1967m, 1966.5m, false), (cac.Bid.ToDecimal(), cac.Ask.ToDecimal(), cac.Mid.ToDecimal(), cac.Crossed));
        Assert.Equal(2083.55m, (await PriceAsync("DAX")).Mid.ToDecimal());
        var quotes = await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "CAC" } });
        Assert.Equal(["SIM-A", "SIM-B"], quotes.Quotes.Select(q => q.Venue));
        Assert.Equal("SIM-C", Assert.Single(quotes.Quarantined).Venue);

        // The market really moves there: SIM-A's tick confirms SIM-C's level (both enter), SIM-B follows in line.
        var confirmed = await IngestAsync(Quote("SIM-A", "CAC", 1474m, 1475m, now), Quote("SIM-B", "CAC", 1473.5m, 1475.5m, now));
        Assert.Equal(2, confirmed.AcceptedCount);
        Assert.Empty((await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "CAC" } })).Quarantined);
        cac = await PriceAsync("CAC");
        Assert.Equal((1474m, 1475m, false), (cac.Bid.ToDecimal(), cac.Ask.ToDecimal(), cac.Crossed));
        Assert.Equal(3, (await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "CAC" } })).Quotes.Count);
    }

    [Fact]
    public async Task A_crossed_consolidated_book_is_flagged_in_prices_and_valuations()
    {
        var now = DateTimeOffset.UtcNow;
        await IngestAsync(Quote("SIM-A", "DAX", 99.9m, 100.1m, now), Quote("SIM-B", "DAX", 100.3m, 100.5m, now));
        Assert.True((await PriceAsync("DAX")).Crossed);
        var valuation = (await _client.PriceInstrumentsAsync(new PriceInstrumentsRequest { Items = { new ValuationItem { InstrumentId = "DAX" } } })).Valuations.Single();
        Assert.True(valuation.Crossed);
        Assert.False(valuation.Stale);
    }

    [Fact]
    public async Task Daily_history_is_imported_corrected_and_read_back_apart_from_live_quotes()
    {
        var today = DateTimeOffset.UtcNow.UtcDateTime.Date;
        DailyClosePoint Close(int daysAgo, decimal close) => new() { Day = Timestamp.FromDateTime(DateTime.SpecifyKind(today.AddDays(-daysAgo), DateTimeKind.Utc)), Close = close };

        // Five days of USD closes 100 … 104, stored as given (not mixed with any venue's live quote).
        var first = await _client.ImportPriceHistoryAsync(new ImportPriceHistoryRequest { InstrumentId = "USD", Closes = { Close(5, 100m), Close(4, 101m), Close(3, 102m), Close(2, 103m), Close(1, 104m) } });
        Assert.Equal((5, 0, 5), (first.StoredCount, first.ReplacedCount, first.TotalCount));

        // Importing the same again is idempotent; a correction of one day replaces it.
        var again = await _client.ImportPriceHistoryAsync(new ImportPriceHistoryRequest { InstrumentId = "USD", Closes = { Close(5, 100m), Close(2, 103.5m) } });
        Assert.Equal((2, 2, 5), (again.StoredCount, again.ReplacedCount, again.TotalCount));
        var history = await _client.GetPriceHistoryAsync(new GetPriceHistoryRequest { InstrumentId = "USD", DailyCount = 10 });
        Assert.Equal([100.0, 101.0, 102.0, 103.5, 104.0], history.DailyCloses.Select(c => c.Price));
        Assert.Equal(Timestamp.FromDateTime(DateTime.SpecifyKind(today.AddDays(-1), DateTimeKind.Utc)), history.DailyCloses[^1].Time);

        // No quote, no consolidated price: history is not market state's live side.
        var quotes = await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "USD" } });
        Assert.Empty(quotes.Quotes);
        Assert.Empty(quotes.Prices);

        // A live quote on the venue that lists USD writes today's close after them; yesterday's import stays.
        Assert.Equal(1, (await IngestAsync(Quote("FX", "USD", 0.9195m, 0.9205m, DateTimeOffset.UtcNow))).AcceptedCount);
        history = await _client.GetPriceHistoryAsync(new GetPriceHistoryRequest { InstrumentId = "USD", DailyCount = 10 });
        Assert.Equal([100.0, 101.0, 102.0, 103.5, 104.0, 0.92], history.DailyCloses.Select(c => c.Price));
    }

    [Fact]
    public async Task A_history_import_is_validated_field_by_field()
    {
        var tomorrow = Timestamp.FromDateTime(DateTime.UtcNow.Date.AddDays(1));
        var yesterday = Timestamp.FromDateTime(DateTime.UtcNow.Date.AddDays(-1));
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.ImportPriceHistoryAsync(new ImportPriceHistoryRequest
        {
            InstrumentId = "USD",
            Closes =
            {
                new DailyClosePoint { Day = tomorrow, Close = 1m },
                new DailyClosePoint { Day = yesterday, Close = new DecimalValue { Value = "NaN" } },
                new DailyClosePoint { Day = yesterday, Close = -1m },
                new DailyClosePoint { Close = 1m },
                new DailyClosePoint { Day = yesterday, Close = 2m },
                new DailyClosePoint { Day = yesterday, Close = 3m },
            },
        }).ResponseAsync, "closes[0].day");
        Assert.Equal(["closes[0].day", "closes[1].close", "closes[2].close", "closes[3].day", "closes[5].day"], fields);

        await RpcAssert.InvalidArgumentAsync(() => _client.ImportPriceHistoryAsync(new ImportPriceHistoryRequest
        {
            InstrumentId = "NOT-KNOWN",
            Closes = { new DailyClosePoint { Day = yesterday, Close = 1m } },
        }).ResponseAsync, "instrument_id");
        await RpcAssert.InvalidArgumentAsync(() => _client.ImportPriceHistoryAsync(new ImportPriceHistoryRequest { InstrumentId = "USD" }).ResponseAsync, "closes");
        Assert.Empty((await _client.GetPriceHistoryAsync(new GetPriceHistoryRequest { InstrumentId = "USD", DailyCount = 10 })).DailyCloses);
    }
}
