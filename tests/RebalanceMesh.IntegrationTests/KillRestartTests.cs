using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// A service killed (SIGKILL) in the middle of a plan. Execution started again takes its unacknowledged
/// plans.approved back from the stream, resumes from its order journal, and the plan completes with no order lost and
/// none sent twice. Planning killed while the plan executes and started again after execution has finished: it takes
/// the reports it missed from the stream and the plan's status, positions and cash converge to what was filled. Two
/// execution replicas share the plans, and when one is killed the other finishes its plans.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class KillRestartTests(ITestOutputHelper output) : MeshTest(output)
{
    private const decimal Capital = 1_000_000m;

    [Fact]
    public async Task Execution_killed_mid_plan_resumes_with_no_lost_and_no_duplicate_orders()
    {
        var planning = PlanningClient();
        var (submitted, execution) = await SubmitAndWaitForSomeFillsAsync(planning, "killed");
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await MeshLauncher.RestartAsync(StateDir, "execution", cancel.Token);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} execution killed and started again");

        var plan = await WaitForPlanEndAsync(planning, submitted, seconds: 60);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {plan.Status}: {plan.StatusMessage}");
        await AssertFilledExactlyOnceAsync(planning, execution, plan, "killed");
    }

    [Fact]
    public async Task Planning_killed_mid_plan_converges_from_the_reports_after_its_restart()
    {
        var planning = PlanningClient();
        var (submitted, execution) = await SubmitAndWaitForSomeFillsAsync(planning, "planner-down");
        MeshLauncher.KillService(StateDir, "planning");
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} planning killed");

        // Execution carries on without planning and finishes the plan; its reports wait in the stream.
        var finished = await WaitForExecutionAsync(execution, submitted.PlanId, seconds: 60);
        Assert.Equal(ExecutionStatus.Completed, finished.Status);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} execution completed the plan while planning was down");

        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await MeshLauncher.StartServiceAgainAsync(StateDir, "planning", cancel.Token);
        var plan = await WaitForPlanEndAsync(planning, submitted, seconds: 60);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} planning started again: {plan.Status}: {plan.StatusMessage}");
        await AssertFilledExactlyOnceAsync(planning, execution, plan, "planner-down");
    }

    [Fact]
    public async Task Two_execution_replicas_share_the_plans_and_one_killed_mid_plan_hands_its_plans_to_the_other()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var state = await MeshLauncher.StartReplicaAsync(StateDir, "execution", "execution-2", cancel.Token);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} second execution replica ready");
        var planning = PlanningClient();
        var portfolios = new[] { "two-1", "two-2", "two-3", "two-4", "two-5", "two-6" };
        var submitted = new List<Plan>();
        foreach (var portfolioId in portfolios)
        {
            submitted.Add(await SubmitTwapPlanAsync(planning, portfolioId, seconds: 8));
        }

        // Every plan has started somewhere; the replica running the most is killed mid-plan.
        var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(state.RedisConnection);
        await using var _ = redis;
        Dictionary<string, string> owners = [];
        Dictionary<string, string> running = [];
        for (var attempt = 0; attempt < 100 && owners.Count < submitted.Count; attempt++)
        {
            await Task.Delay(100);
            running = (await redis.GetDatabase().HashGetAllAsync("exe:run-owners")).ToDictionary(e => e.Name.ToString(), e => e.Value.ToString());
            foreach (var (plan, owner) in running)
            {
                owners.TryAdd(plan, owner);
            }
        }

        Assert.Equal(submitted.Count, owners.Count);
        var victim = running.Values.GroupBy(o => o).OrderByDescending(g => g.Count()).First().Key;
        var (killed, survivor) = victim == "execution-1" ? ("execution", "execution-2") : ("execution-2", "execution");
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} plans by replica: {string.Join(", ", owners.Values.GroupBy(o => o).Select(g => $"{g.Key} {g.Count()}"))}; killing {killed}");
        using var survivorChannel = state.ServiceChannel(survivor);
        var execution = new ExecutionService.ExecutionServiceClient(survivorChannel.WithDefaultDeadline());
        await WaitForFilledOrdersAsync(execution, running.First(p => p.Value == victim).Key, 2);
        MeshLauncher.KillService(StateDir, killed);

        // The survivor takes the dead replica's plans once their leases end and finishes them from their journals.
        for (var i = 0; i < submitted.Count; i++)
        {
            var plan = await WaitForPlanEndAsync(planning, submitted[i], seconds: 60);
            Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {plan.PlanId} (first on {owners[plan.PlanId]}): {plan.Status}: {plan.StatusMessage}");
            await AssertFilledExactlyOnceAsync(planning, execution, plan, portfolios[i]);
        }

        Assert.Equal(0, await redis.GetDatabase().SortedSetLengthAsync("exe:runs"));
    }

    /// <summary>A cash portfolio rebalanced into four indices, each leg sliced over 3 s; returns once three slices have filled.</summary>
    private async Task<(Plan Submitted, ExecutionService.ExecutionServiceClient Execution)> SubmitAndWaitForSomeFillsAsync(PlanningService.PlanningServiceClient planning, string portfolioId)
    {
        var submitted = await SubmitTwapPlanAsync(planning, portfolioId);
        var execution = new ExecutionService.ExecutionServiceClient(ServiceChannel("execution").WithDefaultDeadline());

        // Some slices have filled and the plan is far from done.
        var filled = await WaitForFilledOrdersAsync(execution, submitted.PlanId, 3);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {filled} orders filled");
        return (submitted, execution);
    }

    /// <summary>A cash portfolio rebalanced into four indices, each leg in six slices over <paramref name="seconds"/>: the submitted plan.</summary>
    private async Task<Plan> SubmitTwapPlanAsync(PlanningService.PlanningServiceClient planning, string portfolioId, int seconds = 3)
    {
        await CashPortfolioAsync(planning, portfolioId, Capital);
        var policy = new Policy
        {
            PortfolioId = portfolioId,
            AbsoluteBand = 0.02,
            MinTradeNotional = 100m,
            ExecutionStyle = new ExecutionStyle { TwapSlices = 6, TwapDurationSeconds = seconds },
        };
        policy.Targets.AddRange(new[] { "DAX", "SMI", "CAC", "FTSE" }.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.24 }));
        await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
        var preview = await PreviewWhenPricedAsync(planning, new PreviewRebalanceRequest { PortfolioId = portfolioId });
        Assert.Equal(4, preview.Legs.Count);

        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} submitting {portfolioId}");
        return (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = portfolioId, IdempotencyKey = portfolioId + "-1" })).Plan;
    }

    /// <summary>Waits (up to 10 s) until at least <paramref name="count"/> of the plan's orders have filled; returns how many have.</summary>
    private static async Task<int> WaitForFilledOrdersAsync(ExecutionService.ExecutionServiceClient execution, string planId, int count)
    {
        var filled = 0;
        for (var attempt = 0; attempt < 100 && filled < count; attempt++)
        {
            await Task.Delay(100);
            try
            {
                filled = (await execution.ListOrdersAsync(new ListOrdersRequest { PlanId = planId })).Orders.Count(o => o.Status == OrderStatus.Filled);
            }
            catch (Grpc.Core.RpcException)
            {
                // not started yet
            }
        }

        Assert.True(filled >= count, $"{count} orders of {planId} filled");
        return filled;
    }

    private static async Task<GetPlanExecutionResponse> WaitForExecutionAsync(ExecutionService.ExecutionServiceClient execution, string planId, int seconds)
    {
        var state = await execution.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = planId });
        for (var attempt = 0; attempt < seconds * 10 && state.Status is ExecutionStatus.Accepted or ExecutionStatus.Running; attempt++)
        {
            await Task.Delay(100);
            state = await execution.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = planId });
        }

        return state;
    }

    /// <summary>
    /// The plan completed; every leg filled exactly its quantity (planning applies each fill id once); every order id
    /// is distinct and each leg's orders add up to the leg; positions and cash are what the fills say: nothing lost,
    /// nothing applied twice.
    /// </summary>
    private static async Task AssertFilledExactlyOnceAsync(PlanningService.PlanningServiceClient planning, ExecutionService.ExecutionServiceClient execution, Plan plan, string portfolioId)
    {
        Assert.Equal(PlanStatus.Completed, plan.Status);
        var orders = (await execution.ListOrdersAsync(new ListOrdersRequest { PlanId = plan.PlanId })).Orders;
        Assert.Equal(orders.Count, orders.Select(o => o.ClientOrderId).Distinct().Count());
        foreach (var leg in plan.Legs)
        {
            Assert.Equal(leg.Quantity.ToDecimal(), leg.FilledQuantity.ToDecimal());
            Assert.Equal(leg.Quantity.ToDecimal(), orders.Where(o => o.LegId == leg.LegId).Sum(o => o.FilledQuantity.ToDecimal()));
        }

        var portfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = portfolioId, SkipValuation = true })).Portfolio;
        foreach (var leg in plan.Legs)
        {
            Assert.Equal(leg.Quantity.ToDecimal(), portfolio.Positions.Single(p => p.InstrumentId == leg.InstrumentId).Quantity.ToDecimal());
        }

        var spent = orders.Sum(o => (o.FilledQuantity.ToDecimal() * o.AveragePrice.ToDecimal()) + o.Fees.ToDecimal());
        Assert.Equal(Capital - spent, portfolio.Cash.ToDecimal());
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
    public async Task Plans_of_many_portfolios_submitted_together_all_complete_with_no_order_lost_or_duplicated()
    {
        // The smoke size of `rmesh bench-mesh --portfolios N --execution-replicas 2`: eight portfolios at once, their
        // plans shared by two execution replicas.
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var log = new StringWriter();
        var result = await MeshBenchmark.RunTogetherAsync(RebalanceMesh.Testing.RepoPaths.Root, portfolios: 8, legs: 3, eventConcurrency: 4, BuildConfiguration.Name, log, cancel.Token, executionReplicas: 2);
        output.WriteLine(log.ToString());
        Assert.Equal(8, result.Plans.Milliseconds.Count);
        Assert.Equal((0, 0), (result.Lost, result.Duplicated));
        Assert.All(result.Plans.Milliseconds, ms => Assert.InRange(ms, 0.1, 120_000));
    }

    [Fact]
    public async Task The_monitor_benchmark_sees_every_holder_of_a_moved_instrument_breach_across_two_replicas_and_plans_a_storm_once()
    {
        // The smoke size of `rmesh bench-monitor`: 200 portfolios on two planning replicas, 3 measured ticks; every holder
        // of the moved instrument (about 40 each) is alerted, none missing, whichever replica holds it. Then a storm of 50
        // automatic portfolios breached at once: each gets exactly one plan.
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var log = new StringWriter();
        var result = await MonitorBenchmark.RunAsync(RebalanceMesh.Testing.RepoPaths.Root, portfolios: 200, replicas: 2, ticks: 3, storm: 50, BuildConfiguration.Name, log, cancel.Token);
        output.WriteLine(log.ToString());
        Assert.Equal(0, result.Missing);
        Assert.Equal(3, result.TickToDecision.Count);
        Assert.All(result.TickToDecision, ms => Assert.InRange(ms, 0.1, 60_000));
        Assert.InRange(result.AlertsPerTick, 30, 50); // 200 portfolios × 10 of 50 instruments
        Assert.Equal(2, result.MemoryMb.Count);
        Assert.Equal(200, result.Split.Sum());
        Assert.All(result.Split, n => Assert.InRange(n, 50, 150)); // 32 partitions each; 200 portfolios hash unevenly at this size
        Assert.Equal((50, 50, 0), (result.Storm!.Portfolios, result.Storm.Planned, result.Storm.Twice));
    }

    [Fact]
    public async Task A_planning_replica_killed_during_a_storm_leaves_every_breached_portfolio_exactly_one_plan()
    {
        // Two planning replicas, 150 automatic portfolios breached at once; the second replica is killed (SIGKILL) as soon
        // as the first plans are stored. The first takes its partitions when its membership ends, with their pending plan
        // requests: every portfolio gets its plan, none two (a request worked again finds its plan, or its cooldown).
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var log = new StringWriter();
        var result = await MonitorBenchmark.RunAsync(RebalanceMesh.Testing.RepoPaths.Root, portfolios: 200, replicas: 2, ticks: 1, storm: 150, BuildConfiguration.Name, log, cancel.Token, killDuringStorm: true);
        output.WriteLine(log.ToString());
        Assert.Contains("killed planning replica", log.ToString());
        Assert.Equal((150, 150, 0), (result.Storm!.Portfolios, result.Storm.Planned, result.Storm.Twice));
    }

    [Fact]
    public void Percentiles_are_nearest_rank() =>
        Assert.Equal((20.0, 40.0, 10.0), (new MeshBenchmarkResult(1, [40, 10, 30, 20]).Percentile(50), new MeshBenchmarkResult(1, [40, 10, 30, 20]).Percentile(99), new MeshBenchmarkResult(1, [40, 10, 30, 20]).Percentile(1)));
}
