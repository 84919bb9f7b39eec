extern alias pricinghost;

using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;
using PricingProgram = pricinghost::Program;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// The real pricing service on the in-process test server, on the test's Redis, with no feed: quotes are what the test
/// writes. It records every PriceInstruments request it serves (and holds the first when told), and routes the
/// pricing client of a planning host under test to itself.
/// </summary>
public sealed class PricingUnderTest : IAsyncDisposable
{
    private readonly RedisServer _redis;

    public PricingUnderTest(RedisServer redis)
    {
        _redis = redis;
        Host = new GrpcTestServer<PricingProgram>(redis, new Dictionary<string, string?> { ["Pricing:Feed"] = "none" }, services =>
        {
            services.AddSingleton(Calls);
            services.Configure<Grpc.AspNetCore.Server.GrpcServiceOptions>(o => o.Interceptors.Add<HeldCalls<PriceInstrumentsRequest>>());
        });
    }

    public GrpcTestServer<PricingProgram> Host { get; }

    /// <summary>The PriceInstruments requests pricing served (the first held when told).</summary>
    public HeldCalls<PriceInstrumentsRequest> Calls { get; } = new();

    /// <summary>Settings a planning host under test needs beside <see cref="Route"/>: pricing here, risk nowhere.</summary>
    public static IReadOnlyDictionary<string, string?> PlanningSettings { get; } = new Dictionary<string, string?>
    {
        ["Services:pricing:Grpc"] = "http://localhost",
        ["Services:risk:Grpc"] = "http://127.0.0.1:1",
    };

    /// <summary>Sends a planning host's pricing calls to this server.</summary>
    public void Route(IServiceCollection services) =>
        services.AddGrpcClient<PricingService.PricingServiceClient>().ConfigurePrimaryHttpMessageHandler(() => Host.Server.CreateHandler());

    /// <summary>One venue's quote per instrument, ±0.1 around its mid, stamped now.</summary>
    public Task WriteQuotesAsync(IEnumerable<(string Instrument, decimal Mid)> mids, decimal size = 100m)
    {
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        var market = new MarketStateStore(_redis.Connection!, Options.Create(new MarketStateOptions()), TimeProvider.System);
        return market.WriteQuotesAsync([.. mids.Select(q => new Quote { Venue = "SIM-A", InstrumentId = q.Instrument, Bid = q.Mid - 0.1m, Ask = q.Mid + 0.1m, BidSize = size, AskSize = size, Timestamp = now })]);
    }

    public ValueTask DisposeAsync() => Host.DisposeAsync();
}
