using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing.Tests;

public class ImpliedVolatilityTests
{
    public static TheoryData<OptionRight, double, double, double> Grid()
    {
        var data = new TheoryData<OptionRight, double, double, double>();
        foreach (var right in new[] { OptionRight.Call, OptionRight.Put })
        {
            foreach (var strike in new[] { 50.0, 80.0, 100.0, 125.0, 200.0 })
            {
                foreach (var vol in new[] { 0.05, 0.2, 0.8, 2.0 })
                {
                    foreach (var days in new[] { 7.0, 30.0, 365.0, 3650.0 })
                    {
                        data.Add(right, strike, vol, days);
                    }
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Grid))]
    public void Out_of_the_money_prices_round_trip_to_1e12(OptionRight right, double strike, double vol, double days)
    {
        const double spot = 100, rate = 0.03, carry = 0.01;
        var years = days / 365;
        var otm = spot * Math.Exp(-carry * years) >= strike * Math.Exp(-rate * years) ? OptionRight.Put : OptionRight.Call;
        var price = BlackScholes.Value(otm, spot, strike, years, rate, carry, vol).Price;
        if (price < 1e-300)
        {
            return; // the price underflowed: there is nothing to invert (covered by the NoTimeValue test)
        }

        Assert.Equal(vol, ImpliedVolatility.Solve(otm, price, spot, strike, years, rate, carry), 1e-12);
        _ = right;
    }

    [Theory]
    [MemberData(nameof(Grid))]
    public void In_the_money_prices_round_trip_to_the_precision_their_time_value_allows(OptionRight right, double strike, double vol, double days)
    {
        const double spot = 100, rate = 0.03, carry = 0.01;
        var years = days / 365;
        var g = BlackScholes.Value(right, spot, strike, years, rate, carry, vol);
        var intrinsic = Math.Max((right == OptionRight.Call ? 1 : -1) * ((spot * Math.Exp(-carry * years)) - (strike * Math.Exp(-rate * years))), 0);
        var timeValue = g.Price - intrinsic;
        var scale = Math.Max(g.Price, Math.Max(spot * Math.Exp(-carry * years), strike * Math.Exp(-rate * years)));
        if (g.Price < 1e-300)
        {
            return; // an out-of-the-money price that underflowed: nothing to invert
        }

        if (timeValue < 4 * double.Epsilon * scale)
        {
            // The time value is below the price's last digits: the solver must refuse rather than guess.
            var ex = Assert.Throws<ImpliedVolatilityException>(() => ImpliedVolatility.Solve(right, g.Price, spot, strike, years, rate, carry));
            Assert.Equal(ImpliedVolatilityFailure.NoTimeValue, ex.Failure);
            return;
        }

        if (timeValue < 16 * double.Epsilon * scale)
        {
            return; // at the edge of what double precision holds: refusing and answering are both correct
        }

        // Best attainable: a few ulps of the price divided by vega; at least 1e-12.
        var attainable = Math.Max(1e-12, 1e-15 * scale / g.Vega);
        Assert.Equal(vol, ImpliedVolatility.Solve(right, g.Price, spot, strike, years, rate, carry), attainable);
    }

    [Fact]
    public void Round_trips_to_1e12_at_and_near_the_money()
    {
        foreach (var vol in new[] { 0.1, 0.3, 1.0, 3.0 })
        {
            foreach (var strike in new[] { 90.0, 100.0, 110.0 })
            {
                var price = BlackScholes.Value(OptionRight.Call, 100, strike, 0.5, 0.02, 0.0, vol).Price;
                Assert.Equal(vol, ImpliedVolatility.Solve(OptionRight.Call, price, 100, strike, 0.5, 0.02, 0.0), 1e-12);
            }
        }
    }

    [Fact]
    public void Prices_outside_the_no_arbitrage_bounds_are_refused_with_a_reason()
    {
        // Call on S=100, K=80, T=1, r=q=0: intrinsic 20, upper bound 100.
        var below = Assert.Throws<ImpliedVolatilityException>(() => ImpliedVolatility.Solve(OptionRight.Call, 19.5, 100, 80, 1, 0, 0));
        Assert.Equal(ImpliedVolatilityFailure.BelowIntrinsic, below.Failure);
        var above = Assert.Throws<ImpliedVolatilityException>(() => ImpliedVolatility.Solve(OptionRight.Call, 100, 100, 80, 1, 0, 0));
        Assert.Equal(ImpliedVolatilityFailure.AboveUpperBound, above.Failure);
        var putAbove = Assert.Throws<ImpliedVolatilityException>(() => ImpliedVolatility.Solve(OptionRight.Put, 81, 100, 80, 1, 0, 0));
        Assert.Equal(ImpliedVolatilityFailure.AboveUpperBound, putAbove.Failure);
        var flat = Assert.Throws<ImpliedVolatilityException>(() => ImpliedVolatility.Solve(OptionRight.Call, 20, 100, 80, 1, 0, 0));
        Assert.Equal(ImpliedVolatilityFailure.NoTimeValue, flat.Failure);
    }
}
