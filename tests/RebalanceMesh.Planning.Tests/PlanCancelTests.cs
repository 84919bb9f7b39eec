using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>One plan executes at a time per portfolio, and a trader can cancel it.</summary>
public sealed class PlanCancelTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;

    public PlanCancelTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>
        {
            ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
            ["Services:risk:Grpc"] = "http://127.0.0.1:1",
        });
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private PlanningService.PlanningServiceClient Client(string role) => new(_server.CreateInvoker(TestAuth.Token(role, subject: "alice")));

    private static Plan Stored(string planId, PlanStatus status, DateTimeOffset createdAt) => new()
    {
        PlanId = planId,
        PortfolioId = "p1",
        Status = status,
        CreatedAt = createdAt.ToTimestamp(),
        Legs = { new PlanLeg { LegId = "L1", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending } },
    };

    [Fact]
    public async Task A_trader_cancels_a_plan_that_has_not_ended_and_execution_is_told_on_plans_cancelled()
    {
        var store = _server.Services.GetRequiredService<PlanningStore>();
        Assert.True((await store.CreatePlanAsync(Stored("plan-run", PlanStatus.Executing, DateTimeOffset.UtcNow), "k1")).Stored);

        // Viewers may not; bad input is refused field by field; an unknown plan is not found.
        await RpcAssert.StatusAsync(() => Client(MeshAuth.Viewer).CancelPlanAsync(new CancelPlanRequest { PlanId = "plan-run" }).ResponseAsync, StatusCode.PermissionDenied);
        var fields = await RpcAssert.InvalidArgumentAsync(() => Client(MeshAuth.Trader).CancelPlanAsync(new CancelPlanRequest { PlanId = "bad id!", Reason = new string('x', 501) }).ResponseAsync, "plan_id");
        Assert.Contains("reason", fields);
        await RpcAssert.StatusAsync(() => Client(MeshAuth.Trader).CancelPlanAsync(new CancelPlanRequest { PlanId = "plan-none" }).ResponseAsync, StatusCode.NotFound);

        var cancelled = (await Client(MeshAuth.Trader).CancelPlanAsync(new CancelPlanRequest { PlanId = "plan-run", Reason = "market closed early" })).Plan;
        Assert.Equal((PlanStatus.Executing, "cancel requested by alice: market closed early"), (cancelled.Status, cancelled.StatusMessage));
        var bus = _server.Services.GetRequiredService<InMemoryEventBus>();
        var request = bus.Published.Where(e => e.Topic == Topics.PlansCancelled).Select(e => e.ReadData(PlanCancelRequested.Parser)).Single();
        Assert.Equal(("plan-run", "p1", "market closed early", "alice"), (request.PlanId, request.PortfolioId, request.Reason, request.RequestedBy));

        // Execution reports the end (here: stopped before it started): the plan is cancelled with its legs, and
        // there is nothing left to cancel.
        await bus.PublishAsync(Topics.ExecutionReports, new ExecutionReport
        {
            ReportId = "r-end",
            PlanId = "plan-run",
            PortfolioId = "p1",
            Kind = ReportKind.PlanDone,
            PlanStatus = ReportedPlanStatus.Cancelled,
            Message = "cancelled before it started: market closed early",
            ReportedAt = DateTimeOffset.UtcNow.ToTimestamp(),
        });
        Plan ended = cancelled;
        for (var i = 0; i < 100 && ended.Status != PlanStatus.Cancelled; i++)
        {
            await Task.Delay(20);
            ended = (await Client(MeshAuth.Viewer).GetPlanAsync(new GetPlanRequest { PlanId = "plan-run" })).Plan;
        }

        Assert.Equal((PlanStatus.Cancelled, LegStatus.Cancelled), (ended.Status, ended.Legs.Single().Status));
        await RpcAssert.StatusAsync(() => Client(MeshAuth.Trader).CancelPlanAsync(new CancelPlanRequest { PlanId = "plan-run" }).ResponseAsync, StatusCode.FailedPrecondition);
    }

    [Fact]
    public async Task A_submission_while_the_portfolios_plan_is_still_executing_is_refused_and_stores_nothing()
    {
        var store = _server.Services.GetRequiredService<PlanningStore>();
        var now = DateTimeOffset.UtcNow;
        Assert.True((await store.CreatePlanAsync(Stored("plan-old", PlanStatus.Completed, now.AddMinutes(-2)), "k0")).Stored);
        Assert.True((await store.CreatePlanAsync(Stored("plan-live", PlanStatus.Approved, now.AddMinutes(-1)), "k1")).Stored);

        // Through the RPC: refused before anything is computed (pricing is not even reachable here).
        var ex = await RpcAssert.StatusAsync(() => Client(MeshAuth.Trader).SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "p1", IdempotencyKey = "k2" }).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Contains("plan-live", ex.Status.Detail, StringComparison.Ordinal);

        // In the store, atomically: the newest plan has not ended, so nothing is stored (not even a final one).
        var refused = await store.CreatePlanAsync(Stored("plan-new", PlanStatus.NoAction, now), "k3");
        Assert.Equal((false, false, "plan-live"), (refused.Stored, refused.KeyIsTaken, refused.Executing?.PlanId));
        Assert.Null(await store.GetPlanAsync("plan-new"));
        Assert.Null(await store.GetIdempotentPlanIdAsync("p1", "k3"));

        // Ended, the next plan is stored; the same key again is taken.
        await store.UpdatePlanAsync("plan-live", p => p.Status = PlanStatus.PartiallyFilled);
        Assert.True((await store.CreatePlanAsync(Stored("plan-new", PlanStatus.Approved, now), "k3")).Stored);
        await store.UpdatePlanAsync("plan-new", p => p.Status = PlanStatus.Completed);
        Assert.Equal(PlanCreation.KeyTaken, await store.CreatePlanAsync(Stored("plan-other", PlanStatus.NoAction, now.AddSeconds(1)), "k3"));
    }

    [Fact]
    public async Task Of_two_submissions_at_once_only_one_is_stored()
    {
        // Twenty concurrent stores of approved plans for one portfolio: exactly one wins, the rest find it in flight.
        var store = _server.Services.GetRequiredService<PlanningStore>();
        var now = DateTimeOffset.UtcNow;
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => store.CreatePlanAsync(Stored($"plan-{i}", PlanStatus.Approved, now.AddMilliseconds(i)), $"k{i}")));
        Assert.Single(outcomes, o => o.Stored);
        Assert.All(outcomes.Where(o => !o.Stored), o => Assert.NotNull(o.Executing));
        Assert.Single((await store.ListPlansAsync("p1", 0, 50)).Plans);
    }
}
