using System.Numerics.Tensors;

namespace RebalanceMesh.Numerics;

/// <summary>
/// Sample moments of a return matrix (one row per observation, one column per asset): column means and the unbiased
/// sample covariance (divides by T − 1, positive semi-definite by construction). The columns are centred into
/// contiguous arrays once, and each covariance entry is one SIMD dot product of two of them (n(n+1)/2 dots of length T).
/// </summary>
public static class SampleMoments
{
    /// <summary>Mean of each column.</summary>
    public static double[] Means(double[,] returns)
    {
        var (t, n) = (returns.GetLength(0), returns.GetLength(1));
        var means = new double[n];
        for (var i = 0; i < t; i++)
        {
            for (var j = 0; j < n; j++)
            {
                means[j] += returns[i, j];
            }
        }

        for (var j = 0; j < n; j++)
        {
            means[j] /= Math.Max(t, 1);
        }

        return means;
    }

    /// <summary>Unbiased sample covariance, n × n.</summary>
    /// <exception cref="ArgumentException">Fewer than two observations.</exception>
    public static double[,] Covariance(double[,] returns)
    {
        var (t, n) = (returns.GetLength(0), returns.GetLength(1));
        if (t < 2)
        {
            throw new ArgumentException("At least two observations are required.", nameof(returns));
        }

        var means = Means(returns);
        var columns = new double[n][];
        for (var j = 0; j < n; j++)
        {
            var column = new double[t];
            for (var i = 0; i < t; i++)
            {
                column[i] = returns[i, j] - means[j];
            }

            columns[j] = column;
        }

        var covariance = new double[n, n];
        for (var a = 0; a < n; a++)
        {
            for (var b = 0; b <= a; b++)
            {
                var value = TensorPrimitives.Dot(columns[a], columns[b]) / (t - 1);
                covariance[a, b] = value;
                covariance[b, a] = value;
            }
        }

        return covariance;
    }
}
