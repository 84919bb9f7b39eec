using Grpc.Core;
using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Planning.V1;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// `rmesh load` and `rmesh soak` run end to end on meshes of their own, shortened: the load answers every call, the
/// market-driven loop completes the plans its monitor submits with no error logged and memory and threads within
/// bounds. The long runs (60 s per RPC, several minutes of soak) are the commands in docs/reliability.md.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class LoadSoakTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_short_load_on_PreviewRebalance_and_AssessPortfolio_answers_every_call()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var log = new StringWriter();
        var results = await LoadCommands.LoadAsync(RebalanceMesh.Testing.RepoPaths.Root, LoadCommands.Rpcs, seconds: 4, concurrency: 4, BuildConfiguration.Name, log, cancel.Token);
        output.WriteLine(log.ToString());
        Assert.Equal(LoadCommands.Rpcs, results.Select(r => r.Rpc));
        foreach (var result in results)
        {
            output.WriteLine(result.Describe());
            Assert.Equal(0, result.ErrorCount);
            Assert.True(result.Milliseconds.Count > 10, result.Describe());
            Assert.Equal(4, result.After.Count); // every service sampled, all still running
        }
    }

    [Fact]
    public async Task A_short_soak_completes_the_monitors_plans_without_errors_and_within_the_memory_and_thread_bounds()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var log = new StringWriter();
        var result = await LoadCommands.SoakAsync(RebalanceMesh.Testing.RepoPaths.Root, TimeSpan.FromSeconds(40), portfolios: 3, BuildConfiguration.Name, log, cancel.Token);
        output.WriteLine(log.ToString());
        foreach (var (service, (warm, end)) in result.Drift)
        {
            output.WriteLine($"{service}: RSS {warm.RssMb:F0} → {end.RssMb:F0} MB, threads {warm.Threads} → {end.Threads}");
        }

        output.WriteLine(string.Join(", ", result.Plans.Select(p => $"{p.Key} {p.Value}")));
        Assert.Empty(result.Stopped);
        Assert.Equal(0, result.ErrorLogLines);
        Assert.True(result.Plans.GetValueOrDefault(PlanStatus.Completed) >= 3, "each portfolio's first rebalance at least");
        Assert.Equal(0, result.Plans.GetValueOrDefault(PlanStatus.Failed));
        Assert.Equal(4, result.Drift.Count);
        Assert.True(result.Stable);
    }

    [Fact]
    public void Soak_stability_and_slope_by_hand()
    {
        // 100 s: warm-up ends at 25 s. Service a: 100 → 120 MB (+20 % ≤ 25 % + 16 MB), threads 20 → 28 (+8): stable.
        ProcessSample A(double t, double rss, int threads) => new("a", t, rss, threads, 50);
        var stable = new SoakResult(TimeSpan.FromSeconds(100), [A(0, 50, 10), A(30, 100, 20), A(60, 110, 24), A(100, 120, 28)], new Dictionary<PlanStatus, int>(), 0, []);
        Assert.True(stable.Stable);
        Assert.Equal(30, stable.Drift["a"].Warm.Seconds);

        // Second half (t ≥ 50): (60, 110) and (100, 120) → 10 MB per 40 s = 15 MB/min.
        Assert.Equal(15, stable.RssSlopeMbPerMinute("a"), 9);

        // One thread too many, or memory beyond 100 × 1.25 + 16 = 141 MB, is not stable.
        Assert.False(new SoakResult(TimeSpan.FromSeconds(100), [A(30, 100, 20), A(100, 120, 29)], new Dictionary<PlanStatus, int>(), 0, []).Stable);
        Assert.False(new SoakResult(TimeSpan.FromSeconds(100), [A(30, 100, 20), A(100, 141.5, 20)], new Dictionary<PlanStatus, int>(), 0, []).Stable);
    }

    [Fact]
    public void Load_results_count_errors_by_status()
    {
        var result = new RpcLoadResult("AssessPortfolio", 2, 1, [1, 2, 3, 4], new Dictionary<StatusCode, int> { [StatusCode.Unavailable] = 2, [StatusCode.DeadlineExceeded] = 1 }, [], []);
        Assert.Equal(3, result.ErrorCount);
        Assert.Equal(2, result.CallsPerSecond);
        Assert.Contains("p50 2.0 ms, p99 4.0 ms", result.Describe());
    }
}
