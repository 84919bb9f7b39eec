using System.Runtime.Intrinsics;

namespace RebalanceMesh.Pricing.Core;

/// <summary>
/// Black–Scholes–Merton prices and greeks for many options at once, structure of arrays, vectorised with
/// <see cref="Vector256{T}"/> (four options per instruction). The normal CDF is W. J. Cody's rational Chebyshev
/// approximation of erfc (Math. Comp. 23, 1969; the calerf coefficients) in every lane, each interval evaluated only
/// when a lane needs it. One exponential per option feeds φ(d1), φ(d2) and both CDFs (K·e^{−rT}·φ(d2) =
/// S·e^{−qT}·φ(d1)); prices and greeks match QuantLib to 1e-10 absolute. Lanes with no volatility or no
/// time left, and the tail that does not fill a vector, go through the scalar <see cref="BlackScholes"/>.
/// Conventions are the scalar ones: vega and rho per 1.00, theta per year.
/// </summary>
public static class BlackScholesBatch
{
    private const double InvSqrt2Pi = 0.398942280401432677939946059934;
    private const double InvSqrt2 = 0.707106781186547524400844362105;
    private const double SqrtPiInverse = 5.6418958354775628695e-1;

    private static readonly double[] A = [3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03, 1.85777706184603153e-1];
    private static readonly double[] B = [2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03];
    private static readonly double[] C = [5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8];
    private static readonly double[] D = [1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03];
    private static readonly double[] P = [3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2];
    private static readonly double[] Q = [2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2, 2.33520497626869185e-3];

