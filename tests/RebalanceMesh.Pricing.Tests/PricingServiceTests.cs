using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Testing;
using CoreRight = RebalanceMesh.Pricing.Core.OptionRight;

namespace RebalanceMesh.Pricing.Tests;

public sealed class PricingServiceTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly PricingService.PricingServiceClient _client;

    public PricingServiceTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>
        {
            ["Pricing:Feed"] = "none",
            ["Pricing:Instruments:0"] = "AAA",
            ["Pricing:Instruments:1"] = "BBB",
        });
        _client = new PricingService.PricingServiceClient(_server.CreateMeshInvoker());
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Quote Quote(string instrument, string bid, string ask, DateTimeOffset at, string venue = "SIM-A") => new()
    {
        Venue = venue,
        InstrumentId = instrument,
        Bid = new DecimalValue { Value = bid },
        Ask = new DecimalValue { Value = ask },
        BidSize = 10m,
        AskSize = 10m,
        Timestamp = at.ToTimestamp(),
    };

    [Fact]
    public async Task Client_tokens_read_quotes_and_valuations_and_change_nothing()
    {
        var now = DateTimeOffset.UtcNow;
        using (var ingest = _client.IngestQuotes())
        {
            await ingest.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = Quote("AAA", "99.5", "100.5", now.AddSeconds(-1)) });
            await ingest.RequestStream.CompleteAsync();
            Assert.Equal(1, (await ingest.ResponseAsync).AcceptedCount);
        }

        // A viewer (and so a trader or an admin) reads: quotes, valuations, the instruments.
        foreach (var role in new[] { "viewer", "trader", "admin" })
        {
            var client = new PricingService.PricingServiceClient(_server.CreateInvoker(TestAuth.Token(role)));
            Assert.Equal("100", (await client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "AAA" } })).Prices.Single().Mid.Value);
            Assert.Equal(100m, (await client.PriceInstrumentsAsync(new PriceInstrumentsRequest { Items = { new ValuationItem { InstrumentId = "AAA" } } })).Valuations.Single().Price.ToDecimal());
            Assert.NotNull(await client.ListInstrumentsAsync(new ListInstrumentsRequest()));
        }

        // Nothing a client token carries writes: not quotes, not instruments, not history — whatever its role says.
        foreach (var token in new[] { TestAuth.Token("admin"), TestAuth.Token("mesh") })
        {
            var client = new PricingService.PricingServiceClient(_server.CreateInvoker(token));
            using var ingest = client.IngestQuotes();
            try
            {
                await ingest.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = Quote("AAA", "1", "2", now) });
                await ingest.RequestStream.CompleteAsync();
            }
            catch (RpcException)
            {
                // The server may refuse the call before the client has written: a write to an ended call fails (as
                // CANCELLED); the call's own status, in its response, says why it ended.
            }

            var refused = await Assert.ThrowsAsync<RpcException>(() => ingest.ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
            Assert.Equal(StatusCode.PermissionDenied, (await Assert.ThrowsAsync<RpcException>(() => client.UpsertInstrumentsAsync(new UpsertInstrumentsRequest()).ResponseAsync)).StatusCode);
            Assert.Equal(StatusCode.PermissionDenied, (await Assert.ThrowsAsync<RpcException>(() => client.ImportPriceHistoryAsync(new ImportPriceHistoryRequest()).ResponseAsync)).StatusCode);
        }

        // A token naming itself "mesh" is a client like any other, and holds no client role: it reads nothing either.
        var impostor = new PricingService.PricingServiceClient(_server.CreateInvoker(TestAuth.Token("mesh")));
        Assert.Equal(StatusCode.PermissionDenied, (await Assert.ThrowsAsync<RpcException>(() => impostor.GetQuotesAsync(new GetQuotesRequest()).ResponseAsync)).StatusCode);
        var anonymous = new PricingService.PricingServiceClient(_server.CreateInvoker());
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => anonymous.GetQuotesAsync(new GetQuotesRequest()).ResponseAsync)).StatusCode);
        Assert.Equal("100", (await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "AAA" } })).Prices.Single().Mid.Value); // unchanged

        // Without client signing keys pricing serves mesh callers only.
        await using var meshOnly = new GrpcTestServer<Program>(_redis, new Dictionary<string, string?> { ["Pricing:Feed"] = "none", ["Auth:SigningKeys:0"] = string.Empty });
        var viewer = new PricingService.PricingServiceClient(meshOnly.CreateInvoker(TestAuth.Token("viewer")));
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => viewer.GetQuotesAsync(new GetQuotesRequest()).ResponseAsync)).StatusCode);
        Assert.NotEmpty((await new PricingService.PricingServiceClient(meshOnly.CreateMeshInvoker()).GetQuotesAsync(new GetQuotesRequest())).Prices);
    }

    [Fact]
    public async Task IngestQuotes_stores_good_ticks_and_rejects_bad_ones_with_reasons()
    {
        var now = DateTimeOffset.UtcNow;
        using var call = _client.IngestQuotes();
        var ticks = new[]
        {
            Quote("AAA", "99.5", "100.5", now.AddSeconds(-2)),
            Quote("AAA", "101", "100", now.AddSeconds(-1)),           // crossed
            Quote("AAA", "NaN", "100", now.AddSeconds(-1)),           // malformed
            Quote("AAA", "-1", "100", now.AddSeconds(-1)),            // negative
            Quote("ZZZ", "1", "2", now.AddSeconds(-1)),               // unknown instrument
            Quote("AAA", "99", "100", now.AddMinutes(10)),            // future
            Quote("AAA", "99", "100", now.AddSeconds(-3)),            // out of order
            Quote("BBB", "9.9", "10.1", now.AddSeconds(-1), "SIM-B"),
            Quote("AAA", "99.9", "100.1", now.AddSeconds(-1), "SIM-B"),
        };
        foreach (var tick in ticks)
        {
            await call.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = tick });
        }

        await call.RequestStream.CompleteAsync();
        var response = await call;

        Assert.Equal(3, response.AcceptedCount);
        Assert.Equal(6, response.RejectedCount);
        Assert.Equal(
            [RejectReason.CrossedBook, RejectReason.Malformed, RejectReason.NonPositivePrice, RejectReason.UnknownInstrument, RejectReason.FutureTimestamp, RejectReason.OutOfOrder],
            response.Rejections.Select(r => r.Reason));
        Assert.Equal([1L, 2, 3, 4, 5, 6], response.Rejections.Select(r => r.Index));

        var quotes = await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "AAA" } });
        Assert.Equal(2, quotes.Quotes.Count);
        var consolidated = Assert.Single(quotes.Prices);
        Assert.Equal(99.9m, consolidated.Bid.ToDecimal());   // best bid across venues
        Assert.Equal(100.1m, consolidated.Ask.ToDecimal());  // best ask across venues
        Assert.Equal(100m, consolidated.Mid.ToDecimal());
        Assert.False(consolidated.Stale);
    }

    [Fact]
    public async Task A_restarted_service_still_rejects_ticks_older_than_market_state()
    {
        var now = DateTimeOffset.UtcNow;
        using (var call = _client.IngestQuotes())
        {
            await call.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = Quote("BBB", "1", "2", now) });
            await call.RequestStream.CompleteAsync();
            Assert.Equal(1, (await call).AcceptedCount);
        }

        await using var restarted = new GrpcTestServer<Program>(_redis, new Dictionary<string, string?> { ["Pricing:Feed"] = "none", ["Pricing:Instruments:0"] = "BBB" });
        var client = new PricingService.PricingServiceClient(restarted.CreateMeshInvoker());
        using var again = client.IngestQuotes();
        await again.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = Quote("BBB", "1", "2", now.AddSeconds(-1)) });
        await again.RequestStream.CompleteAsync();
        var response = await again;
        Assert.Equal(RejectReason.OutOfOrder, Assert.Single(response.Rejections).Reason);
    }

    [Fact]
    public async Task GetQuotes_validates_instrument_ids()
    {
        await RpcAssert.InvalidArgumentAsync(() => _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "ok", "bad id!" } }).ResponseAsync, "instrument_ids[1]");
    }

    [Fact]
    public async Task PriceInstruments_rejects_bad_items_field_by_field()
    {
        var request = new PriceInstrumentsRequest
        {
            Items =
            {
                new ValuationItem { Instrument = new Instrument { InstrumentId = "OPT", Kind = InstrumentKind.Option, UnderlyingId = "AAA" } },
                new ValuationItem(),
                new ValuationItem { Instrument = new Instrument { InstrumentId = "FUT", Kind = InstrumentKind.Future, UnderlyingId = "AAA", Expiry = new Timestamp { Seconds = long.MaxValue } } },
            },
            ValuationTime = new Timestamp { Nanos = -5 },
        };
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.PriceInstrumentsAsync(request).ResponseAsync, "items[0].instrument.strike");
        Assert.Contains("items[0].instrument.option_right", fields);
        Assert.Contains("items[0].instrument.expiry", fields);
        Assert.Contains("items[1].instrument", fields);
        Assert.Contains("items[2].instrument.expiry", fields);
        Assert.Contains("valuation_time", fields);
    }

    [Fact]
    public async Task PriceInstruments_values_options_with_Black_Scholes()
    {
        var valuationTime = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var request = new PriceInstrumentsRequest
        {
            ValuationTime = valuationTime.ToTimestamp(),
            Items =
            {
                new ValuationItem
                {
                    Instrument = new Instrument
                    {
                        InstrumentId = "AAA-C40", Kind = InstrumentKind.Option, UnderlyingId = "AAA", Strike = 40m,
                        OptionRight = Contracts.Common.V1.OptionRight.Call, Expiry = valuationTime.AddDays(182.5).ToTimestamp(),
                    },
                    Overrides = new MarketOverrides { UnderlyingPrice = 42m, Volatility = 0.2, RiskFreeRate = 0.1 },
                },
                new ValuationItem { Instrument = new Instrument { InstrumentId = "NOQUOTE", Kind = InstrumentKind.Spot } },
            },
        };

        var response = await _client.PriceInstrumentsAsync(request);
        var expected = Core.BlackScholes.Value(CoreRight.Call, 42, 40, 0.5, 0.1, 0, 0.2);
        Assert.Equal((decimal)expected.Price, response.Valuations[0].Price.ToDecimal(), 8);
        Assert.Equal(expected.Delta, response.Valuations[0].Delta, 12);
        Assert.Contains("no price", response.Valuations[1].Error);
    }

    [Fact]
    public async Task A_malformed_message_in_the_ingest_stream_is_invalid_argument_and_stores_nothing()
    {
        var raw = Marshallers.Create<byte[]>(b => b, b => b);
        var method = new Method<byte[], byte[]>(MethodType.ClientStreaming, PricingService.Descriptor.FullName, "IngestQuotes", raw, raw);
        using var call = _server.CreateMeshInvoker().AsyncClientStreamingCall(method, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(10)));
        try
        {
            await call.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = Quote("AAA", "99.9", "100.1", DateTimeOffset.UtcNow) }.ToByteArray());
            await call.RequestStream.WriteAsync(RequestFuzzer.MalformedBytes);
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException)
        {
            // The server may end the call before the client has finished writing; its status is the answer.
        }

        await RpcAssert.InvalidArgumentAsync(() => call.ResponseAsync, "request");

        Assert.Empty((await _client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "AAA" } })).Quotes);
    }

    [Fact]
    public async Task A_zero_rate_is_a_zero_rate_in_valuation_and_implied_volatility()
    {
        // One-year at-the-money call, S = K = 100, σ = 0.2, r = q = 0 (Actual/365: 365 days is one year).
        // By hand: d1 = σ√T / 2 = 0.1, d2 = −0.1, C = S·(N(0.1) − N(−0.1)) = 100·(2·0.539827837277029 − 1) = 7.9655674554058.
        var valuationTime = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        var call = new Instrument
        {
            InstrumentId = "AAA-C100", Kind = InstrumentKind.Option, UnderlyingId = "AAA", Strike = 100m,
            OptionRight = Contracts.Common.V1.OptionRight.Call, Expiry = valuationTime.AddDays(365).ToTimestamp(),
        };
        var zero = new MarketOverrides { UnderlyingPrice = 100m, Volatility = 0.2, RiskFreeRate = 0, CarryRate = 0 };
        var valued = await _client.PriceInstrumentsAsync(new PriceInstrumentsRequest
        {
            ValuationTime = valuationTime.ToTimestamp(),
            Items = { new ValuationItem { Instrument = call, Overrides = zero } },
        });
        Assert.Equal(decimal.Round(7.9655674554058m, 10), valued.Valuations[0].Price.ToDecimal()); // prices cross the wire at 10 decimals

        var implied = await _client.ComputeImpliedVolatilitiesAsync(new ComputeImpliedVolatilitiesRequest
        {
            ValuationTime = valuationTime.ToTimestamp(),
            Items = { new ImpliedVolatilityItem { Instrument = call, Price = 7.965567455405804m, Overrides = new MarketOverrides { UnderlyingPrice = 100m, RiskFreeRate = 0 } } },
        });
        Assert.Equal(0.2, implied.Results[0].ImpliedVolatility, 10);

        // Unset still means the service's default rate (3 %), so the same price implies a lower volatility.
        var byDefault = await _client.ComputeImpliedVolatilitiesAsync(new ComputeImpliedVolatilitiesRequest
        {
            ValuationTime = valuationTime.ToTimestamp(),
            Items = { new ImpliedVolatilityItem { Instrument = call, Price = 7.965567455405804m, Overrides = new MarketOverrides { UnderlyingPrice = 100m } } },
        });
        Assert.True(byDefault.Results[0].ImpliedVolatility < 0.19, $"default-rate implied volatility {byDefault.Results[0].ImpliedVolatility}");

#pragma warning disable CS0612 // the deprecated field, combined with its successor, is refused
        await RpcAssert.InvalidArgumentAsync(
            () => _client.PriceInstrumentsAsync(new PriceInstrumentsRequest { Items = { new ValuationItem { Instrument = call, Overrides = new MarketOverrides { Rate = 0.05, RiskFreeRate = 0 } } } }).ResponseAsync,
            "items[0].overrides.risk_free_rate");
#pragma warning restore CS0612
    }

    [Fact]
    public async Task PriceInstruments_marks_perpetuals_on_their_own_quotes_and_values_inverse_contracts()
    {
        var now = DateTimeOffset.UtcNow;
        using (var call = _client.IngestQuotes())
        {
            await call.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = Quote("AAA", "99.9", "100.1", now) });
            await call.RequestStream.WriteAsync(new IngestQuotesRequest { Quote = Quote("BBB", "100.1", "100.3", now) });
            await call.RequestStream.CompleteAsync();
            Assert.Equal(2, (await call).AcceptedCount);
        }

        // BBB plays the perpetual on index AAA: mark 100.2 over index 100.
        var response = await _client.PriceInstrumentsAsync(new PriceInstrumentsRequest
        {
            Items =
            {
                new ValuationItem { Instrument = new Instrument { InstrumentId = "BBB", Kind = InstrumentKind.Perpetual, UnderlyingId = "AAA" } },
                new ValuationItem
                {
                    Instrument = new Instrument { InstrumentId = "BBB", Kind = InstrumentKind.Perpetual, UnderlyingId = "AAA", Inverse = true, Multiplier = 10m },
                    Overrides = new MarketOverrides { FundingRate = -0.0002 },
                },
            },
        });

        var linear = response.Valuations[0];
        Assert.Equal("", linear.Error);
        Assert.Equal(100.2m, linear.MarkPrice.ToDecimal());
        Assert.Equal(100m, linear.IndexPrice.ToDecimal());
        Assert.Equal(0.002, linear.Basis, 12);
        Assert.Equal(0.0015, linear.FundingRate, 12);
        var inverse = response.Valuations[1];
        Assert.Equal(10 / 100.2, inverse.CoinDelta, 12);
        Assert.Equal(10.0, inverse.DollarDelta, 9);
        Assert.Equal(-0.0002, inverse.FundingRate, 15);
        Assert.Equal(0.0002 * 10 / 100.2, inverse.FundingPayment, 15); // shorts pay longs when funding is negative
    }

    [Fact]
    public async Task Grpc_readiness_follows_Redis_within_seconds_and_liveness_does_not()
    {
        // Probes read the results the health publisher refreshes every second, not a PING per call: a stopped Redis
        // shows as NOT_SERVING within a few refreshes, a started one as SERVING again; liveness never changes.
        var redis = new RedisServer();
        await redis.StartAsync();
        await using var server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?> { ["Pricing:Feed"] = "none" });
        var health = new Grpc.Health.V1.Health.HealthClient(server.CreateInvoker(defaultDeadline: false));
        async Task<Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus> StatusWithinAsync(string service, Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus wanted)
        {
            var status = Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Unknown;
            for (var attempt = 0; attempt < 100 && status != wanted; attempt++)
            {
                try
                {
                    status = (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest { Service = service }, deadline: DateTime.UtcNow.AddSeconds(5))).Status;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
                {
                    // not yet published
                }

                if (status != wanted)
                {
                    await Task.Delay(100);
                }
            }

            return status;
        }

        try
        {
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, await StatusWithinAsync("readiness", Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving));
            await redis.StopAsync();
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.NotServing, await StatusWithinAsync("readiness", Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.NotServing));
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.NotServing, await StatusWithinAsync(string.Empty, Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.NotServing));
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest { Service = "liveness" })).Status);
            await redis.StartAsync();
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, await StatusWithinAsync("readiness", Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving));
        }
        finally
        {
            await redis.DisposeAsync();
        }
    }

    [Fact]
    public async Task Health_and_reflection_are_served()
    {
        var http = _server.CreateClient();
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/health/ready")).StatusCode);
        var health = new Grpc.Health.V1.Health.HealthClient(_server.CreateMeshInvoker());
        var status = await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest());
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, status.Status);

        // The named services Kubernetes' gRPC probes ask for.
        foreach (var service in new[] { "liveness", "readiness" })
        {
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest { Service = service })).Status);
        }
    }
}
