using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Runs;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// The execution service in process, with the simulated venues plugged in, on its own Redis; DAX quoted on SIM-A
/// (99.9 / 100.1) and SIM-B (99.8 / 100.2), 100 each side. Shared by the service's test classes.
/// </summary>
public abstract class ExecutionServiceTestBase : IAsyncLifetime
{
    protected RedisServer Redis { get; }

    protected GrpcTestServer<Program> Server { get; }

    protected ExecutionService.ExecutionServiceClient Client { get; }

    protected ExecutionServiceTestBase(RedisServer redis)
    {
        Redis = redis;
        Server = new GrpcTestServer<Program>(redis, SimulatedExecution.Settings());
        Client = new ExecutionService.ExecutionServiceClient(Server.CreateMeshInvoker());
    }

    public async Task InitializeAsync()
    {
        await Redis.FlushAsync();
        var market = Server.Services.GetRequiredService<MarketStateStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await market.WriteQuotesAsync(
        [
            new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = 99.9m, Ask = 100.1m, BidSize = 100m, AskSize = 100m, Timestamp = now },
            new Quote { Venue = "SIM-B", InstrumentId = "DAX", Bid = 99.8m, Ask = 100.2m, BidSize = 100m, AskSize = 100m, Timestamp = now },
        ]);
    }

    public Task DisposeAsync() => Server.DisposeAsync().AsTask();

    /// <summary>
    /// Waits until the service has nothing left to do: every event published so far handled, every plan run ended, and
    /// what they published handled too. What a test asserts after it cannot still change — no sleeping and hoping.
    /// </summary>
    protected async Task SettledAsync()
    {
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var runner = Server.Services.GetRequiredService<PlanRunner>();
        await bus.WhenDeliveredAsync();
        await runner.WhenIdleAsync();
        await bus.WhenDeliveredAsync();
    }

    protected static PlanApproved Plan(string id) => new()
    {
        PlanId = id,
        PortfolioId = "p1",
        Legs =
        {
            new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Sell, Quantity = 10m, ReferencePrice = 100m },
            new ApprovedLeg { LegId = "L2", Sequence = 2, InstrumentId = "DAX", Side = Side.Buy, Quantity = 150m, ReferencePrice = 100m },
        },
    };

    protected static LendingAccount DaxLoan(decimal debt) => new()
    {
        Venue = "LEND-A",
        PortfolioId = "p1",
        LoanId = "L1",
        BaseCurrency = "EUR",
        Collateral = { new LendingCollateral { Asset = "DAX", Quantity = 100m } },
        DebtAsset = "EUR",
        Debt = debt,
    };

    /// <summary>The plan's execution once the service has settled (<see cref="SettledAsync"/>); it must have ended by then.</summary>
    protected async Task<GetPlanExecutionResponse> WaitForFinalAsync(string planId)
    {
        await SettledAsync();
        var execution = await Client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = planId });
        return PlanExecutor.IsFinal(execution.Status) ? execution : throw new InvalidOperationException($"Plan {planId} is {execution.Status} with nothing left to run.");
    }
}
