using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing.Tests;

public class VolSurfaceTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private const double Spot = 100, Rate = 0.02, Carry = 0.0;

    private static OptionQuote Quote(OptionRight right, double strike, int days, double vol) =>
        new($"X-{days}-{strike}-{right}", right, strike, Now.AddDays(days), BlackScholes.Value(right, Spot, strike, days / 365.0, Rate, Carry, vol).Price);

    [Fact]
    public void Recovers_the_volatilities_it_was_built_from()
    {
        // A skew: 30 % at 80, 22 % at 100, 18 % at 120, on two expiries.
        var quotes = new List<OptionQuote>();
        foreach (var days in new[] { 30, 180 })
        {
            quotes.Add(Quote(OptionRight.Put, 80, days, 0.30));
            quotes.Add(Quote(OptionRight.Put, 100, days, 0.22));
            quotes.Add(Quote(OptionRight.Call, 100, days, 0.22));
            quotes.Add(Quote(OptionRight.Call, 120, days, 0.18));
        }

        var surface = VolSurface.Build("X", Spot, Rate, Carry, Now, quotes);
        Assert.Empty(surface.Rejections);
        Assert.Equal(2, surface.Slices.Count);
        Assert.Equal(0.30, surface.Volatility(80, 30 / 365.0), 1e-10);
        Assert.Equal(0.18, surface.Volatility(120, 180 / 365.0), 1e-10);
        Assert.Equal(0.22, surface.Volatility(100, 180 / 365.0), 1e-10);
        // Between two strikes of one slice the total variance is linear in log-moneyness.
        var slice = surface.Slices[0];
        var mid = (slice.Points[0].LogMoneyness + slice.Points[1].LogMoneyness) / 2;
        Assert.Equal((slice.Points[0].TotalVariance + slice.Points[1].TotalVariance) / 2, surface.TotalVariance(mid, slice.Years), 1e-14);
    }

    [Fact]
    public void Total_variance_never_decreases_with_maturity()
    {
        // An inverted term structure steep enough that raw total variance would fall: 60 % at 30 days, 10 % at 60 days.
        var quotes = new[] { Quote(OptionRight.Call, 100, 30, 0.60), Quote(OptionRight.Call, 100, 60, 0.10), Quote(OptionRight.Call, 100, 365, 0.25) };
        var surface = VolSurface.Build("X", Spot, Rate, Carry, Now, quotes);
        foreach (var k in new[] { -0.3, -0.05, 0.0, 0.1, 0.4 })
        {
            var previous = 0.0;
            for (var days = 1; days <= 730; days++)
            {
                var w = surface.TotalVariance(k, days / 365.0);
                Assert.True(w >= previous - 1e-15, $"w fell at k={k}, day {days}");
                previous = w;
            }
        }
    }

    [Fact]
    public void Quotes_without_a_volatility_are_reported_not_used()
    {
        var quotes = new[]
        {
            Quote(OptionRight.Call, 100, 30, 0.2),
            new OptionQuote("BAD-ABOVE", OptionRight.Call, 90, Now.AddDays(30), 150),   // above the upper bound S
            new OptionQuote("OLD", OptionRight.Call, 90, Now.AddDays(-1), 10),
        };
        var surface = VolSurface.Build("X", Spot, Rate, Carry, Now, quotes);
        Assert.Single(surface.Slices);
        Assert.Equal(["BAD-ABOVE", "OLD"], surface.Rejections.Select(r => r.InstrumentId).Order());
    }
}
