using Google.Protobuf;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Bad input, at volume: 10,000 random and mutated requests to each of planning's RPCs (through the real gRPC stack,
/// as an admin). None may answer Unknown or Internal or take the service down, and a rejected request to an RPC that
/// writes must leave everything stored exactly as it was.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class PlanningFuzzTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly PlanningService.PlanningServiceClient _client;

    public PlanningFuzzTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>(TestAuth.Settings)
        {
            ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
            ["Services:risk:Grpc"] = "http://127.0.0.1:1",
        });
        _client = new PlanningService.PlanningServiceClient(_server.CreateInvoker(TestAuth.Token(MeshAuth.Admin)));
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = ValidPortfolio(), ExpectedVersion = -1 });
        await _client.SetPolicyAsync(new SetPolicyRequest { Policy = ValidPolicy() });
    }

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Portfolio ValidPortfolio() => new()
    {
        PortfolioId = "fz",
        BaseCurrency = "EUR",
        Cash = 1_000m,
        Positions = { new Position { InstrumentId = "DAX", Quantity = 2m, Venue = "SIM-A" } },
        Loans = { new Loan { LoanId = "L1", Venue = "LEND-A", Collateral = { new LoanCollateral { Asset = "DAX", Quantity = 1m, LiquidationThreshold = 0.8 } }, Debt = { new LoanDebt { Asset = "EUR", Quantity = 10m } } } },
        CashBalances = { new CashBalance { Currency = "USD", Amount = 5m } },
        MarginAccounts = { new MarginAccount { Venue = "SIM-B", Collateral = 50m } },
    };

    private static Policy ValidPolicy() => new()
    {
        PortfolioId = "fz",
        AbsoluteBand = 0.05,
        Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.5 } },
        HealthFactorBand = new HealthFactorBand { Target = 1.5, RepayBelow = 1.2 },
        ExecutionStyle = new ExecutionStyle { TwapSlices = 2, TwapDurationSeconds = 10 },
    };

    [Fact]
    public async Task Ten_thousand_random_and_mutated_requests_per_RPC_never_answer_Unknown_or_Internal_and_rejected_writes_change_nothing()
    {
        var fuzzer = new RequestFuzzer(_server.CreateInvoker(TestAuth.Token(MeshAuth.Admin)), seed: 20261125);
        var outcomes = await fuzzer.RunAsync(
            PlanningService.Descriptor,
            new Dictionary<string, IMessage>
            {
                ["UpsertPortfolio"] = new UpsertPortfolioRequest { Portfolio = ValidPortfolio(), ExpectedVersion = -1 },
                ["SetPolicy"] = new SetPolicyRequest { Policy = ValidPolicy() },
                ["SetTradingHalt"] = new SetTradingHaltRequest { Halted = false, Reason = "fuzz" },
                ["SubmitRebalance"] = new SubmitRebalanceRequest { PortfolioId = "fz", IdempotencyKey = "k" },
                ["GetPortfolio"] = new GetPortfolioRequest { PortfolioId = "fz", SkipValuation = true },
                ["PreviewRebalance"] = new PreviewRebalanceRequest { PortfolioId = "fz" },
                ["GetPlan"] = new GetPlanRequest { PlanId = "plan-x" },
                ["CancelPlan"] = new CancelPlanRequest { PlanId = "plan-x", Reason = "fuzz" },
                ["ListPlans"] = new ListPlansRequest { PortfolioId = "fz", PageSize = 10 },
                ["WatchPlans"] = new WatchPlansRequest { PortfolioId = "fz" },
                ["WatchAlerts"] = new WatchAlertsRequest { PortfolioId = "fz" },
                ["CreateModel"] = new CreateModelRequest { Model = new Model { ModelId = "fzm", Name = "fuzz", Policy = ValidPolicy() } },
                ["UpdateModel"] = new UpdateModelRequest { Model = new Model { ModelId = "fzm", Name = "fuzz", Policy = ValidPolicy() }, ExpectedVersion = 1 },
                ["GetModel"] = new GetModelRequest { ModelId = "fzm" },
                ["ListModels"] = new ListModelsRequest { PageSize = 10 },
                ["SubmitBatchRebalance"] = new SubmitBatchRebalanceRequest { Portfolios = new PortfolioList { PortfolioIds = { "fz" } }, BatchKey = "fuzz" },
                ["PreviewBatchRebalance"] = new PreviewBatchRebalanceRequest { Portfolios = new PortfolioList { PortfolioIds = { "fz", "fz2" } }, Filter = BatchFilter.All },
                ["WatchBatch"] = new WatchBatchRequest { BatchKey = "fuzz" },
                ["LinkPortfolio"] = new LinkPortfolioRequest { PortfolioId = "fz", ModelId = "fzm", Overrides = new ModelOverrides { CashTarget = 0.1, NoTradeInstruments = { "SMI" } } },
            },
            writes: new HashSet<string> { "UpsertPortfolio", "SetPolicy", "SetTradingHalt", "SubmitRebalance", "CancelPlan", "CreateModel", "UpdateModel", "LinkPortfolio", "SubmitBatchRebalance" },
            // Everything planning stores but the monitor's own state (pln:monitor:*), which its heartbeat renews.
            digest: async () => await RequestFuzzer.DigestAsync(_redis.Connection!.GetDatabase(), "pln:[^m]*")
                + await RequestFuzzer.DigestAsync(_redis.Connection!.GetDatabase(), "pln:mod*"));

        // The fuzz did find the validation (most mutated requests are refused).
        Assert.All(outcomes.Where(o => o.Key is "UpsertPortfolio" or "SetPolicy"), o => Assert.True(o.Value.GetValueOrDefault(StatusCode.InvalidArgument) > RequestFuzzer.PerRpc / 10, $"{o.Key}: {string.Join(", ", o.Value)}"));

        // The service is still up and serving.
        Assert.NotNull((await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "fz", SkipValuation = true })).Portfolio);
    }
}
