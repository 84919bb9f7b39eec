using Google.Protobuf;
using Grpc.Core;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// Bad input at volume: 10,000 random and mutated requests to each of execution's RPCs, as a mesh caller through the
/// real gRPC stack. None may answer Unknown or Internal; a write refused as invalid leaves every exe:* key as it was.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class ExecutionFuzzTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly GrpcTestServer<Program> _server = new(redis, SimulatedExecution.Settings());

    public Task InitializeAsync() => redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    [Fact]
    public async Task Ten_thousand_random_and_mutated_requests_per_RPC_never_answer_Unknown_or_Internal_and_rejected_writes_change_nothing()
    {
        var invoker = _server.CreateMeshInvoker();
        var client = new ExecutionService.ExecutionServiceClient(invoker);
        var account = new LendingAccount
        {
            Venue = "LEND-A",
            PortfolioId = "fz",
            LoanId = "L1",
            BaseCurrency = "EUR",
            Collateral = { new LendingCollateral { Asset = "DAX", Quantity = 10m } },
            DebtAsset = "EUR",
            Debt = 100m,
        };
        var outcomes = await new RequestFuzzer(invoker, seed: 7).RunAsync(
            ExecutionService.Descriptor,
            new Dictionary<string, IMessage>
            {
                ["GetPlanExecution"] = new GetPlanExecutionRequest { PlanId = "plan-x" },
                ["ListOrders"] = new ListOrdersRequest { PlanId = "plan-x", Venue = "SIM-A" },
                ["CancelPlan"] = new CancelPlanRequest { PlanId = "plan-x", Reason = "fuzz" },
                ["ListVenues"] = new ListVenuesRequest(),
                ["OpenLendingAccount"] = new OpenLendingAccountRequest { Account = account },
                ["GetLendingAccount"] = new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "fz", LoanId = "L1" },
                ["GetVenueBook"] = new GetVenueBookRequest { VenueId = "SIM-A", InstrumentId = "DAX" },
                ["SetVenueStatus"] = new SetVenueStatusRequest { VenueId = "SIM-B", Available = true, Reason = "fuzz" },
                ["OpenMarginAccount"] = new OpenMarginAccountRequest
                {
                    Account = new VenueMarginAccount
                    {
                        Venue = "SIM-B",
                        PortfolioId = "fz",
                        BaseCurrency = "EUR",
                        Collateral = 1_000m,
                        Positions = { new VenueMarginPosition { InstrumentId = "DAX-PERP", Quantity = -10m, EntryPrice = 100m, Multiplier = 1m } },
                    },
                },
                ["GetMarginAccount"] = new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "fz" },
                ["GetBlock"] = new GetBlockRequest { BlockId = "blk-x" },
                ["ListBlocks"] = new ListBlocksRequest { PageSize = 10 },
            },
            writes: new HashSet<string> { "CancelPlan", "OpenLendingAccount", "SetVenueStatus", "OpenMarginAccount" },
            digest: () => RequestFuzzer.DigestAsync(redis.Connection!.GetDatabase(), "exe:*"));

        Assert.All(new[] { "OpenLendingAccount", "OpenMarginAccount" }, rpc => Assert.True(outcomes[rpc].GetValueOrDefault(StatusCode.InvalidArgument) > RequestFuzzer.PerRpc / 10, $"{rpc}: {string.Join(", ", outcomes[rpc])}"));
        Assert.NotEmpty((await client.ListVenuesAsync(new ListVenuesRequest())).Venues);
    }
}
