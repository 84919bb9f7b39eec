using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;

namespace RebalanceMesh.BuildingBlocks.Tests;

/// <summary>Mesh clients: reads retried on UNAVAILABLE, writes never; a circuit breaker per callee.</summary>
public sealed class ResilienceTests
{
    [Fact]
    public async Task A_read_is_retried_through_a_restart_and_a_write_is_never_retried_by_the_channel()
    {
        var pricing = new FlakyPricing(failuresFirst: 3);
        await using var server = await StartAsync(pricing);
        using var host = ClientHost(server.Urls.Single());
        var client = host.Services.GetRequiredService<PricingService.PricingServiceClient>();

        // The read: three UNAVAILABLE answers, then an answer; the caller sees only the answer.
        var quotes = await client.GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "DAX" } });
        Assert.NotNull(quotes);
        Assert.Equal(4, pricing.Calls("GetQuotes"));

        // The write: one attempt, its UNAVAILABLE to the caller (who holds the idempotency key and decides).
        pricing.FailNext(1);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.UpsertInstrumentsAsync(new UpsertInstrumentsRequest()));
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Equal(1, pricing.Calls("UpsertInstruments"));

        // Not found is an answer, not an outage: never retried.
        pricing.NotFoundNext = true;
        var notFound = await Assert.ThrowsAsync<RpcException>(async () => await client.GetQuotesAsync(new GetQuotesRequest()));
        Assert.Equal(StatusCode.NotFound, notFound.StatusCode);
        Assert.Equal(5, pricing.Calls("GetQuotes"));
    }

    [Fact]
    public async Task Retries_stop_at_the_calls_deadline()
    {
        var pricing = new FlakyPricing(failuresFirst: 1_000);
        await using var server = await StartAsync(pricing);
        using var host = ClientHost(server.Urls.Single());
        var client = host.Services.GetRequiredService<PricingService.PricingServiceClient>();

        // A deadline shorter than the policy's whole schedule (6 attempts, backoffs up to 3.4 s) and long enough that the
        // first attempt reaches the server on a loaded machine (300 ms did not, once in CI: no call was made).
        var failed = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.GetQuotesAsync(new GetQuotesRequest(), deadline: DateTime.UtcNow.AddSeconds(2)));
        Assert.Contains(failed.StatusCode, new[] { StatusCode.DeadlineExceeded, StatusCode.Unavailable });
        Assert.InRange(pricing.Calls("GetQuotes"), 1, MeshCallResilience.ReadAttempts);
    }

    [Fact]
    public void Only_reads_are_retried()
    {
        var config = MeshCallResilience.RetryReads(PricingService.Descriptor);
        var names = config.MethodConfigs.Single().Names.Select(n => n.Method).ToArray();
        Assert.Contains("PriceInstruments", names);
        Assert.Contains("GetQuotes", names);
        Assert.DoesNotContain("IngestQuotes", names);
        Assert.DoesNotContain("UpsertInstruments", names);
        Assert.DoesNotContain("ImportPriceHistory", names);
        Assert.All(config.MethodConfigs.Single().Names, n => Assert.Equal("rebalance.pricing.v1.PricingService", n.Service));
    }

    [Fact]
    public async Task The_breaker_opens_on_a_failing_callee_fails_fast_and_closes_after_a_good_trial_call()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));
        var breaker = new MeshCircuitBreakers(time, NullLoggerFactory.Instance).For("pricing");
        var calls = 0;
        var answer = StatusCode.Unavailable;
        Task<Empty> Call() => breaker.AsyncUnaryCall(new Empty(), Context(), (request, context) =>
        {
            calls++;
            return answer == StatusCode.OK
                ? new AsyncUnaryCall<Empty>(Task.FromResult(new Empty()), Task.FromResult(new Metadata()), () => Status.DefaultSuccess, () => [], () => { })
                : new AsyncUnaryCall<Empty>(Task.FromException<Empty>(new RpcException(new Status(answer, "down"))), Task.FromResult(new Metadata()), () => new Status(answer, "down"), () => [], () => { });
        }).ResponseAsync;

        // Answers that are not outages never open it.
        answer = StatusCode.InvalidArgument;
        for (var i = 0; i < 20; i++)
        {
            await Assert.ThrowsAsync<RpcException>(Call);
        }

        Assert.Equal(20, calls);

        // Half of the calls in the window (five at least) UNAVAILABLE: it opens (20 invalid + 20 unavailable = 50 %).
        answer = StatusCode.Unavailable;
        for (var i = 0; i < 20; i++)
        {
            await Assert.ThrowsAsync<RpcException>(Call);
        }

        Assert.Equal(40, calls);
        var fast = await Assert.ThrowsAsync<RpcException>(Call);
        Assert.Equal(StatusCode.Unavailable, fast.StatusCode);
        Assert.Contains("circuit is open", fast.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(40, calls); // refused without calling

        // After the break one trial call goes through; it succeeds, the circuit closes and calls flow again.
        time.Advance(MeshCircuitBreakers.BreakDuration);
        answer = StatusCode.OK;
        await Call();
        await Call();
        Assert.Equal(42, calls);
    }

    private static ClientInterceptorContext<Empty, Empty> Context() =>
        new(new Method<Empty, Empty>(MethodType.Unary, "test.Service", "Read", Marshallers.Create(m => m.ToByteArray(), Empty.Parser.ParseFrom), Marshallers.Create(m => m.ToByteArray(), Empty.Parser.ParseFrom)), null, new CallOptions());

    private static IHost ClientHost(string address)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Services:pricing:Grpc"] = address });
        builder.AddMeshGrpcClient<PricingService.PricingServiceClient>("pricing", PricingService.Descriptor);
        builder.Services.AddSingleton(TimeProvider.System);
        return builder.Build();
    }

    private static async Task<WebApplication> StartAsync(FlakyPricing pricing)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, RedisServer.FreePort(), l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(pricing);
        var app = builder.Build();
        app.MapGrpcService<FlakyPricing>();
        await app.StartAsync();
        return app;
    }

    /// <summary>A pricing service that answers UNAVAILABLE to the first calls, as one being restarted does.</summary>
    private sealed class FlakyPricing(int failuresFirst) : PricingService.PricingServiceBase
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _calls = new();
        private int _failures = failuresFirst;

        public bool NotFoundNext { get; set; }

        public int Calls(string method) => _calls.GetValueOrDefault(method);

        public void FailNext(int count) => _failures = count;

        public override Task<GetQuotesResponse> GetQuotes(GetQuotesRequest request, ServerCallContext context)
        {
            Answer("GetQuotes");
            return Task.FromResult(new GetQuotesResponse());
        }

        public override Task<UpsertInstrumentsResponse> UpsertInstruments(UpsertInstrumentsRequest request, ServerCallContext context)
        {
            Answer("UpsertInstruments");
            return Task.FromResult(new UpsertInstrumentsResponse());
        }

        private void Answer(string method)
        {
            _calls.AddOrUpdate(method, 1, (_, n) => n + 1);
            if (NotFoundNext)
            {
                NotFoundNext = false;
                throw new RpcException(new Status(StatusCode.NotFound, "no such instrument"));
            }

            if (Interlocked.Decrement(ref _failures) >= 0)
            {
                throw new RpcException(new Status(StatusCode.Unavailable, "restarting"));
            }
        }
    }
}
