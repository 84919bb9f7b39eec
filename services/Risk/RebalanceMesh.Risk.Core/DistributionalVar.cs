using MathNet.Numerics.Distributions;
using MathNet.Numerics.LinearAlgebra;

namespace RebalanceMesh.Risk.Core;

/// <summary>Sample moments of a P&amp;L series.</summary>
/// <param name="Skewness">Sample skewness (biased, m3 / m2^1.5, as scipy.stats.skew).</param>
/// <param name="ExcessKurtosis">Sample excess kurtosis (biased, m4 / m2² − 3, as scipy.stats.kurtosis).</param>
public readonly record struct Moments(double Mean, double StandardDeviation, double Skewness, double ExcessKurtosis)
{
    public static Moments Of(IReadOnlyList<double> x)
    {
        var n = x.Count;
        var mean = x.Average();
        double m2 = 0, m3 = 0, m4 = 0;
        foreach (var value in x)
        {
            var d = value - mean;
            var d2 = d * d;
            m2 += d2;
            m3 += d2 * d;
            m4 += d2 * d2;
        }

        m2 /= n;
        m3 /= n;
        m4 /= n;
        return new Moments(mean, Math.Sqrt(m2 * n / (n - 1)), m2 > 0 ? m3 / Math.Pow(m2, 1.5) : 0, m2 > 0 ? (m4 / (m2 * m2)) - 3 : 0);
    }
}

/// <summary>
/// Cornish–Fisher VaR: the normal quantile z corrected for the skewness S and excess kurtosis K of the losses,
/// w(z) = z + (z² − 1)S/6 + (z³ − 3z)K/24 − (2z³ − 5z)S²/36, VaR = σ·w(z_α). CVaR is the mean of the same quantile
/// function over the tail, which integrates in closed form against the normal density:
/// CVaR = σ·φ(z_α)/(1 − α)·[1 + S·z_α/6 + K(z_α² − 1)/24 − S²(2z_α² − 1)/36]. Zero mean, like the parametric model.
/// </summary>
public static class CornishFisher
{
    public static double Expansion(double z, double skewness, double excessKurtosis) =>
        z + (((z * z) - 1) * skewness / 6) + (((z * z * z) - (3 * z)) * excessKurtosis / 24) - (((2 * z * z * z) - (5 * z)) * skewness * skewness / 36);

    /// <summary>VaR and CVaR of a loss distribution with the given moments (losses positive), horizon-scaled.</summary>
    public static VarFigure Figure(double dailySigma, double lossSkewness, double excessKurtosis, double confidence, double horizonScale)
    {
        var z = Normal.InvCDF(0, 1, confidence);
        var valueAtRisk = dailySigma * Expansion(z, lossSkewness, excessKurtosis);
        var tailMean = Normal.PDF(0, 1, z) / (1 - confidence)
            * (1 + (lossSkewness * z / 6) + (excessKurtosis * ((z * z) - 1) / 24) - (lossSkewness * lossSkewness * ((2 * z * z) - 1) / 36));
        return new VarFigure(VarMethod.CornishFisher, confidence, valueAtRisk * horizonScale, dailySigma * tailMean * horizonScale);
    }
}

/// <summary>
/// Seeded Monte Carlo VaR of a linear portfolio under multivariate normal daily returns with covariance Σ = L·Lᵀ.
/// The P&amp;L of scenario z is Vᵀ·L·z = (LᵀV)ᵀ·z, so LᵀV is computed once and each scenario costs one dot product
/// of standard normals — no scenario × asset × asset product. The same seed reproduces the same figures.
/// </summary>
public static class MonteCarloVar
{
    public static double[] SimulatePnl(IReadOnlyList<double> values, Matrix<double> dailyCovariance, int scenarios, int seed, CancellationToken cancellationToken = default)
    {
        var n = values.Count;
        var loading = Factor(dailyCovariance).TransposeThisAndMultiply(Vector<double>.Build.DenseOfEnumerable(values)).ToArray();
        var normals = new NormalSampler(seed);
        var pnl = new double[scenarios];
        var z = new double[n];
        for (var s = 0; s < scenarios; s++)
        {
            if ((s & 1023) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested(); // the caller went away or its deadline passed
            }

            for (var i = 0; i < n; i++)
            {
                z[i] = normals.Next();
            }

            pnl[s] = System.Numerics.Tensors.TensorPrimitives.Dot<double>(loading, z);
        }

        return pnl;
    }

    public static VarFigure Figure(double[] pnl, double confidence, double horizonScale) =>
        PortfolioRiskModel.Historical(pnl, confidence, horizonScale) with { Method = VarMethod.MonteCarlo };

    /// <summary>Cholesky factor of a covariance matrix, with a tiny diagonal loading when it is only semi-definite.</summary>
    public static Matrix<double> Factor(Matrix<double> covariance)
    {
        var scale = Math.Max(covariance.Diagonal().Maximum(), 1e-300);
        for (var jitter = 0.0; ; jitter = jitter == 0 ? 1e-12 * scale : jitter * 10)
        {
            try
            {
                var loaded = jitter == 0 ? covariance : covariance + (Matrix<double>.Build.DenseIdentity(covariance.RowCount) * jitter);
                return loaded.Cholesky().Factor;
            }
            catch (ArgumentException) when (jitter < 1e-3 * scale)
            {
                // Semi-definite (e.g. more assets than observations): load the diagonal a little and retry.
            }
        }
    }

}

/// <summary>Standard normal draws by Marsaglia's polar method from a seeded generator (both values of each pair used).</summary>
public sealed class NormalSampler(int seed)
{
    private readonly Random _random = new(seed);
    private double _spare;
    private bool _hasSpare;

    public double Next()
    {
        if (_hasSpare)
        {
            _hasSpare = false;
            return _spare;
        }

        while (true)
        {
            var u = (2 * _random.NextDouble()) - 1;
            var v = (2 * _random.NextDouble()) - 1;
            var s = (u * u) + (v * v);
            if (s is > 0 and < 1)
            {
                var factor = Math.Sqrt(-2 * Math.Log(s) / s);
                _spare = v * factor;
                _hasSpare = true;
                return u * factor;
            }
        }
    }
}
