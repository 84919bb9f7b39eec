using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Pricing.Tests;

/// <summary>
/// Bad input at volume: 10,000 random and mutated requests to each of pricing's RPCs (quote ingestion streams of one
/// to three quotes), as a mesh caller through the real gRPC stack. None may answer Unknown or Internal; an instrument
/// upsert refused as invalid leaves the registry as it was.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class PricingFuzzTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly GrpcTestServer<Program> _server = new(redis, new Dictionary<string, string?>
    {
        ["Pricing:Feed"] = "none",
        ["Pricing:Instruments:0"] = "DAX",
    });

    public Task InitializeAsync() => redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    [Fact]
    public async Task Ten_thousand_random_and_mutated_requests_per_RPC_never_answer_Unknown_or_Internal_and_rejected_writes_change_nothing()
    {
        var invoker = _server.CreateMeshInvoker();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        var option = new Instrument
        {
            InstrumentId = "DAX-C100",
            Kind = InstrumentKind.Option,
            UnderlyingId = "DAX",
            Strike = 100m,
            OptionRight = OptionRight.Call,
            Expiry = DateTimeOffset.UtcNow.AddDays(90).ToTimestamp(),
            QuoteCurrency = "EUR",
        };
        var overrides = new MarketOverrides { UnderlyingPrice = 100m, Volatility = 0.2, RiskFreeRate = 0.02 };
        var outcomes = await new RequestFuzzer(invoker, seed: 5).RunAsync(
            PricingService.Descriptor,
            new Dictionary<string, IMessage>
            {
                ["IngestQuotes"] = new IngestQuotesRequest { Quote = new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = 99.9m, Ask = 100.1m, BidSize = 10m, AskSize = 10m, Timestamp = now } },
                ["GetQuotes"] = new GetQuotesRequest { InstrumentIds = { "DAX" } },
                ["PriceInstruments"] = new PriceInstrumentsRequest { Items = { new ValuationItem { Instrument = option, Overrides = overrides } } },
                ["StreamQuotes"] = new StreamQuotesRequest { InstrumentIds = { "DAX" } },
                ["UpsertInstruments"] = new UpsertInstrumentsRequest { Instruments = { option } },
                ["ListInstruments"] = new ListInstrumentsRequest { UnderlyingId = "DAX" },
                ["ComputeImpliedVolatilities"] = new ComputeImpliedVolatilitiesRequest { Items = { new ImpliedVolatilityItem { Instrument = option, Price = 5m, Overrides = overrides } } },
                ["GetVolSurface"] = new GetVolSurfaceRequest { UnderlyingId = "DAX" },
                ["GetPriceHistory"] = new GetPriceHistoryRequest { InstrumentId = "DAX", DailyCount = 5, IntradayCount = 5 },
                ["ImportPriceHistory"] = new ImportPriceHistoryRequest
                {
                    InstrumentId = "DAX",
                    Closes = { new DailyClosePoint { Day = DateTimeOffset.UtcNow.AddDays(-1).ToTimestamp(), Close = 101.5m } },
                },
            },
            writes: new HashSet<string> { "IngestQuotes", "UpsertInstruments", "ImportPriceHistory" },
            // What the instrument upsert and the history import write (quotes and surfaces also change in the background as
            // quotes arrive).
            digest: () => RequestFuzzer.DigestAsync(redis.Connection!.GetDatabase(), "mkt:instrument*", "mkt:registry", "mkt:daily*"));

        Assert.True(outcomes["UpsertInstruments"].GetValueOrDefault(StatusCode.InvalidArgument) > RequestFuzzer.PerRpc / 10, string.Join(", ", outcomes["UpsertInstruments"]));
        Assert.True(outcomes["ImportPriceHistory"].GetValueOrDefault(StatusCode.OK) > 0, string.Join(", ", outcomes["ImportPriceHistory"]));
        Assert.NotEmpty((await new PricingService.PricingServiceClient(invoker).ListInstrumentsAsync(new ListInstrumentsRequest())).Instruments);
    }
}
