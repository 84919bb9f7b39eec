using MathNet.Numerics.LinearAlgebra;
using RebalanceMesh.Numerics;

namespace RebalanceMesh.Risk.Core;

/// <summary>Covariance estimators over daily returns. Results are per day; annualise with <see cref="RiskMath.TradingDaysPerYear"/>.</summary>
public static class CovarianceEstimator
{
    /// <summary>Unbiased sample covariance (divides by T − 1), positive semi-definite by construction (<see cref="SampleMoments"/>).</summary>
    public static Matrix<double> Sample(double[,] returns) => Matrix<double>.Build.DenseOfArray(SampleMoments.Covariance(returns));

    /// <summary>
    /// RiskMetrics EWMA covariance with decay <paramref name="lambda"/> around a zero mean, weights normalised to
    /// sum to one (so short histories are not biased low). A weighted sum of outer products: PSD by construction.
    /// </summary>
    public static Matrix<double> Ewma(double[,] returns, double lambda)
    {
        if (!(lambda > 0 && lambda < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(lambda), "The EWMA decay must be in (0, 1).");
        }

        var t = returns.GetLength(0);
        var n = returns.GetLength(1);
        var weighted = Matrix<double>.Build.Dense(t, n);
        double weightSum = 0;
        for (var i = 0; i < t; i++)
        {
            // Newest observation (last row) gets weight 1, the one before λ, and so on.
            var weight = Math.Pow(lambda, t - 1 - i);
            weightSum += weight;
            var root = Math.Sqrt(weight);
            for (var j = 0; j < n; j++)
            {
                weighted[i, j] = returns[i, j] * root;
            }
        }

        return weighted.TransposeThisAndMultiply(weighted) / weightSum;
    }

    /// <summary>Correlation matrix of a covariance matrix; zero-variance assets get zero correlation and unit diagonal.</summary>
    public static Matrix<double> Correlation(Matrix<double> covariance)
    {
        var n = covariance.RowCount;
        var sd = Enumerable.Range(0, n).Select(i => Math.Sqrt(Math.Max(covariance[i, i], 0))).ToArray();
        return Matrix<double>.Build.Dense(n, n, (i, j) =>
            i == j ? 1.0 : sd[i] > 0 && sd[j] > 0 ? covariance[i, j] / (sd[i] * sd[j]) : 0.0);
    }
}
