using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.Optimization;

namespace RebalanceMesh.Risk.Core;

/// <summary>Ledoit–Wolf shrinkage of the sample covariance toward a scaled identity.</summary>
public static class LedoitWolf
{
    /// <summary>
    /// Ledoit &amp; Wolf (2004), "A well-conditioned estimator for large-dimensional covariance matrices": with S the
    /// maximum-likelihood sample covariance of centred returns (divides by T) and μ = tr(S)/p, the estimator is
    /// δμI + (1 − δ)S where δ = min(b̄², d²)/d², d² = ‖S − μI‖², b̄² = Σₜ‖xₜxₜᵀ − S‖²/T² (norms scaled by 1/p).
    /// A convex combination of a PSD matrix and a positive multiple of I: positive definite whenever μ &gt; 0.
    /// </summary>
    public static (Matrix<double> Covariance, double Shrinkage) Estimate(double[,] returns)
    {
        var t = returns.GetLength(0);
        var p = returns.GetLength(1);
        var x = Matrix<double>.Build.Dense(t, p, (i, j) => returns[i, j]);
        for (var j = 0; j < p; j++)
        {
            var mean = x.Column(j).Average();
            for (var i = 0; i < t; i++)
            {
                x[i, j] -= mean;
            }
        }

        var s = x.TransposeThisAndMultiply(x) / t;
        var mu = s.Trace() / p;
        var target = Matrix<double>.Build.DenseIdentity(p) * mu;
        var d2 = (s - target).FrobeniusNorm();
        d2 = d2 * d2 / p;

        // Σₜ ‖xₜxₜᵀ − S‖²_F = Σₜ (‖xₜ‖⁴) − T‖S‖²_F, since Σₜ xₜxₜᵀ = T·S.
        double sumFourth = 0;
        for (var i = 0; i < t; i++)
        {
            var norm2 = x.Row(i).DotProduct(x.Row(i));
            sumFourth += norm2 * norm2;
        }

        var sNorm = s.FrobeniusNorm();
        var bBar2 = (sumFourth - (t * sNorm * sNorm)) / ((double)t * t) / p;
        var b2 = Math.Min(bBar2, d2);
        var shrinkage = d2 > 0 ? b2 / d2 : 0;
        return ((target * shrinkage) + (s * (1 - shrinkage)), shrinkage);
    }
}

/// <summary>A GARCH(1,1) fit: σ²ₜ = ω + α·r²ₜ₋₁ + β·σ²ₜ₋₁, and the next-day variance it forecasts.</summary>
public sealed record GarchFit(double Omega, double Alpha, double Beta, double LogLikelihood, double NextVariance)
{
    /// <summary>Long-run daily variance ω / (1 − α − β).</summary>
    public double LongRunVariance => Omega / (1 - Alpha - Beta);

    /// <summary>
    /// Annualised volatility over each horizon 1…<paramref name="days"/>: √(252/h · Σ_{k=1..h} σ²_{T+k}) with
    /// σ²_{T+k} = V_L + (α + β)^{k−1}(σ²_{T+1} − V_L).
    /// </summary>
    public double[] TermStructure(int days)
    {
        var result = new double[days];
        double sum = 0;
        var persistence = Alpha + Beta;
        for (var k = 1; k <= days; k++)
        {
            sum += LongRunVariance + (Math.Pow(persistence, k - 1) * (NextVariance - LongRunVariance));
            result[k - 1] = Math.Sqrt(RiskMath.TradingDaysPerYear / k * sum);
        }

        return result;
    }
}

/// <summary>Volatility forecasts per asset: EWMA and GARCH(1,1) by maximum likelihood.</summary>
public static class VolatilityForecaster
{
    /// <summary>RiskMetrics EWMA next-day variance of zero-mean returns, weights normalised (newest weight 1).</summary>
    public static double EwmaVariance(IReadOnlyList<double> returns, double lambda)
    {
        double weighted = 0, weights = 0;
        for (var i = 0; i < returns.Count; i++)
        {
            var w = Math.Pow(lambda, returns.Count - 1 - i);
            weighted += w * returns[i] * returns[i];
            weights += w;
        }

        return weighted / weights;
    }

    /// <summary>
    /// Gaussian log-likelihood of demeaned returns under GARCH(1,1), the recursion started at the sample variance:
    /// ℓ = −½ Σₜ (ln 2π + ln σ²ₜ + εₜ²/σ²ₜ). Also returns the next-day variance.
    /// </summary>
    public static (double LogLikelihood, double NextVariance) GarchLikelihood(IReadOnlyList<double> residuals, double omega, double alpha, double beta)
    {
        var variance = residuals.Sum(e => e * e) / residuals.Count;
        double logLikelihood = 0;
        foreach (var e in residuals)
        {
            logLikelihood -= 0.5 * (Math.Log(2 * Math.PI) + Math.Log(variance) + (e * e / variance));
            variance = omega + (alpha * e * e) + (beta * variance);
        }

        return (logLikelihood, variance);
    }

    /// <summary>
    /// Fits GARCH(1,1) to daily returns (demeaned) by maximising the likelihood with Nelder–Mead over an
    /// unconstrained parametrisation that keeps ω &gt; 0, α, β ≥ 0 and α + β &lt; 1, from several starts.
    /// </summary>
    public static GarchFit FitGarch(IReadOnlyList<double> returns)
    {
        if (returns.Count < 30)
        {
            throw new ArgumentException("GARCH needs at least 30 returns.", nameof(returns));
        }

        var mean = returns.Average();
        var residuals = returns.Select(r => r - mean).ToArray();
        var sampleVariance = residuals.Sum(e => e * e) / residuals.Length;

        // θ = (ln ω/σ², logit-like split of persistence p = α+β ∈ (0,1) and share a = α/p ∈ (0,1)).
        (double Omega, double Alpha, double Beta) Unpack(Vector<double> theta)
        {
            var persistence = 1 / (1 + Math.Exp(-theta[1]));
            var share = 1 / (1 + Math.Exp(-theta[2]));
            return (sampleVariance * Math.Exp(theta[0]), persistence * share, persistence * (1 - share));
        }

        double Objective(Vector<double> theta)
        {
            var (omega, alpha, beta) = Unpack(theta);
            var value = -GarchLikelihood(residuals, omega, alpha, beta).LogLikelihood;
            return double.IsFinite(value) ? value : double.MaxValue;
        }

        MinimizationResult? best = null;
        foreach (var (persistence, share) in new[] { (0.95, 0.08), (0.90, 0.15), (0.98, 0.05) })
        {
            var omega = sampleVariance * (1 - persistence);
            var start = Vector<double>.Build.Dense([Math.Log(omega / sampleVariance), Math.Log(persistence / (1 - persistence)), Math.Log(share / (1 - share))]);
            var result = NelderMeadSimplex.Minimum(ObjectiveFunction.Value(Objective), start, 1e-12, 20_000);
            if (best is null || result.FunctionInfoAtMinimum.Value < best.FunctionInfoAtMinimum.Value)
            {
                best = result;
            }
        }

        var (o, a, b) = Unpack(best!.MinimizingPoint);
        var (logLikelihood, next) = GarchLikelihood(residuals, o, a, b);
        return new GarchFit(o, a, b, logLikelihood, next);
    }
}
