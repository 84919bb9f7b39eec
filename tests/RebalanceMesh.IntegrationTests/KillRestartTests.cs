using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// Execution killed (SIGKILL) in the middle of a plan and started again: it takes its unacknowledged plans.approved
/// back from the stream, resumes from its order journal, and the plan completes with no order lost and none sent
/// twice — every leg filled exactly once in planning's portfolio.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class KillRestartTests(ITestOutputHelper output) : MeshTest(output)
{
    [Fact]
    public async Task Execution_killed_mid_plan_resumes_with_no_lost_and_no_duplicate_orders()
    {
        var planning = PlanningClient();
        await CashPortfolioAsync(planning, "killed", 1_000_000m);
        var policy = new Policy
        {
            PortfolioId = "killed",
            AbsoluteBand = 0.02,
            MinTradeNotional = 100m,
            ExecutionStyle = new ExecutionStyle { TwapSlices = 6, TwapDurationSeconds = 3 }, // each leg over 3 s
        };
        policy.Targets.AddRange(new[] { "DAX", "SMI", "CAC", "FTSE" }.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.24 }));
        await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
        var preview = await PreviewWhenPricedAsync(planning, new PreviewRebalanceRequest { PortfolioId = "killed" });
        Assert.Equal(4, preview.Legs.Count);

        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} submitting");
        var submitted = (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "killed", IdempotencyKey = "kill-1" })).Plan;
        using var executionChannel = Mesh.ServiceChannel("execution");
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());

        // Kill once some slices have filled and the plan is far from done.
        var before = 0;
        for (var attempt = 0; attempt < 100 && before < 3; attempt++)
        {
            await Task.Delay(100);
            try
            {
                before = (await execution.ListOrdersAsync(new ListOrdersRequest { PlanId = submitted.PlanId })).Orders.Count(o => o.Status == OrderStatus.Filled);
            }
            catch (Grpc.Core.RpcException)
            {
                // not started yet
            }
        }

        Assert.True(before >= 3, "slices filled before the kill");
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await MeshLauncher.RestartAsync(StateDir, "execution", cancel.Token);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} execution killed after {before} filled orders and started again");

        var plan = await WaitForPlanEndAsync(planning, submitted, seconds: 60);

        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {plan.Status}: {plan.StatusMessage}");
        Assert.Equal(PlanStatus.Completed, plan.Status);

        // Every leg filled exactly its quantity (planning applies each fill id once), every order id is distinct, and
        // each leg's orders add up to the leg: nothing lost, nothing sent twice.
        var orders = (await execution.ListOrdersAsync(new ListOrdersRequest { PlanId = submitted.PlanId })).Orders;
        Assert.Equal(orders.Count, orders.Select(o => o.ClientOrderId).Distinct().Count());
        foreach (var leg in plan.Legs)
        {
            Assert.Equal(leg.Quantity.ToDecimal(), leg.FilledQuantity.ToDecimal());
            Assert.Equal(leg.Quantity.ToDecimal(), orders.Where(o => o.LegId == leg.LegId).Sum(o => o.FilledQuantity.ToDecimal()));
        }

        var portfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "killed", SkipValuation = true })).Portfolio;
        foreach (var leg in plan.Legs)
        {
            Assert.Equal(leg.Quantity.ToDecimal(), portfolio.Positions.Single(p => p.InstrumentId == leg.InstrumentId).Quantity.ToDecimal());
        }

        var spent = orders.Sum(o => (o.FilledQuantity.ToDecimal() * o.AveragePrice.ToDecimal()) + o.Fees.ToDecimal());
        Assert.Equal(1_000_000m - spent, portfolio.Cash.ToDecimal());
    }
}

/// <summary>The whole-mesh latency benchmark (`rmesh bench-mesh`) runs end to end; its figures go to docs/benchmarks.md.</summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class MeshBenchmarkTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_mesh_benchmark_measures_submit_to_last_fill_of_every_plan()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var log = new StringWriter();
        var result = await MeshBenchmark.RunAsync(RebalanceMesh.Testing.RepoPaths.Root, plans: 3, legs: 5, BuildConfiguration.Name, log, cancel.Token);
        output.WriteLine(log.ToString());
        Assert.Equal(5, result.Legs);
        Assert.Equal(3, result.Milliseconds.Count);
        Assert.All(result.Milliseconds, ms => Assert.InRange(ms, 0.1, 60_000));
        Assert.True(result.Percentile(50) <= result.Percentile(99));
        Assert.Equal(result.Milliseconds.Max(), result.Percentile(100));
    }

    [Fact]
    public void Percentiles_are_nearest_rank() =>
        Assert.Equal((20.0, 40.0, 10.0), (new MeshBenchmarkResult(1, [40, 10, 30, 20]).Percentile(50), new MeshBenchmarkResult(1, [40, 10, 30, 20]).Percentile(99), new MeshBenchmarkResult(1, [40, 10, 30, 20]).Percentile(1)));
}
