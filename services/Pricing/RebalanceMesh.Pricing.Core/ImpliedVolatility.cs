using RebalanceMesh.Domain;

namespace RebalanceMesh.Pricing.Core;

/// <summary>Why an option price has no implied volatility.</summary>
public enum ImpliedVolatilityFailure
{
    /// <summary>The price is below the option's discounted intrinsic value: an arbitrage.</summary>
    BelowIntrinsic,
    /// <summary>The price is at or above the no-arbitrage upper bound (S·e^(−qT) for calls, K·e^(−rT) for puts).</summary>
    AboveUpperBound,
    /// <summary>The option has no time value left in double precision, so every volatility fits.</summary>
    NoTimeValue,
}

/// <summary>An option price outside the no-arbitrage bounds, or one that carries no volatility information.</summary>
public sealed class ImpliedVolatilityException : DomainException
{
    public ImpliedVolatilityException(ImpliedVolatilityFailure failure, string message)
        : base(DomainErrorKind.InvalidArgument, message)
    {
        Failure = failure;
    }

    public ImpliedVolatilityException()
        : this(ImpliedVolatilityFailure.NoTimeValue, "No implied volatility.")
    {
    }

    public ImpliedVolatilityException(string message)
        : this(ImpliedVolatilityFailure.NoTimeValue, message)
    {
    }

    public ImpliedVolatilityException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public ImpliedVolatilityFailure Failure { get; }
}

/// <summary>
/// Implied Black–Scholes–Merton volatility by a safeguarded Newton iteration. The price is first turned into the
/// out-of-the-money option's price by put–call parity (no cancellation in the wings), then ln(price(σ)) = ln(target)
/// is solved by Newton steps with derivative vega/price, kept inside a bracket that shrinks every iteration and
/// falling back to bisection whenever a step leaves it. Converges to the last bit in a few iterations for normal
/// inputs and never diverges.
/// </summary>
public static class ImpliedVolatility
{
    private const double MinVolatility = 1e-9;
    private const double MaxVolatility = 50.0;

    public static double Solve(OptionRight right, double price, double spot, double strike, double years, double rate, double carry)
    {
        if (!(spot > 0) || !(strike > 0) || !(years > 0) || !double.IsFinite(price) || !double.IsFinite(rate) || !double.IsFinite(carry)
            || !double.IsFinite(spot) || !double.IsFinite(strike) || !double.IsFinite(years))
        {
            throw new ArgumentOutOfRangeException(nameof(price), "Implied volatility needs a finite price, positive spot and strike, and positive time.");
        }

        var forwardValue = spot * Math.Exp(-carry * years);
        var strikeValue = strike * Math.Exp(-rate * years);
        var sign = right == OptionRight.Call ? 1.0 : -1.0;
        var intrinsic = Math.Max(sign * (forwardValue - strikeValue), 0);
        var upper = right == OptionRight.Call ? forwardValue : strikeValue;
        if (price < intrinsic * (1 - 1e-15))
        {
            throw new ImpliedVolatilityException(ImpliedVolatilityFailure.BelowIntrinsic,
                $"price {price} is below the discounted intrinsic value {intrinsic}");
        }

        if (price >= upper)
        {
            throw new ImpliedVolatilityException(ImpliedVolatilityFailure.AboveUpperBound,
                $"price {price} is at or above the no-arbitrage upper bound {upper}");
        }

        // The out-of-the-money option has the same volatility and no intrinsic part to cancel. Converting an
        // in-the-money price loses its last bits: what is left must stand clear of that rounding.
        var otm = forwardValue >= strikeValue ? OptionRight.Put : OptionRight.Call;
        var converted = right != otm;
        var target = converted ? price - (sign * (forwardValue - strikeValue)) : price;
        var rounding = converted ? 8 * double.Epsilon * Math.Max(price, Math.Max(forwardValue, strikeValue)) : 0;
        if (!(target > rounding))
        {
            throw new ImpliedVolatilityException(ImpliedVolatilityFailure.NoTimeValue,
                $"price {price} has no time value over the intrinsic value {intrinsic} in double precision; the volatility is undetermined");
        }

        var logTarget = Math.Log(target);
        double lo = MinVolatility, hi = MaxVolatility;
        var sigma = InitialGuess(target, forwardValue, strikeValue, years);
        for (var iteration = 0; iteration < 200; iteration++)
        {
            var g = BlackScholes.Value(otm, spot, strike, years, rate, carry, sigma);
            if (g.Price <= 0)
            {
                lo = sigma; // underflow: volatility is larger
                sigma = Math.Sqrt(lo * hi);
                continue;
            }

            var f = Math.Log(g.Price) - logTarget;
            if (f == 0)
            {
                return sigma;
            }

            if (f < 0)
            {
                lo = sigma;
            }
            else
            {
                hi = sigma;
            }

            var next = g.Vega > 0 ? sigma - (f * g.Price / g.Vega) : double.NaN;
            if (!(next > lo && next < hi))
            {
                next = hi / lo > 4 ? Math.Sqrt(lo * hi) : 0.5 * (lo + hi);
            }

            if (Math.Abs(next - sigma) <= 1e-15 * sigma || hi - lo <= 1e-15 * hi)
            {
                return next;
            }

            sigma = next;
        }

        return sigma;
    }

    /// <summary>Brenner–Subrahmanyam style start near the money, clamped to a sane range.</summary>
    private static double InitialGuess(double target, double forwardValue, double strikeValue, double years)
    {
        var atmGuess = target / (0.4 * Math.Sqrt(forwardValue * strikeValue) * Math.Sqrt(years));
        var moneyness = Math.Abs(Math.Log(forwardValue / strikeValue));
        var wingGuess = Math.Sqrt(2 * moneyness / years);
        return Math.Clamp(Math.Max(atmGuess, wingGuess), 0.01, 5.0);
    }
}
