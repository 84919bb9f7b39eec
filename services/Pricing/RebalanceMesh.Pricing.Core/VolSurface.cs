namespace RebalanceMesh.Pricing.Core;

/// <summary>One option's quote as the surface builder needs it.</summary>
public sealed record OptionQuote(string InstrumentId, OptionRight Right, double Strike, DateTimeOffset Expiry, double MidPrice);

/// <summary>One point of a smile: strike, log-moneyness ln(K/F), implied volatility and total variance σ²T.</summary>
public sealed record SmilePoint(string InstrumentId, double Strike, double LogMoneyness, double ImpliedVolatility, double TotalVariance);

/// <summary>The smile of one expiry, points in increasing log-moneyness.</summary>
public sealed record SmileSlice(DateTimeOffset Expiry, double Years, double Forward, IReadOnlyList<SmilePoint> Points)
{
    /// <summary>Total variance at log-moneyness k: linear between points, flat beyond the wings.</summary>
    public double RawTotalVariance(double k)
    {
        if (k <= Points[0].LogMoneyness)
        {
            return Points[0].TotalVariance;
        }

        for (var i = 1; i < Points.Count; i++)
        {
            if (k <= Points[i].LogMoneyness)
            {
                var a = Points[i - 1];
                var b = Points[i];
                var t = (k - a.LogMoneyness) / (b.LogMoneyness - a.LogMoneyness);
                return a.TotalVariance + (t * (b.TotalVariance - a.TotalVariance));
            }
        }

        return Points[^1].TotalVariance;
    }
}

/// <summary>A quote the surface could not use, and why.</summary>
public sealed record SurfaceRejection(string InstrumentId, string Reason);

/// <summary>
/// An implied volatility surface: per-expiry smiles in total variance w(k) = σ²T over log-moneyness k = ln(K/F),
/// interpolated linearly in w across expiries. Calendar arbitrage is excluded by construction: at every k the total
/// variance used for a slice is the running maximum over it and all earlier slices, so w never falls with maturity;
/// before the first expiry w grows linearly from zero and beyond the last it grows at the last slice's variance rate
/// (constant volatility).
/// </summary>
public sealed class VolSurface
{
    public VolSurface(string underlyingId, double spot, double rate, double carry, DateTimeOffset asOf, IReadOnlyList<SmileSlice> slices, IReadOnlyList<SurfaceRejection> rejections)
    {
        UnderlyingId = underlyingId;
        Spot = spot;
        Rate = rate;
        Carry = carry;
        AsOf = asOf;
        Slices = slices;
        Rejections = rejections;
    }

    public string UnderlyingId { get; }

    public double Spot { get; }

    public double Rate { get; }

    public double Carry { get; }

    public DateTimeOffset AsOf { get; }

    public IReadOnlyList<SmileSlice> Slices { get; }

    public IReadOnlyList<SurfaceRejection> Rejections { get; }

    public double Forward(double years) => Spot * Math.Exp((Rate - Carry) * years);

    /// <summary>Total variance at log-moneyness k and time T (years), free of calendar arbitrage.</summary>
    public double TotalVariance(double k, double years)
    {
        if (Slices.Count == 0)
        {
            throw new InvalidOperationException("The surface has no slices.");
        }

        var previous = 0.0;
        var previousYears = 0.0;
        foreach (var slice in Slices)
        {
            var w = Math.Max(slice.RawTotalVariance(k), previous);
            if (years <= slice.Years)
            {
                var t = (years - previousYears) / (slice.Years - previousYears);
                return previous + (t * (w - previous));
            }

            previous = w;
            previousYears = slice.Years;
        }

        return previous * years / previousYears;
    }

    /// <summary>Implied volatility for a strike and expiry.</summary>
    public double Volatility(double strike, double years)
    {
        var t = Math.Max(years, 1.0 / (365 * 24));
        var k = Math.Log(strike / Forward(t));
        return Math.Sqrt(Math.Max(TotalVariance(k, t), 0) / t);
    }

    /// <summary>
    /// Builds a surface from option mids: per expiry, each strike's out-of-the-money quote (puts below the forward,
    /// calls above; the other side when only it is quoted) is turned into an implied volatility. Quotes without a
    /// volatility (outside the no-arbitrage bounds, no time value, expired) are reported, not used.
    /// </summary>
    public static VolSurface Build(string underlyingId, double spot, double rate, double carry, DateTimeOffset asOf, IEnumerable<OptionQuote> quotes)
    {
        var rejections = new List<SurfaceRejection>();
        var slices = new List<SmileSlice>();
        foreach (var expiry in quotes.GroupBy(q => q.Expiry).OrderBy(g => g.Key))
        {
            var years = YearFraction.Between(asOf, expiry.Key);
            if (years <= 0)
            {
                rejections.AddRange(expiry.Select(q => new SurfaceRejection(q.InstrumentId, "expired")));
                continue;
            }

            var forward = spot * Math.Exp((rate - carry) * years);
            var points = new List<SmilePoint>();
            foreach (var strike in expiry.GroupBy(q => q.Strike).OrderBy(g => g.Key))
            {
                var preferred = strike.Key >= forward ? OptionRight.Call : OptionRight.Put;
                var ordered = strike.OrderBy(q => q.Right == preferred ? 0 : 1).ToArray();
                SmilePoint? point = null;
                foreach (var quote in ordered)
                {
                    try
                    {
                        var vol = ImpliedVolatility.Solve(quote.Right, quote.MidPrice, spot, quote.Strike, years, rate, carry);
                        point = new SmilePoint(quote.InstrumentId, quote.Strike, Math.Log(quote.Strike / forward), vol, vol * vol * years);
                        break;
                    }
                    catch (ImpliedVolatilityException ex)
                    {
                        rejections.Add(new SurfaceRejection(quote.InstrumentId, ex.Message));
                    }
                    catch (ArgumentOutOfRangeException ex)
                    {
                        rejections.Add(new SurfaceRejection(quote.InstrumentId, ex.Message));
                    }
                }

                if (point is not null)
                {
                    points.Add(point);
                }
            }

            if (points.Count > 0)
            {
                slices.Add(new SmileSlice(expiry.Key, years, forward, points));
            }
        }

        return new VolSurface(underlyingId, spot, rate, carry, asOf, slices, rejections);
    }
}
