using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing.Tests;

public class BlackScholesTests
{
    [Theory]
    // Φ values from the standard normal table / R's pnorm to 16 significant digits.
    [InlineData(0.0, 0.5)]
    [InlineData(1.96, 0.9750021048517795)]
    [InlineData(-1.96, 0.02499789514822043)]
    [InlineData(-5.0, 2.866515718791939e-07)]
    [InlineData(-10.0, 7.619853024160527e-24)]
    public void Normal_cdf_is_accurate_in_the_body_and_the_tails(double x, double expected)
    {
        Assert.Equal(expected, StandardNormal.Cdf(x), expected * 1e-13 + 1e-17);
    }

    [Fact]
    public void Matches_Hulls_textbook_example()
    {
        // Hull, Options, Futures and Other Derivatives, Example 15.6: S=42, K=40, r=10 %, σ=20 %, T=0.5 → c=4.76, p=0.81.
        var call = BlackScholes.Value(OptionRight.Call, 42, 40, 0.5, 0.10, 0, 0.20);
        var put = BlackScholes.Value(OptionRight.Put, 42, 40, 0.5, 0.10, 0, 0.20);
        Assert.Equal(4.76, Math.Round(call.Price, 2));
        Assert.Equal(0.81, Math.Round(put.Price, 2));
    }

    [Theory]
    [InlineData(100, 80, 0.25, 0.03, 0.01, 0.2)]
    [InlineData(100, 120, 2.0, 0.05, 0.02, 0.35)]
    [InlineData(50, 50, 0.01, 0.0, 0.0, 0.8)]
    public void Put_call_parity_holds_with_carry(double s, double k, double t, double r, double q, double vol)
    {
        var call = BlackScholes.Value(OptionRight.Call, s, k, t, r, q, vol);
        var put = BlackScholes.Value(OptionRight.Put, s, k, t, r, q, vol);
        var forwardValue = (s * Math.Exp(-q * t)) - (k * Math.Exp(-r * t));
        Assert.Equal(forwardValue, call.Price - put.Price, 1e-11);
    }

    [Theory]
    [InlineData(OptionRight.Call)]
    [InlineData(OptionRight.Put)]
    public void Greeks_match_finite_differences(OptionRight right)
    {
        const double s = 105, k = 100, t = 0.75, r = 0.04, q = 0.015, vol = 0.28;
        var g = BlackScholes.Value(right, s, k, t, r, q, vol);
        double Price(double spot, double years, double rate, double sigma) => BlackScholes.Value(right, spot, k, years, rate, q, sigma).Price;
        const double h = 1e-4;
        Assert.Equal((Price(s + h, t, r, vol) - Price(s - h, t, r, vol)) / (2 * h), g.Delta, 1e-7);
        Assert.Equal((Price(s + 1e-2, t, r, vol) - (2 * g.Price) + Price(s - 1e-2, t, r, vol)) / 1e-4, g.Gamma, 1e-6);
        Assert.Equal((Price(s, t, r, vol + h) - Price(s, t, r, vol - h)) / (2 * h), g.Vega, 1e-6);
        Assert.Equal((Price(s, t, r + h, vol) - Price(s, t, r - h, vol)) / (2 * h), g.Rho, 1e-6);
        // Theta is the change per year of calendar time passing, i.e. −∂V/∂T.
        Assert.Equal(-(Price(s, t + h, r, vol) - Price(s, t - h, r, vol)) / (2 * h), g.Theta, 1e-6);
    }

    [Fact]
    public void Expired_option_is_worth_its_intrinsic_value()
    {
        Assert.Equal(5.0, BlackScholes.Value(OptionRight.Call, 105, 100, 0, 0.05, 0, 0.3).Price, 12);
        Assert.Equal(0.0, BlackScholes.Value(OptionRight.Put, 105, 100, 0, 0.05, 0, 0.3).Price, 12);
    }

    [Fact]
    public void Rejects_nonsense_inputs()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BlackScholes.Value(OptionRight.Call, -1, 100, 1, 0, 0, 0.2));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlackScholes.Value(OptionRight.Call, 100, 100, 1, double.NaN, 0, 0.2));
    }
}
