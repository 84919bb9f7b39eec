using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Benchmarks;

/// <summary>
/// `assess-load &lt;risk gRPC address&gt; &lt;seconds&gt; &lt;concurrency&gt;`: a bounded loopback load on AssessPortfolio. The
/// address must be on loopback; the run stops by itself after the given seconds (at most 120). Prints throughput and
/// latency percentiles as JSON; any error counts and is reported.
/// </summary>
public static class AssessLoad
{
    public static async Task<int> RunAsync(string address, int seconds, int concurrency)
    {
        var uri = new Uri(address);
        if (!uri.IsLoopback)
        {
            Console.Error.WriteLine("Load is only sent to loopback addresses.");
            return 2;
        }

        seconds = Math.Clamp(seconds, 1, 120);
        concurrency = Math.Clamp(concurrency, 1, 256);
        using var channel = GrpcChannel.ForAddress(address);
        var client = new RiskService.RiskServiceClient(channel);
        var request = new AssessPortfolioRequest
        {
            Holdings =
            {
                new Holding { InstrumentId = "DAX", Quantity = 100m },
                new Holding { InstrumentId = "SMI", Quantity = 80m },
                new Holding { InstrumentId = "CAC", Quantity = 120m },
                new Holding { InstrumentId = "FTSE", Quantity = 60m },
            },
            Cash = 10_000m,
            Settings = new RiskSettings { ConfidenceLevels = { 0.95, 0.99 }, Methods = { VarMethod.Historical, VarMethod.Parametric, VarMethod.CornishFisher } },
        };

        await client.AssessPortfolioAsync(request, deadline: DateTime.UtcNow.AddSeconds(10)); // fail fast when not reachable
        var warmupEnd = DateTime.UtcNow.AddSeconds(3);
        var end = warmupEnd.AddSeconds(seconds);
        var latencies = new List<double>[concurrency];
        var errors = 0;
        var workers = Enumerable.Range(0, concurrency).Select(w => Task.Run(async () =>
        {
            var mine = latencies[w] = new List<double>(100_000);
            while (DateTime.UtcNow < end)
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    await client.AssessPortfolioAsync(request, deadline: DateTime.UtcNow.AddSeconds(10));
                    if (DateTime.UtcNow >= warmupEnd)
                    {
                        mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                    }
                }
                catch (RpcException)
                {
                    Interlocked.Increment(ref errors);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);

        var all = latencies.SelectMany(l => l).Order().ToArray();
        double Percentile(double p) => all.Length == 0 ? 0 : all[Math.Min(all.Length - 1, (int)Math.Ceiling(p * all.Length) - 1)];
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"seconds\": {seconds}, \"concurrency\": {concurrency}, \"calls\": {all.Length}, \"errors\": {errors}, \"calls_per_second\": {all.Length / (double)seconds:F0}, \"p50_ms\": {Percentile(0.50):F2}, \"p99_ms\": {Percentile(0.99):F2}, \"max_ms\": {(all.Length > 0 ? all[^1] : 0):F2}}}"));
        return errors == 0 ? 0 : 1;
    }
}
