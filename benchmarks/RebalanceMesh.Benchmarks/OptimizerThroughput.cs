using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.Planning.Tests;

namespace RebalanceMesh.Benchmarks;

/// <summary>
/// `optimizer &lt;case.json&gt;`: solves one cost-aware rebalancing case (the format of tests/reference/optimizer_reference.py)
/// and prints, as JSON, the best time of three cold solves after a warm-up, one warm-started re-solve's time, the
/// objective and the iterations. For benchmarks/compare/rebalance_optimizer.py.
/// </summary>
public static class OptimizerThroughput
{
    public static int Run(string path)
    {
        var problem = OptimizerCase.Parse(JsonDocument.Parse(File.ReadAllText(path)).RootElement);
        var result = RebalanceOptimizer.Optimize(problem);
        var best = double.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            var started = Stopwatch.GetTimestamp();
            result = RebalanceOptimizer.Optimize(problem);
            best = Math.Min(best, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        var warmStarted = Stopwatch.GetTimestamp();
        var warm = RebalanceOptimizer.Optimize(problem, warm: result.Solution);
        var warmSeconds = Stopwatch.GetElapsedTime(warmStarted).TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"seconds\": {best:R}, \"warm_seconds\": {warmSeconds:R}, \"objective\": {result.Objective:R}, \"iterations\": {result.Iterations}, \"warm_iterations\": {warm.Iterations}, \"converged\": {result.Converged.ToString().ToLowerInvariant()}}}"));
        return 0;
    }
}
