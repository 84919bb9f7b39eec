using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Benchmarks;

/// <summary>Black–Scholes price and five greeks: scalar loop versus the vectorised batch.</summary>
public class BlackScholesBenchmarks
{
    private double[] _s = null!, _k = null!, _t = null!, _r = null!, _q = null!, _v = null!, _w = null!;
    private double[] _price = null!, _delta = null!, _gamma = null!, _vega = null!, _theta = null!, _rho = null!;

    [Params(10_000)]
    public int Options { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(7);
        double[] Uniform(double lo, double hi) => Enumerable.Range(0, Options).Select(_ => lo + ((hi - lo) * random.NextDouble())).ToArray();
        (_s, _k, _t, _r, _q, _v) = (Uniform(50, 150), Uniform(50, 150), Uniform(0.02, 3), Uniform(0, 0.05), Uniform(0, 0.03), Uniform(0.1, 0.8));
        _w = Enumerable.Range(0, Options).Select(i => i % 2 == 0 ? 1.0 : -1.0).ToArray();
        (_price, _delta, _gamma, _vega, _theta, _rho) = (new double[Options], new double[Options], new double[Options], new double[Options], new double[Options], new double[Options]);
    }

    [Benchmark(Baseline = true)]
    public double Scalar()
    {
        double sum = 0;
        for (var i = 0; i < Options; i++)
        {
            var g = BlackScholes.Value(_w[i] > 0 ? OptionRight.Call : OptionRight.Put, _s[i], _k[i], _t[i], _r[i], _q[i], _v[i]);
            sum += g.Price + g.Delta + g.Gamma + g.Vega + g.Theta + g.Rho;
        }

        return sum;
    }

    [Benchmark]
    public void Batch() => BlackScholesBatch.Value(_s, _k, _t, _r, _q, _v, _w, _price, _delta, _gamma, _vega, _theta, _rho);
}

/// <summary>
/// Side-by-side mode: reads the inputs the comparison script generated (7 little-endian float64 columns: S, K, T, r,
/// q, σ, ±1), warms up, times the batch pricer on one thread (best of several passes), writes the six outputs for the script
/// to check against numpy, and prints the timing as JSON.
/// </summary>
public static class BlackScholesThroughput
{
    public static int Run(string inputPath, string outputPath)
    {
        var bytes = File.ReadAllBytes(inputPath);
        var all = new double[bytes.Length / sizeof(double)];
        Buffer.BlockCopy(bytes, 0, all, 0, bytes.Length);
        var n = all.Length / 7;
        ReadOnlySpan<double> Column(int c) => all.AsSpan(c * n, n);
        var outputs = new double[6 * n];
        Span<double> Out(int c) => outputs.AsSpan(c * n, n);

        // Steady state, as a long-running service sees it: run for two seconds so the JIT's tiering settles (the
        // BCL's vector Exp/Log are promoted to fully optimised code only after call counting), then time.
        var warmup = Stopwatch.StartNew();
        var slice = Math.Min(n, 65_536);
        while (warmup.Elapsed < TimeSpan.FromSeconds(2))
        {
            BlackScholesBatch.Value(Column(0)[..slice], Column(1)[..slice], Column(2)[..slice], Column(3)[..slice], Column(4)[..slice], Column(5)[..slice], Column(6)[..slice],
                Out(0)[..slice], Out(1)[..slice], Out(2)[..slice], Out(3)[..slice], Out(4)[..slice], Out(5)[..slice]);
        }

        Thread.Sleep(500);
        var best = double.MaxValue;
        for (var pass = 0; pass < 7; pass++)
        {
            var started = Stopwatch.GetTimestamp();
            BlackScholesBatch.Value(Column(0), Column(1), Column(2), Column(3), Column(4), Column(5), Column(6), Out(0), Out(1), Out(2), Out(3), Out(4), Out(5));
            best = Math.Min(best, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        var result = new byte[outputs.Length * sizeof(double)];
        Buffer.BlockCopy(outputs, 0, result, 0, result.Length);
        File.WriteAllBytes(outputPath, result);
        Console.WriteLine($"{{\"options\": {n}, \"seconds\": {best.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, \"vector256\": {System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated.ToString().ToLowerInvariant()}}}");
        return 0;
    }
}
