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

            normals.Fill(z);
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

/// <summary>
/// Standard normal draws by Marsaglia &amp; Tsang's ziggurat (J. Stat. Softw. 5(8), 2000; 128 layers) on a seeded
/// xoshiro256** generator. The layer index and the candidate come from different bits of one 64-bit draw, which removes
/// the original's known correlation between them. About 99 % of draws take the fast path: one draw, one multiply,
/// one comparison. The same seed reproduces the same sequence.
/// </summary>
public sealed class NormalSampler
{
    private const double R = 3.442619855899;
    private static readonly uint[] Kn = new uint[128];
    private static readonly double[] Wn = new double[128];
    private static readonly double[] Fn = new double[128];
    private ulong _s0, _s1, _s2, _s3;

    static NormalSampler()
    {
        const double m1 = 2147483648.0;
        const double vn = 9.91256303526217e-3;
        var dn = R;
        var tn = dn;
        var q = vn / Math.Exp(-0.5 * dn * dn);
        Kn[0] = (uint)(dn / q * m1);
        Kn[1] = 0;
        Wn[0] = q / m1;
        Wn[127] = dn / m1;
        Fn[0] = 1.0;
        Fn[127] = Math.Exp(-0.5 * dn * dn);
        for (var i = 126; i >= 1; i--)
        {
            dn = Math.Sqrt(-2 * Math.Log((vn / dn) + Math.Exp(-0.5 * dn * dn)));
            Kn[i + 1] = (uint)(dn / tn * m1);
            tn = dn;
            Fn[i] = Math.Exp(-0.5 * dn * dn);
            Wn[i] = dn / m1;
        }
    }

    public NormalSampler(int seed)
    {
        // SplitMix64 expands the seed into the generator's state.
        var x = (ulong)(uint)seed + 0x9E3779B97F4A7C15UL;
        ulong SplitMix()
        {
            x += 0x9E3779B97F4A7C15UL;
            var z = x;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        (_s0, _s1, _s2, _s3) = (SplitMix(), SplitMix(), SplitMix(), SplitMix());
    }

    /// <summary>Fills <paramref name="destination"/> with standard normals.</summary>
    public void Fill(Span<double> destination)
    {
        for (var i = 0; i < destination.Length; i++)
        {
            destination[i] = Next();
        }
    }

    public double Next()
    {
        var bits = NextBits();
        var iz = (int)(bits & 127);
        var hz = (int)(bits >> 32);
        if ((uint)Math.Abs((long)hz) < Kn[iz])
        {
            return hz * Wn[iz];
        }

        return Slow(hz, iz);
    }

    private double Slow(int hz, int iz)
    {
        while (true)
        {
            var x = hz * Wn[iz];
            if (iz == 0)
            {
                // The base strip's tail beyond R, by Marsaglia's exponential rejection.
                double tail, y;
                do
                {
                    tail = -Math.Log(Uniform()) / R;
                    y = -Math.Log(Uniform());
                }
                while (y + y < tail * tail);
                return hz > 0 ? R + tail : -R - tail;
            }

            if (Fn[iz] + (Uniform() * (Fn[iz - 1] - Fn[iz])) < Math.Exp(-0.5 * x * x))
            {
                return x;
            }

            var bits = NextBits();
            iz = (int)(bits & 127);
            hz = (int)(bits >> 32);
            if ((uint)Math.Abs((long)hz) < Kn[iz])
            {
                return hz * Wn[iz];
            }
        }
    }

    /// <summary>Uniform on (0, 1].</summary>
    private double Uniform() => ((NextBits() >> 11) + 1) * (1.0 / 9007199254740992.0);

    private ulong NextBits()
    {
        var result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        var t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }
}
