using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>Planning's client API: JWT roles (viewer, trader, admin), the mesh credential, and what is refused.</summary>
public sealed class PlanningAuthTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;

    public PlanningAuthTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>(TestAuth.Settings)
        {
            ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
            ["Services:risk:Grpc"] = "http://127.0.0.1:1",
        });
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private PlanningService.PlanningServiceClient Client(string? token, string? meshToken = null) => new(_server.CreateInvoker(token, meshToken));

    [Fact]
    public async Task Without_a_valid_token_every_client_RPC_is_unauthenticated()
    {
        var request = new GetPlanRequest { PlanId = "plan-1" };
        await RpcAssert.StatusAsync(() => Client(null).GetPlanAsync(request).ResponseAsync, StatusCode.Unauthenticated);
        await RpcAssert.StatusAsync(() => Client(TestAuth.Token(MeshAuth.Admin, key: MeshAuth.NewSecret())).GetPlanAsync(request).ResponseAsync, StatusCode.Unauthenticated); // another key
        await RpcAssert.StatusAsync(() => Client(TestAuth.Token(MeshAuth.Admin, issuer: "someone-else")).GetPlanAsync(request).ResponseAsync, StatusCode.Unauthenticated);
        await RpcAssert.StatusAsync(() => Client(TestAuth.Token(MeshAuth.Admin, lifetime: TimeSpan.FromMinutes(-5))).GetPlanAsync(request).ResponseAsync, StatusCode.Unauthenticated); // expired
        await RpcAssert.StatusAsync(() => Client(null, meshToken: "not-the-mesh-token").GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p" }).ResponseAsync, StatusCode.Unauthenticated);
        await RpcAssert.StatusAsync(() => Client(null).WatchPlans(new WatchPlansRequest { PortfolioId = "p" }).ResponseStream.MoveNext(), StatusCode.Unauthenticated);
    }

    [Fact]
    public async Task Viewers_read_traders_also_submit_admins_also_change_portfolios_policies_and_the_halt()
    {
        var viewer = Client(TestAuth.Token(MeshAuth.Viewer));
        var trader = Client(TestAuth.Token(MeshAuth.Trader));
        var admin = Client(TestAuth.Token(MeshAuth.Admin));
        var portfolio = new Portfolio { PortfolioId = "p1", BaseCurrency = "EUR", Cash = 1_000m };

        // Allowed calls get past the check (NotFound is the service's own answer); refused ones are PermissionDenied.
        await RpcAssert.StatusAsync(() => viewer.GetPlanAsync(new GetPlanRequest { PlanId = "none" }).ResponseAsync, StatusCode.NotFound);
        await RpcAssert.StatusAsync(() => viewer.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "p1", IdempotencyKey = "k" }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => viewer.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => trader.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "p1", IdempotencyKey = "k" }).ResponseAsync, StatusCode.NotFound);
        await RpcAssert.StatusAsync(() => trader.SetTradingHaltAsync(new SetTradingHaltRequest { Halted = true, Reason = "no" }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => trader.SetPolicyAsync(new SetPolicyRequest { Policy = new Policy { PortfolioId = "p1" } }).ResponseAsync, StatusCode.PermissionDenied);

        await admin.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 });
        Assert.False((await admin.SetTradingHaltAsync(new SetTradingHaltRequest { Halted = false, Reason = "resume" })).Halted);
        Assert.Equal(1_000m, (await viewer.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p1", SkipValuation = true })).Portfolio.Cash.ToDecimal());

        // A refused call changes nothing.
        Assert.Equal(1, (await viewer.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p1", SkipValuation = true })).Portfolio.Version);
    }

    [Fact]
    public async Task The_mesh_credential_reads_stored_portfolios_and_nothing_else()
    {
        await Client(TestAuth.Token(MeshAuth.Admin)).UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = new Portfolio { PortfolioId = "p1", BaseCurrency = "EUR", Cash = 5m }, ExpectedVersion = -1 });
        var mesh = Client(null, TestAuth.MeshToken);
        Assert.Equal(5m, (await mesh.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p1", SkipValuation = true })).Portfolio.Cash.ToDecimal());
        await RpcAssert.StatusAsync(() => mesh.ListPlansAsync(new ListPlansRequest { PortfolioId = "p1" }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => mesh.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "p1", IdempotencyKey = "k" }).ResponseAsync, StatusCode.PermissionDenied);
    }

    [Fact]
    public async Task A_client_token_claiming_the_mesh_role_is_not_the_mesh()
    {
        // Service identity comes only from the mesh credential: a validly signed client token that names itself "mesh"
        // holds no role at all, so even the read the mesh may make is refused (PermissionDenied, not a NotFound that
        // would show the call got through).
        var impostor = Client(TestAuth.Token(MeshAuth.Mesh));
        await RpcAssert.StatusAsync(() => impostor.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "nobody", SkipValuation = true }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => impostor.GetPlanAsync(new GetPlanRequest { PlanId = "nothing" }).ResponseAsync, StatusCode.PermissionDenied);
    }

    [Fact]
    public async Task Malformed_request_bytes_are_invalid_argument_after_authentication_and_are_counted()
    {
        var malformed = new List<string>();
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Name == "rebalancemesh.rpc.server.malformed_requests")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            lock (malformed)
            {
                malformed.Add(tags.ToArray().Single(t => t.Key == "rpc.method").Value!.ToString()!);
            }
        });
        listener.Start();

        // Every RPC: an unauthenticated caller hears Unauthenticated first, whatever it sent; an authenticated one hears
        // InvalidArgument naming the request (grpc-dotnet alone answers Unknown "Exception was thrown by handler.").
        foreach (var method in PlanningService.Descriptor.Methods.Where(m => !m.IsClientStreaming && !m.IsServerStreaming))
        {
            await RpcAssert.StatusAsync(() => RequestFuzzer.UnaryRawAsync(_server.CreateInvoker(), method, RequestFuzzer.MalformedBytes), StatusCode.Unauthenticated);
            await RpcAssert.InvalidArgumentAsync(() => RequestFuzzer.UnaryRawAsync(_server.CreateInvoker(TestAuth.Token(MeshAuth.Admin)), method, RequestFuzzer.MalformedBytes), "request");
        }

        var streaming = PlanningService.Descriptor.FindMethodByName("WatchPlans");
        var watch = _server.CreateInvoker(TestAuth.Token(MeshAuth.Viewer)).AsyncServerStreamingCall(
            new Method<byte[], byte[]>(MethodType.ServerStreaming, PlanningService.Descriptor.FullName, streaming.Name, Marshallers.Create<byte[]>(b => b, b => b), Marshallers.Create<byte[]>(b => b, b => b)),
            null, new CallOptions(), RequestFuzzer.MalformedBytes);
        await RpcAssert.InvalidArgumentAsync(() => watch.ResponseStream.MoveNext(CancellationToken.None), "request");

        lock (malformed)
        {
            Assert.Contains($"/{PlanningService.Descriptor.FullName}/GetPortfolio", malformed);
            Assert.Contains($"/{PlanningService.Descriptor.FullName}/WatchPlans", malformed);
        }
    }

    [Fact]
    public void Every_planning_RPC_needs_a_role()
    {
        var required = _server.Services.GetRequiredService<RoleRequirements>();
        Assert.True(required.Enabled);
        var methods = PlanningService.Descriptor.Methods.Select(m => $"/{PlanningService.Descriptor.FullName}/{m.Name}");
        Assert.All(methods, m => Assert.True(required.Methods.ContainsKey(m), $"{m} has no role requirement"));
    }
}
