using MathNet.Numerics;

namespace RebalanceMesh.Pricing.Core;

/// <summary>Call or put.</summary>
public enum OptionRight
{
    Call,
    Put,
}

/// <summary>Price and sensitivities per unit of a European option.</summary>
/// <param name="Vega">Per 1.00 of volatility.</param>
/// <param name="Theta">Per year of calendar time (negative when time decay costs the holder).</param>
/// <param name="Rho">Per 1.00 of the rate.</param>
public readonly record struct OptionGreeks(double Price, double Delta, double Gamma, double Vega, double Theta, double Rho);

/// <summary>Standard normal distribution with the CDF from erfc, accurate to about 1e-16 relative in both tails.</summary>
public static class StandardNormal
{
    private const double InvSqrt2Pi = 0.398942280401432677939946059934;

    public static double Pdf(double x) => InvSqrt2Pi * Math.Exp(-0.5 * x * x);

    public static double Cdf(double x) => 0.5 * SpecialFunctions.Erfc(-x / Constants.Sqrt2);
}

/// <summary>
/// Black–Scholes–Merton with continuous carry: spot S, strike K, time T in years, rate r, carry (dividend or
/// foreign rate) q, volatility σ. With S the forward and q = r it is Black-76.
/// </summary>
public static class BlackScholes
{
    public static OptionGreeks Value(OptionRight right, double spot, double strike, double years, double rate, double carry, double volatility)
    {
        if (!(spot > 0) || !(strike > 0) || !(years >= 0) || !(volatility >= 0) || !double.IsFinite(rate) || !double.IsFinite(carry))
        {
            throw new ArgumentOutOfRangeException(nameof(spot), "Option inputs must be finite with positive spot and strike and non-negative time and volatility.");
        }

        var dfRate = Math.Exp(-rate * years);
        var dfCarry = Math.Exp(-carry * years);
        var sign = right == OptionRight.Call ? 1.0 : -1.0;
        var stdDev = volatility * Math.Sqrt(years);

        if (stdDev < 1e-14)
        {
            // Expired or zero volatility: intrinsic value of the forward.
            var forward = spot * dfCarry / dfRate;
            var itm = sign * (forward - strike) > 0;
            var price = itm ? sign * (spot * dfCarry - strike * dfRate) : 0.0;
            return new OptionGreeks(price, itm ? sign * dfCarry : 0.0, 0.0, 0.0, 0.0, itm ? sign * strike * years * dfRate : 0.0);
        }

        var d1 = (Math.Log(spot / strike) + ((rate - carry) * years)) / stdDev + (0.5 * stdDev);
        var d2 = d1 - stdDev;
        var nd1 = StandardNormal.Cdf(sign * d1);
        var nd2 = StandardNormal.Cdf(sign * d2);
        var pdf = StandardNormal.Pdf(d1);

        var value = sign * ((spot * dfCarry * nd1) - (strike * dfRate * nd2));
        var delta = sign * dfCarry * nd1;
        var gamma = dfCarry * pdf / (spot * stdDev);
        var vega = spot * dfCarry * pdf * Math.Sqrt(years);
        var theta = (-spot * dfCarry * pdf * volatility / (2 * Math.Sqrt(years)))
            + (sign * carry * spot * dfCarry * nd1)
            - (sign * rate * strike * dfRate * nd2);
        var rho = sign * strike * years * dfRate * nd2;
        return new OptionGreeks(value, delta, gamma, vega, theta, rho);
    }
}