    /// <summary>
    /// Values every option i: <paramref name="sign"/>[i] is +1 for a call and −1 for a put. All spans have the same length.
    /// </summary>
    public static void Value(
        ReadOnlySpan<double> spot, ReadOnlySpan<double> strike, ReadOnlySpan<double> years, ReadOnlySpan<double> rate,
        ReadOnlySpan<double> carry, ReadOnlySpan<double> volatility, ReadOnlySpan<double> sign,
        Span<double> price, Span<double> delta, Span<double> gamma, Span<double> vega, Span<double> theta, Span<double> rho)
    {
        var n = spot.Length;
        if (strike.Length != n || years.Length != n || rate.Length != n || carry.Length != n || volatility.Length != n || sign.Length != n
            || price.Length != n || delta.Length != n || gamma.Length != n || vega.Length != n || theta.Length != n || rho.Length != n)
        {
            throw new ArgumentException("All inputs and outputs must have the same length.", nameof(spot));
        }

        var i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 4 <= n; i += 4)
            {
                var s = Vector256.Create(spot.Slice(i, 4));
                var k = Vector256.Create(strike.Slice(i, 4));
                var t = Vector256.Create(years.Slice(i, 4));
                var r = Vector256.Create(rate.Slice(i, 4));
                var q = Vector256.Create(carry.Slice(i, 4));
                var v = Vector256.Create(volatility.Slice(i, 4));
                var w = Vector256.Create(sign.Slice(i, 4));

                var sqrtT = Vector256.Sqrt(t);
                var sd = v * sqrtT;
                var invSd = Vector256<double>.One / sd;
                var dfR = Vector256.Exp(-(r * t));
                var dfQ = Vector256.Exp(-(q * t));
                var sq = s * dfQ;
                var kr = k * dfR;
                var d1 = (Vector256.Log(sq / kr) * invSd) + (Vector256.Create(0.5) * sd);
                var d2 = d1 - sd;

                // One exponential serves everything: e^{−d1²/2} gives φ(d1), and K·e^{−rT}·φ(d2) = S·e^{−qT}·φ(d1)
                // gives e^{−d2²/2}; these are also the e^{−z²} factors of the two erfc evaluations (z = ∓d/√2).
                // Clamped at e^−600 (≈ 1e−261): no lane ever computes with subnormals, which cost a microcode assist
                // per operation; what is lost is below 1e−250 in absolute terms.
                var gauss1 = Vector256.Exp(Vector256.Max(Vector256.Create(-0.5) * d1 * d1, Vector256.Create(-600.0)));
                var gauss2 = gauss1 * sq / kr;
                var nd1 = Vector256.Create(0.5) * Erfc(-(w * d1) * Vector256.Create(InvSqrt2), gauss1);
                var nd2 = Vector256.Create(0.5) * Erfc(-(w * d2) * Vector256.Create(InvSqrt2), gauss2);
                var pdf = Vector256.Create(InvSqrt2Pi) * gauss1;

                (w * ((sq * nd1) - (kr * nd2))).StoreUnsafe(ref price[i]);
                (w * dfQ * nd1).StoreUnsafe(ref delta[i]);
                (dfQ * pdf * invSd / s).StoreUnsafe(ref gamma[i]);
                (sq * pdf * sqrtT).StoreUnsafe(ref vega[i]);
                ((Vector256.Create(-0.5) * sq * pdf * v / sqrtT) + (w * q * sq * nd1) - (w * r * kr * nd2)).StoreUnsafe(ref theta[i]);
                (w * kr * t * nd2).StoreUnsafe(ref rho[i]);

                // Degenerate lanes (no time value possible): exact scalar treatment.
                if (Vector256.LessThan(sd, Vector256.Create(1e-14)) != Vector256<double>.Zero)
                {
                    for (var lane = i; lane < i + 4; lane++)
                    {
                        Scalar(lane, spot, strike, years, rate, carry, volatility, sign, price, delta, gamma, vega, theta, rho);
                    }
                }
            }
        }

        for (; i < n; i++)
        {
            Scalar(i, spot, strike, years, rate, carry, volatility, sign, price, delta, gamma, vega, theta, rho);
        }
    }

    private static void Scalar(
        int i, ReadOnlySpan<double> spot, ReadOnlySpan<double> strike, ReadOnlySpan<double> years, ReadOnlySpan<double> rate,
        ReadOnlySpan<double> carry, ReadOnlySpan<double> volatility, ReadOnlySpan<double> sign,
        Span<double> price, Span<double> delta, Span<double> gamma, Span<double> vega, Span<double> theta, Span<double> rho)
    {
        var g = BlackScholes.Value(sign[i] > 0 ? OptionRight.Call : OptionRight.Put, spot[i], strike[i], years[i], rate[i], carry[i], volatility[i]);
        price[i] = g.Price;
        delta[i] = g.Delta;
        gamma[i] = g.Gamma;
        vega[i] = g.Vega;
        theta[i] = g.Theta;
        rho[i] = g.Rho;
    }

    /// <summary>Φ(x) = erfc(−x/√2) / 2 in four lanes.</summary>
    public static Vector256<double> Cdf(Vector256<double> x)
    {
        var z = -x * Vector256.Create(InvSqrt2);
        return Vector256.Create(0.5) * Erfc(z, SplitExpNegSquare(Vector256.Abs(z)));
    }

    /// <summary>erfc in four lanes, to full double precision (e^{−z²} by calerf's split exponent).</summary>
    public static Vector256<double> Erfc(Vector256<double> z) => Erfc(z, SplitExpNegSquare(Vector256.Abs(z)));

    /// <summary>
    /// erfc in four lanes given <paramref name="expNegSquare"/> = e^{−z²}: Cody's intervals blended by masks; the
    /// asymptotic one only when some lane needs it (rare).
    /// </summary>
    private static Vector256<double> Erfc(Vector256<double> z, Vector256<double> expNegSquare)
    {
        var y = Vector256.Abs(z);
        var one = Vector256<double>.One;
        var small = Vector256.LessThanOrEqual(y, Vector256.Create(0.46875));
        var negative = Vector256.LessThan(z, Vector256<double>.Zero);

        // |z| ≤ 0.46875: erf(|z|) = |z|·A(y²)/B(y²). Cheap enough to compute in every lane (a branch mispredicts).
        var ysq = y * y;
        var num = Vector256.Create(A[4]) * ysq;
        var den = ysq;
        for (var j = 0; j < 3; j++)
        {
            num = (num + Vector256.Create(A[j])) * ysq;
            den = (den + Vector256.Create(B[j])) * ysq;
        }

        var erf = y * (num + Vector256.Create(A[3])) / (den + Vector256.Create(B[3]));
        var result = one - Vector256.ConditionalSelect(negative, -erf, erf);

        // 0.46875 < |z| ≤ 4: erfc(|z|)·e^{z²} = C(y)/D(y).
        var num2 = Vector256.Create(C[8]) * y;
        var den2 = y;
        for (var j = 0; j < 7; j++)
        {
            num2 = (num2 + Vector256.Create(C[j])) * y;
            den2 = (den2 + Vector256.Create(D[j])) * y;
        }

        var scaled = (num2 + Vector256.Create(C[7])) / (den2 + Vector256.Create(D[7]));
        var far = Vector256.GreaterThan(y, Vector256.Create(4.0));
        if (far.AsUInt64() != Vector256<ulong>.Zero)
        {
            // |z| > 4: erfc(|z|)·e^{z²} = (1/√π − P(1/y²)/Q(1/y²)/y²) / y.
            var inv = one / Vector256.Max(y * y, Vector256.Create(16.0));
            var num3 = Vector256.Create(P[5]) * inv;
            var den3 = inv;
            for (var j = 0; j < 4; j++)
            {
                num3 = (num3 + Vector256.Create(P[j])) * inv;
                den3 = (den3 + Vector256.Create(Q[j])) * inv;
            }

            var tail = (Vector256.Create(SqrtPiInverse) - (inv * (num3 + Vector256.Create(P[4])) / (den3 + Vector256.Create(Q[4])))) / Vector256.Max(y, Vector256.Create(4.0));
            scaled = Vector256.ConditionalSelect(far, tail, scaled);
        }

        var large = scaled * expNegSquare;
        var erfcLarge = Vector256.ConditionalSelect(negative, Vector256.Create(2.0) - large, large);
        return Vector256.ConditionalSelect(small, result, erfcLarge);
    }

    /// <summary>e^{−y²} as e^{−ŷ²}·e^{−(y−ŷ)(y+ŷ)} with ŷ = ⌊16y⌋/16 (calerf), free of the rounding of y².</summary>
    private static Vector256<double> SplitExpNegSquare(Vector256<double> y)
    {
        var yHat = Vector256.Floor(y * Vector256.Create(16.0)) * Vector256.Create(0.0625);
        return Vector256.Exp(-(yHat * yHat)) * Vector256.Exp(-((y - yHat) * (y + yHat)));
    }
}
