using System.Diagnostics;
using System.Globalization;
using MathNet.Numerics.LinearAlgebra;
using RebalanceMesh.Risk.Core;

namespace RebalanceMesh.Benchmarks;

/// <summary>
/// Side-by-side modes for benchmarks/compare/risk_var.py. Inputs are little-endian float64 files written by the script.
/// `risk-hist &lt;returns.bin&gt; &lt;days&gt; &lt;assets&gt; &lt;values.bin&gt;`: historical + parametric VaR (99 %) of a linear portfolio.
/// `risk-mc &lt;covariance.bin&gt; &lt;assets&gt; &lt;values.bin&gt; &lt;scenarios&gt;`: Monte Carlo VaR (99 %) from a given daily covariance.
/// Each warms up for two seconds, then reports the best of five timed runs and the figures as JSON.
/// </summary>
public static class RiskThroughput
{
    public static int Historical(string returnsPath, int days, int assets, string valuesPath)
    {
        var flat = Read(returnsPath);
        var returns = new double[days, assets];
        Buffer.BlockCopy(flat, 0, returns, 0, flat.Length * sizeof(double));
        var values = Read(valuesPath);
        var matrix = new ReturnMatrix(Enumerable.Range(0, assets).Select(i => "A" + i.ToString(CultureInfo.InvariantCulture)).ToArray(), returns);
        var settings = new RiskSettings(1, [0.99], [VarMethod.Historical, VarMethod.Parametric]);
        var (seconds, report) = Time(() => PortfolioRiskModel.Assess(values, 0, matrix, settings));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"seconds\": {seconds:R}, \"historical_var\": {report.Figures[0].ValueAtRisk:R}, \"parametric_var\": {report.Figures[1].ValueAtRisk:R}}}"));
        return 0;
    }

    public static int MonteCarlo(string covariancePath, int assets, string valuesPath, int scenarios)
    {
        var covariance = Matrix<double>.Build.DenseOfColumnMajor(assets, assets, Read(covariancePath));
        var values = Read(valuesPath);
        var (seconds, pnl) = Time(() => MonteCarloVar.SimulatePnl(values, covariance, scenarios, seed: 1));
        var figure = MonteCarloVar.Figure(pnl, 0.99, 1);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{{\"seconds\": {seconds:R}, \"mc_var\": {figure.ValueAtRisk:R}}}"));
        return 0;
    }

    private static (double Seconds, T Result) Time<T>(Func<T> run)
    {
        var warmup = Stopwatch.StartNew();
        var result = run();
        while (warmup.Elapsed < TimeSpan.FromSeconds(2))
        {
            result = run();
        }

        Thread.Sleep(300);
        var best = double.MaxValue;
        for (var pass = 0; pass < 5; pass++)
        {
            var started = Stopwatch.GetTimestamp();
            result = run();
            best = Math.Min(best, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        return (best, result);
    }

    private static double[] Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var values = new double[bytes.Length / sizeof(double)];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }
}
