using System.Diagnostics;
using System.Globalization;
using MathNet.Numerics.LinearAlgebra;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Benchmarks;

/// <summary>
/// `qp &lt;problem.bin&gt; &lt;n&gt; &lt;m&gt;`: solves ½xᵀPx + qᵀx s.t. l ≤ Ax ≤ u read from little-endian float64 (P n×n, q n,
/// A m×n, l m, u m, all row-major) and prints the best time of three solves after a warm-up, the objective and the
/// iterations as JSON. For benchmarks/compare/qp_solver.py.
/// </summary>
public static class QpThroughput
{
    public static int Run(string path, int n, int m)
    {
        var bytes = File.ReadAllBytes(path);
        var all = new double[bytes.Length / sizeof(double)];
        Buffer.BlockCopy(bytes, 0, all, 0, bytes.Length);
        var offset = 0;
        double[] Take(int count)
        {
            var slice = all.AsSpan(offset, count).ToArray();
            offset += count;
            return slice;
        }

        var p = Matrix<double>.Build.DenseOfRowMajor(n, n, Take(n * n));
        var q = Vector<double>.Build.DenseOfArray(Take(n));
        var a = Matrix<double>.Build.DenseOfRowMajor(m, n, Take(m * n));
        var l = Vector<double>.Build.DenseOfArray(Take(m).Select(v => v < -1e300 ? double.NegativeInfinity : v).ToArray());
        var u = Vector<double>.Build.DenseOfArray(Take(m).Select(v => v > 1e300 ? double.PositiveInfinity : v).ToArray());
        var problem = new QuadraticProgram(p, q, a, l, u);
        var solution = QpSolver.Solve(problem);
        var best = double.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            var started = Stopwatch.GetTimestamp();
            solution = QpSolver.Solve(problem);
            best = Math.Min(best, Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{{\"seconds\": {best:R}, \"objective\": {solution.Objective:R}, \"iterations\": {solution.Iterations}, \"polished\": {solution.Polished.ToString().ToLowerInvariant()}}}"));
        return 0;
    }
}
