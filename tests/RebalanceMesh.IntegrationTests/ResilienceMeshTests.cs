using System.Diagnostics;
using Grpc.Core;
using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// Pricing restarted under a running preview load: planning's reads of pricing are retried through the restart
/// (MeshCallResilience), so client calls wait rather than fail, and none fails once pricing is back.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class ResilienceMeshTests(ITestOutputHelper output) : MeshTest(output)
{
    private const int Concurrency = 8;

    [Fact]
    public async Task Pricing_restarted_under_a_preview_load_fails_no_call_beyond_the_restart_window()
    {
        var planning = PlanningClient();
        await CashPortfolioAsync(planning, "load", 1_000_000m);
        var policy = new Policy { PortfolioId = "load", AbsoluteBand = 0.02 };
        policy.Targets.AddRange(new[] { "DAX", "SMI", "CAC", "FTSE" }.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.24 }));
        await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
        await PreviewWhenPricedAsync(planning, new PreviewRebalanceRequest { PortfolioId = "load" });

        var clock = Stopwatch.StartNew();
        var calls = new System.Collections.Concurrent.ConcurrentBag<(double Start, double End, StatusCode Status)>();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(90)); // bounded whatever happens
        var workers = Enumerable.Range(0, Concurrency).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var start = clock.Elapsed.TotalSeconds;
                var status = StatusCode.OK;
                try
                {
                    await planning.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = "load" }, deadline: DateTime.UtcNow.AddSeconds(15));
                }
                catch (RpcException ex)
                {
                    status = ex.StatusCode;
                }

                calls.Add((start, clock.Elapsed.TotalSeconds, status));
            }
        })).ToArray();

        await Task.Delay(TimeSpan.FromSeconds(2));
        var restartStarted = clock.Elapsed.TotalSeconds;
        await MeshLauncher.RestartGracefullyAsync(StateDir, "pricing", stop.Token);
        var restartEnded = clock.Elapsed.TotalSeconds;
        await Task.Delay(MeshCircuitBreakers.BreakDuration + TimeSpan.FromSeconds(3)); // calls past any break the restart caused
        await stop.CancelAsync();
        await Task.WhenAll(workers);

        var all = calls.OrderBy(c => c.Start).ToArray();
        var failed = all.Where(c => c.Status != StatusCode.OK).ToArray();
        var during = all.Where(c => c.End >= restartStarted && c.Start <= restartEnded).ToArray();
        Output.WriteLine($"restart {restartStarted:F2} s → ready {restartEnded:F2} s; {all.Length} calls, {failed.Length} failed; " +
            $"{during.Length} overlapped the restart, the longest {(during.Length == 0 ? 0 : during.Max(c => c.End - c.Start)):F2} s");
        foreach (var call in failed)
        {
            Output.WriteLine($"  failed {call.Status}: {call.Start:F2} → {call.End:F2} s");
        }

        // A failure may only come from the restart itself: a call ending after pricing was back and its breaker could
        // have closed again fails none.
        var windowEnd = restartEnded + MeshCircuitBreakers.BreakDuration.TotalSeconds;
        Assert.DoesNotContain(failed, c => c.End > windowEnd);
        Assert.Contains(all, c => c.Start > restartEnded && c.Status == StatusCode.OK);
        Assert.True(during.Length > 0, "calls ran while pricing restarted");
    }
}
