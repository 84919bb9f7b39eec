using RebalanceMesh.ServiceDefaults;
using System.Net;
using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// Redis stopped under a running mesh: readiness turns false and RPCs answer Unavailable (retryable) without any
/// service crashing; Redis started again on its append-only file: every portfolio, plan and order is still there.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class RedisOutageTests(ITestOutputHelper output) : MeshTest(output)
{
    [Fact]
    public async Task Without_Redis_the_mesh_is_unready_and_says_Unavailable_and_after_it_nothing_is_lost()
    {
        var planning = PlanningClient();
        await CashPortfolioAsync(planning, "outage", 500_000m);
        var policy = new Policy { PortfolioId = "outage", AbsoluteBand = 0.05, MinTradeNotional = 100m };
        policy.Targets.AddRange(new[] { "DAX", "CAC" }.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.45 }));
        await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
        await PreviewWhenPricedAsync(planning, new PreviewRebalanceRequest { PortfolioId = "outage" });
        var submitted = (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "outage", IdempotencyKey = "outage-1" })).Plan;
        var plan = await WaitForPlanEndAsync(planning, submitted);
        Assert.Equal(PlanStatus.Completed, plan.Status);
        var before = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "outage", SkipValuation = true })).Portfolio;
        using var executionChannel = Mesh.ServiceChannel("execution");
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());
        var orders = (await execution.ListOrdersAsync(new ListOrdersRequest { PlanId = plan.PlanId })).Orders;
        await Task.Delay(1_500); // past the append-only file's once-a-second fsync

        MeshLauncher.StopRedis(StateDir);

        // Each answer within 1 s: a probe (or client) that waits no longer hears "not ready" (Unavailable), not its own
        // timeout (the probe's 1 s, a DeadlineExceeded).
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(1) };
        foreach (var service in Mesh.Services)
        {
            var status = HttpStatusCode.OK;
            for (var attempt = 0; attempt < 40 && status == HttpStatusCode.OK; attempt++)
            {
                status = (await http.GetAsync(service.HttpUrl + "/health/ready")).StatusCode;
                await Task.Delay(status == HttpStatusCode.OK ? 250 : 0);
            }

            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(service.HttpUrl + "/health/live")).StatusCode); // alive, only not ready
        }

        for (var call = 0; call < 5; call++)
        {
            var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => planning.GetPortfolioAsync(
                new GetPortfolioRequest { PortfolioId = "outage", SkipValuation = true }, deadline: DateTime.UtcNow.AddSeconds(1)).ResponseAsync);
            Assert.Equal(Grpc.Core.StatusCode.Unavailable, refused.StatusCode);
        }

        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await MeshLauncher.StartRedisAsync(StateDir, cancel.Token);

        // Each service reconnects on its own: until it has, it says Unavailable at once (retryable), as a client retries.
        static async Task<T> WhenReconnectedAsync<T>(Func<Task<T>> call)
        {
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    return await call();
                }
                catch (Grpc.Core.RpcException ex) when (ex.StatusCode == Grpc.Core.StatusCode.Unavailable && attempt < 60)
                {
                    await Task.Delay(250);
                }
            }
        }

        var after = await WhenReconnectedAsync(async () => (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "outage", SkipValuation = true })).Portfolio);
        Assert.Equal(before, after);
        Assert.Equal(plan.Status, (await WhenReconnectedAsync(async () => await planning.GetPlanAsync(new GetPlanRequest { PlanId = plan.PlanId }))).Plan.Status);
        Assert.Equal(orders, (await WhenReconnectedAsync(async () => await execution.ListOrdersAsync(new ListOrdersRequest { PlanId = plan.PlanId }))).Orders);
        foreach (var service in Mesh.Services)
        {
            Assert.True(MeshLauncher.IsAlive(service.Pid), $"{service.Name} is still running");
        }
    }
}
