using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Execution.Tests;

public sealed class ExecutionServiceTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly ExecutionService.ExecutionServiceClient _client;

    public ExecutionServiceTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis);
        _client = new ExecutionService.ExecutionServiceClient(_server.CreateChannel());
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        var market = _server.Services.GetRequiredService<MarketStateStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await market.WriteQuotesAsync(
        [
            new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = 99.9m, Ask = 100.1m, BidSize = 100m, AskSize = 100m, Timestamp = now },
            new Quote { Venue = "SIM-B", InstrumentId = "DAX", Bid = 99.8m, Ask = 100.2m, BidSize = 100m, AskSize = 100m, Timestamp = now },
        ]);
    }

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static PlanApproved Plan(string id) => new()
    {
        PlanId = id,
        PortfolioId = "p1",
        Legs =
        {
            new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Sell, Quantity = 10m, ReferencePrice = 100m },
            new ApprovedLeg { LegId = "L2", Sequence = 2, InstrumentId = "DAX", Side = Side.Buy, Quantity = 150m, ReferencePrice = 100m },
        },
    };

    [Fact]
    public async Task Executes_an_approved_plan_and_reports_fills_legs_and_completion()
    {
        var bus = _server.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, Plan("plan-x"));
        var execution = await WaitForFinalAsync("plan-x");

        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        // Sell 10: SIM-A bid 99.9 less 10 bps = 99.8001 vs SIM-B 99.8 less 5 bps = 99.7501 → SIM-A.
        // Buy 150: SIM-B 100.2·1.0005 = 100.2501 vs SIM-A 100.1·1.001 = 100.2001 → SIM-A first (100), SIM-B the rest (50).
        Assert.Equal(
            [("plan-x:L1-r1:1", "SIM-A", 10m), ("plan-x:L2-r1:1", "SIM-A", 100m), ("plan-x:L2-r1:2", "SIM-B", 50m)],
            execution.Orders.Select(o => (o.ClientOrderId, o.Venue, o.FilledQuantity.ToDecimal())));
        var buy = execution.Legs.Single(l => l.LegId == "L2");
        Assert.Equal((100m * 100.1m + 50m * 100.2m) / 150m, buy.AveragePrice.ToDecimal());

        var reports = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).ToArray();
        Assert.Equal(3, reports.Count(r => r.Kind == ReportKind.Fill));
        Assert.Equal(2, reports.Count(r => r.Kind == ReportKind.LegDone));
        Assert.Equal(ReportedPlanStatus.Completed, reports.Single(r => r.Kind == ReportKind.PlanDone).PlanStatus);

        // Shortfall against arrival (mid 100.00) and against the plan's reference price (100): the sell gave up 10 bp,
        // the buy paid 13.33 bp.
        var legsDone = reports.Where(r => r.Kind == ReportKind.LegDone).ToDictionary(r => r.LegId);
        Assert.Equal(10, legsDone["L1"].ShortfallVsPlanBps, 9);
        Assert.Equal(((100m * 100.1m + 50m * 100.2m) / 150m - 100m) / 100m * 10_000m, (decimal)legsDone["L2"].ShortfallVsPlanBps, 9);
        Assert.Equal(legsDone["L2"].ShortfallBps, legsDone["L2"].ShortfallVsPlanBps, 9); // arrival and reference agree here

        // Realised costs per venue, once per fill: SIM-A sold 10 at 99.9 and bought 100 at 100.1 (0.10 a unit beyond
        // the mid each way); SIM-B bought 50 at 100.2.
        var venues = (await _client.ListVenuesAsync(new ListVenuesRequest())).Venues.ToDictionary(v => v.VenueId);
        var simA = venues["SIM-A"].RealisedCosts;
        Assert.Equal(2, simA.Fills);
        Assert.Equal((double)(10m * 99.9m + 100m * 100.1m), simA.Notional, 9);
        Assert.Equal(0.1 * 10 + 0.1 * 100, simA.Slippage, 9);
        Assert.Equal(venues["SIM-A"].TakerFeeBps, simA.FeeBps, 6);
        Assert.Equal(0.2 * 50, venues["SIM-B"].RealisedCosts.Slippage, 9);
    }

    [Fact]
    public async Task Limit_price_protection_skips_venues_beyond_the_maximum_slippage_and_stops_legs_that_cannot_fill()
    {
        var bus = _server.Services.GetRequiredService<InMemoryEventBus>();

        // Arrival mid 100.00. At 15 bps the buy limit is 100.15: SIM-A (100.10) trades, SIM-B (100.20) does not.
        var within = Plan("plan-limit-15");
        within.MaxSlippageBps = 15;
        await bus.PublishAsync(Topics.PlansApproved, within);
        var execution = await WaitForFinalAsync("plan-limit-15");
        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        Assert.DoesNotContain(execution.Orders, o => o.Venue == "SIM-B");

        // At 5 bps neither the buy limit 100.05 nor the sell limit 99.95 is reachable: both legs stop and say why.
        var tight = Plan("plan-limit-5");
        tight.MaxSlippageBps = 5;
        await bus.PublishAsync(Topics.PlansApproved, tight);
        execution = await WaitForFinalAsync("plan-limit-5");
        Assert.Equal(ExecutionStatus.Failed, execution.Status);
        Assert.Empty(execution.Orders);
        var legsDone = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser))
            .Where(r => r.PlanId == "plan-limit-5" && r.Kind == ReportKind.LegDone).ToArray();
        Assert.Equal(2, legsDone.Length);
        Assert.All(legsDone, r => Assert.StartsWith("stopped at the limit", r.Message, StringComparison.Ordinal));
        Assert.Contains("99.95 ", legsDone.Single(r => r.LegId == "L1").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TWAP_sends_each_leg_in_equal_slices_at_equal_intervals()
    {
        var bus = _server.Services.GetRequiredService<InMemoryEventBus>();
        var plan = Plan("plan-twap");
        plan.TwapSlices = 3;
        plan.TwapDurationSeconds = 0.6;
        await bus.PublishAsync(Topics.PlansApproved, plan);
        var execution = await WaitForFinalAsync("plan-twap");

        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        var buys = execution.Orders.Where(o => o.LegId == "L2").ToArray();
        Assert.Equal(["s1", "s2", "s3"], buys.Select(o => o.ClientOrderId.Split(':')[1].Split('-')[1]).Distinct());
        Assert.Equal([50m, 50m, 50m], buys.GroupBy(o => o.ClientOrderId.Split(':')[1].Split('-')[1]).Select(g => g.Sum(o => o.FilledQuantity.ToDecimal())));
        var sliceStarts = buys.GroupBy(o => o.ClientOrderId.Split(':')[1].Split('-')[1]).Select(g => g.Min(o => o.CreatedAt.ToDateTimeOffset())).ToArray();
        Assert.True(sliceStarts[1] - sliceStarts[0] >= TimeSpan.FromMilliseconds(150), "slices are spread over the duration");
        Assert.True(sliceStarts[2] - sliceStarts[1] >= TimeSpan.FromMilliseconds(150));
    }

    [Fact]
    public async Task A_redelivered_plan_sends_no_new_orders()
    {
        var executor = _server.Services.CreateScope().ServiceProvider.GetRequiredService<PlanExecutor>();
        await executor.ExecuteAsync(Plan("plan-y"), CancellationToken.None);
        await executor.ExecuteAsync(Plan("plan-y"), CancellationToken.None);
        var orders = await _client.ListOrdersAsync(new ListOrdersRequest { PlanId = "plan-y" });
        Assert.Equal(3, orders.Orders.Count);
    }

    [Fact]
    public async Task A_halt_stops_the_plan_before_its_legs()
    {
        var scope = _server.Services.CreateScope();
        await scope.ServiceProvider.GetRequiredService<ExecutionStore>().SetHaltAsync(true, "test halt");
        try
        {
            await scope.ServiceProvider.GetRequiredService<PlanExecutor>().ExecuteAsync(Plan("plan-z"), CancellationToken.None);
            var execution = await _client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-z" });
            Assert.Equal(ExecutionStatus.Cancelled, execution.Status);
            Assert.Empty(execution.Orders);
        }
        finally
        {
            await scope.ServiceProvider.GetRequiredService<ExecutionStore>().SetHaltAsync(false, string.Empty);
        }
    }

    [Fact]
    public async Task RPCs_validate_input_and_list_venues()
    {
        await RpcAssert.InvalidArgumentAsync(() => _client.GetPlanExecutionAsync(new GetPlanExecutionRequest()).ResponseAsync, "plan_id");
        await RpcAssert.InvalidArgumentAsync(() => _client.ListOrdersAsync(new ListOrdersRequest { PlanId = "p", Venue = "bad venue" }).ResponseAsync, "venue");
        await RpcAssert.StatusAsync(() => _client.CancelPlanAsync(new CancelPlanRequest { PlanId = "unknown" }).ResponseAsync, StatusCode.NotFound);
        var venues = await _client.ListVenuesAsync(new ListVenuesRequest());
        Assert.Equal(["SIM-A", "SIM-B", "SIM-C"], venues.Venues.Select(v => v.VenueId));
    }

    private async Task<GetPlanExecutionResponse> WaitForFinalAsync(string planId)
    {
        for (var i = 0; i < 100; i++)
        {
            try
            {
                var execution = await _client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = planId });
                if (PlanExecutor.IsFinal(execution.Status))
                {
                    return execution;
                }
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
            {
                // not started yet
            }

            await Task.Delay(50);
        }

        throw new TimeoutException($"Plan {planId} did not finish.");
    }
}
