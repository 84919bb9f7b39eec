using System.Globalization;
using System.Runtime.Intrinsics;
using MathNet.Numerics;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing.Tests;

public class BlackScholesBatchTests
{
    [Fact]
    public void Vector_erfc_matches_the_scalar_reference_across_all_intervals()
    {
        for (var x = -26.0; x <= 26.0; x += 0.0137)
        {
            var lanes = BlackScholesBatch.Erfc(Vector256.Create(x, -x, x / 3, x / 50));
            foreach (var (input, value) in new[] { (x, lanes[0]), (-x, lanes[1]), (x / 3, lanes[2]), (x / 50, lanes[3]) })
            {
                var expected = SpecialFunctions.Erfc(input);
                // The reference evaluates e^{−z²} directly and so carries a rounding of about z²·ε; Cody's split
                // exponent does not. Allow for the reference's error, nothing more.
                var relative = 2e-15 + (1.5e-16 * input * input);
                Assert.True(Math.Abs(value - expected) <= (relative * expected) + 1e-300, $"erfc({input:R}) = {value:R}, expected {expected:R}");
            }
        }
    }

    [Fact]
    public void Batch_matches_QuantLib_on_the_reference_grid()
    {
        var rows = File.ReadLines(Path.Combine(AppContext.BaseDirectory, "Reference", "quantlib_european.csv")).Skip(1)
            .Select(l => l.Split(',')).ToArray();
        double[] Column(int c) => rows.Select(f => double.Parse(f[c], CultureInfo.InvariantCulture)).ToArray();
        var n = rows.Length;
        var sign = rows.Select(f => f[0] == "call" ? 1.0 : -1.0).ToArray();
        var years = Column(3).Select(d => d / 365.0).ToArray();
        double[] price = new double[n], delta = new double[n], gamma = new double[n], vega = new double[n], theta = new double[n], rho = new double[n];

        BlackScholesBatch.Value(Column(1), Column(2), years, Column(4), Column(5), Column(6), sign, price, delta, gamma, vega, theta, rho);

        var expected = new[] { Column(7), Column(8), Column(9), Column(10), Column(11), Column(12) };
        var actual = new[] { price, delta, gamma, vega, theta, rho };
        for (var g = 0; g < 6; g++)
        {
            for (var i = 0; i < n; i++)
            {
                Assert.True(Math.Abs(expected[g][i] - actual[g][i]) <= 1e-10, $"row {i + 2}, output {g}: {actual[g][i]:R} vs QuantLib {expected[g][i]:R}");
            }
        }
    }

    [Fact]
    public void Degenerate_lanes_and_the_tail_use_the_scalar_formulas()
    {
        // Lane 1 has no time left, lane 2 no volatility; seven options so three fall in the scalar tail.
        double[] s = [100, 100, 100, 100, 90, 110, 100], k = [100, 90, 120, 80, 100, 100, 100], t = [0.5, 0, 1, 2, 0.1, 0.1, 3];
        double[] r = [0.01, 0.01, 0.05, 0, 0.02, 0.02, 0.03], q = [0, 0, 0, 0.01, 0, 0, 0.02], v = [0.2, 0.2, 0, 0.3, 0.25, 0.25, 0.4], w = [1, 1, -1, -1, 1, -1, 1];
        var outputs = Enumerable.Range(0, 6).Select(_ => new double[7]).ToArray();
        BlackScholesBatch.Value(s, k, t, r, q, v, w, outputs[0], outputs[1], outputs[2], outputs[3], outputs[4], outputs[5]);
        for (var i = 0; i < 7; i++)
        {
            var g = BlackScholes.Value(w[i] > 0 ? OptionRight.Call : OptionRight.Put, s[i], k[i], t[i], r[i], q[i], v[i]);
            Assert.Equal(g.Price, outputs[0][i], 1e-12);
            Assert.Equal(g.Delta, outputs[1][i], 1e-12);
            Assert.Equal(g.Theta, outputs[4][i], 1e-11);
        }
    }
}
