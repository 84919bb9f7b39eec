using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Testing;
using CoreRight = RebalanceMesh.Pricing.Core.OptionRight;

namespace RebalanceMesh.Pricing.Tests;

/// <summary>Instrument registry, implied volatility, volatility surfaces, quote streams and history through gRPC.</summary>
public sealed class OptionsAndStreamsTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private static readonly DateTimeOffset Expiry = DateTimeOffset.UtcNow.Date.AddDays(91);
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly PricingService.PricingServiceClient _client;

    public OptionsAndStreamsTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>
        {
            ["Pricing:Feed"] = "none",
            ["Pricing:Instruments:0"] = "UND",
            ["Pricing:DefaultRate"] = "0.02",
            ["Pricing:VolSurfaceInterval"] = "00:00:00.100",
            ["Pricing:PublishInterval"] = "00:00:00.050",
        });
        _client = new PricingService.PricingServiceClient(_server.CreateMeshInvoker());
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Instrument Option(string id, Contracts.Common.V1.OptionRight right, decimal strike) => new()
    {
        InstrumentId = id,
        Kind = InstrumentKind.Option,
        UnderlyingId = "UND",
        Strike = strike,
        OptionRight = right,
        Expiry = Expiry.ToTimestamp(),
        QuoteCurrency = "USD",
    };

    private async Task IngestAsync(params (string Instrument, decimal Bid, decimal Ask)[] quotes)
    {
        using var call = _client.IngestQuotes();
        foreach (var (instrument, bid, ask) in quotes)
        {
            await call.RequestStream.WriteAsync(new IngestQuotesRequest
            {
                Quote = new Quote { Venue = "SIM-A", InstrumentId = instrument, Bid = bid, Ask = ask, Timestamp = DateTimeOffset.UtcNow.ToTimestamp() },
            });
        }

        await call.RequestStream.CompleteAsync();
        var response = await call;
        Assert.Equal(0, response.RejectedCount);
    }

    private static decimal OptionMid(CoreRight right, double strike, double vol)
    {
        var years = (Expiry - DateTimeOffset.UtcNow).TotalDays / 365.0;
        return decimal.Round((decimal)Core.BlackScholes.Value(right, 100, strike, years, 0.02, 0, vol).Price, 6);
    }

    [Fact]
    public async Task A_replica_values_by_id_an_instrument_registered_on_another_and_keeps_each_item_in_its_place()
    {
        // Replica B starts before the option exists: its catalog has never seen it, so it must read the registry when asked.
        await using var replicaB = new GrpcTestServer<Program>(_redis, new Dictionary<string, string?>
        {
            ["Pricing:Feed"] = "none",
            ["Pricing:Instruments:0"] = "UND",
            ["Pricing:DefaultRate"] = "0.02",
        });
        var clientB = new PricingService.PricingServiceClient(replicaB.CreateMeshInvoker());
        await IngestAsync(("UND", 99.99m, 100.01m));
        var call = Option("UND-C105", Contracts.Common.V1.OptionRight.Call, 105);
        await _client.UpsertInstrumentsAsync(new UpsertInstrumentsRequest { Instruments = { call } });

        // By id, with terms, and a spot asset no one registered, in one request: B resolves the ids in one read.
        var overrides = new MarketOverrides { Volatility = 0.25 };
        var request = new PriceInstrumentsRequest
        {
            ValuationTime = DateTimeOffset.UtcNow.ToTimestamp(),
            Items =
            {
                new ValuationItem { InstrumentId = "UND" },
                new ValuationItem { InstrumentId = "UND-C105", Overrides = overrides },
                new ValuationItem { Instrument = call, Overrides = overrides },
                new ValuationItem { InstrumentId = "UND-C105", Overrides = overrides },
            },
        };
        var valued = (await clientB.PriceInstrumentsAsync(request)).Valuations;

        Assert.Equal(["UND", "UND-C105", "UND-C105", "UND-C105"], valued.Select(v => v.InstrumentId));
        Assert.Equal([InstrumentKind.Spot, InstrumentKind.Option, InstrumentKind.Option, InstrumentKind.Option], valued.Select(v => v.Kind));
        Assert.All(valued, v => Assert.Equal(string.Empty, v.Error));
        Assert.Equal(100m, valued[0].Price.ToDecimal());
        var years = (Expiry - request.ValuationTime.ToDateTimeOffset()).TotalDays / 365.0;
        var expected = Core.BlackScholes.Value(CoreRight.Call, 100, 105, years, 0.02, 0, 0.25).Price;
        Assert.All(valued.Skip(1), v => Assert.Equal(expected, (double)v.Price.ToDecimal(), 1e-8));
    }

    [Fact]
    public async Task Registered_options_are_quotable_and_build_a_surface_that_valuation_uses()
    {
        await RpcAssert.InvalidArgumentAsync(
            () => _client.UpsertInstrumentsAsync(new UpsertInstrumentsRequest { Instruments = { new Instrument { InstrumentId = "X", Kind = InstrumentKind.Option, UnderlyingId = "UND" } } }).ResponseAsync,
            "instruments[0].strike");
        // Found by the fuzz: an option registered as its own underlying broke the surface build (Internal).
        await RpcAssert.InvalidArgumentAsync(
            () => _client.UpsertInstrumentsAsync(new UpsertInstrumentsRequest { Instruments = { Option("UND", Contracts.Common.V1.OptionRight.Call, 100) } }).ResponseAsync,
            "instruments[0].underlying_id");
        await _client.UpsertInstrumentsAsync(new UpsertInstrumentsRequest
        {
            Instruments =
            {
                Option("UND-P90", Contracts.Common.V1.OptionRight.Put, 90),
                Option("UND-C100", Contracts.Common.V1.OptionRight.Call, 100),
                Option("UND-C110", Contracts.Common.V1.OptionRight.Call, 110),
            },
        });
        Assert.Equal(3, (await _client.ListInstrumentsAsync(new ListInstrumentsRequest { UnderlyingId = "UND" })).Instruments.Count);

        // A skew: 30 % at 90, 25 % at 100, 21 % at 110, quoted with a one-cent spread around the model mid.
        var p90 = OptionMid(CoreRight.Put, 90, 0.30);
        var c100 = OptionMid(CoreRight.Call, 100, 0.25);
        var c110 = OptionMid(CoreRight.Call, 110, 0.21);
        await IngestAsync(("UND", 99.99m, 100.01m), ("UND-P90", p90 - 0.005m, p90 + 0.005m), ("UND-C100", c100 - 0.005m, c100 + 0.005m), ("UND-C110", c110 - 0.005m, c110 + 0.005m));

        GetVolSurfaceResponse? surface = null;
        for (var i = 0; i < 100 && surface is null; i++)
        {
            try
            {
                surface = await _client.GetVolSurfaceAsync(new GetVolSurfaceRequest { UnderlyingId = "UND" });
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
            {
                await Task.Delay(50);
            }
        }

        var slice = Assert.Single(surface!.Surface.Slices);
        Assert.Equal([0.30, 0.25, 0.21], slice.Points.Select(p => Math.Round(p.ImpliedVolatility, 6)));

        // Valuation without a volatility override takes it from the surface.
        var valuation = await _client.PriceInstrumentsAsync(new PriceInstrumentsRequest { Items = { new ValuationItem { Instrument = Option("UND-C100", Contracts.Common.V1.OptionRight.Call, 100) } } });
        Assert.Equal(0.25, valuation.Valuations[0].Volatility, 5);
    }

    [Fact]
    public async Task Implied_volatilities_round_trip_and_explain_impossible_prices()
    {
        var now = DateTimeOffset.UtcNow;
        var price = Core.BlackScholes.Value(CoreRight.Call, 100, 95, (Expiry - now).TotalDays / 365.0, 0.02, 0, 0.4).Price;
        var response = await _client.ComputeImpliedVolatilitiesAsync(new ComputeImpliedVolatilitiesRequest
        {
            ValuationTime = now.ToTimestamp(),
            Items =
            {
                new ImpliedVolatilityItem { Instrument = Option("C95", Contracts.Common.V1.OptionRight.Call, 95), Price = (decimal)Math.Round(price, 12), Overrides = new MarketOverrides { UnderlyingPrice = 100m } },
                new ImpliedVolatilityItem { Instrument = Option("C95", Contracts.Common.V1.OptionRight.Call, 95), Price = 1m, Overrides = new MarketOverrides { UnderlyingPrice = 100m } },
                new ImpliedVolatilityItem { Instrument = Option("C95", Contracts.Common.V1.OptionRight.Call, 95), Price = 2m },
            },
        });
        Assert.Equal(0.4, response.Results[0].ImpliedVolatility, 9);
        Assert.Contains("below the discounted intrinsic value", response.Results[1].Error);
        Assert.Contains("no price for 'UND'", response.Results[2].Error);
        await RpcAssert.InvalidArgumentAsync(
            () => _client.ComputeImpliedVolatilitiesAsync(new ComputeImpliedVolatilitiesRequest { Items = { new ImpliedVolatilityItem { Instrument = Option("C95", Contracts.Common.V1.OptionRight.Call, 95) } } }).ResponseAsync,
            "items[0].price");
    }

    [Fact]
    public async Task StreamQuotes_sends_a_snapshot_then_updates_and_history_is_kept()
    {
        await IngestAsync(("UND", 99m, 101m));
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        using var stream = _client.StreamQuotes(new StreamQuotesRequest { InstrumentIds = { "UND" } }, cancellationToken: cancel.Token);
        Assert.True(await stream.ResponseStream.MoveNext(cancel.Token));
        Assert.Equal(100m, Assert.Single(stream.ResponseStream.Current.Prices).Mid.ToDecimal());

        await IngestAsync(("UND", 101m, 103m));
        var mid = 0m;
        while (mid != 102m && await stream.ResponseStream.MoveNext(cancel.Token))
        {
            mid = Assert.Single(stream.ResponseStream.Current.Prices).Mid.ToDecimal(); // 100 may come first: the update of the first tick
        }

        Assert.Equal(102m, mid);

        var history = await _client.GetPriceHistoryAsync(new GetPriceHistoryRequest { InstrumentId = "UND", DailyCount = 10, IntradayCount = 10 });
        Assert.Equal([100.0, 102.0], history.Intraday.Select(p => p.Price));
        Assert.Equal(102.0, Assert.Single(history.DailyCloses).Price);
        await RpcAssert.InvalidArgumentAsync(() => _client.GetPriceHistoryAsync(new GetPriceHistoryRequest { InstrumentId = "UND", DailyCount = -1 }).ResponseAsync, "daily_count");
    }
}
