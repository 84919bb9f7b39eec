using System.Globalization;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.Risk.Core;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

public class TargetModelTests
{
    private static double[,] Covariance()
    {
        var lines = File.ReadAllLines(Path.Combine(RepoPaths.Root, "data", "eustockmarkets.csv")).Skip(1).TakeLast(251).ToArray();
        var rows = lines.Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        string[] ids = ["DAX", "SMI", "CAC", "FTSE"];
        var closes = ids.Select((_, j) => (IReadOnlyList<(int, double)>)rows.Select((r, d) => (d, r[j])).ToArray()).ToArray();
        return CovarianceEstimator.Sample(ReturnMatrix.FromCloses(ids, closes, 250).Values).ToArray();
    }

    [Fact]
    public void Risk_parity_matches_scipy_and_equalises_risk_contributions()
    {
        var covariance = Covariance();
        var weights = TargetModels.Compute(TargetModel.RiskParity, covariance, 1.0);
        // scipy.optimize (L-BFGS-B) on the same convex problem: tests/reference/risk_reference.py.
        double[] scipy = [0.20869961852057867, 0.2568205183493839, 0.230004320821675, 0.3044755423083625];
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(scipy[i], weights[i], 1e-7);
        }

        Assert.All(TargetModels.RiskContributions(covariance, weights), rc => Assert.Equal(0.25, rc, 12));
        Assert.Equal(1.0, weights.Sum(), 14);
    }

    [Fact]
    public void Equal_weight_and_inverse_volatility_by_hand()
    {
        double[,] covariance = { { 0.04, 0.0 }, { 0.0, 0.01 } }; // σ = 20 %, 10 %
        Assert.Equal([0.48, 0.48], TargetModels.Compute(TargetModel.EqualWeight, covariance, 0.96));
        var inverse = TargetModels.Compute(TargetModel.InverseVolatility, covariance, 0.9);
        Assert.Equal(0.3, inverse[0], 14);   // 1/0.2 : 1/0.1 = 1 : 2 of 0.9
        Assert.Equal(0.6, inverse[1], 14);
        // Uncorrelated assets: risk parity is inverse volatility.
        var parity = TargetModels.Compute(TargetModel.RiskParity, covariance, 0.9);
        Assert.Equal(0.3, parity[0], 12);
        Assert.Equal(0.6, parity[1], 12);
    }

    [Fact]
    public void Minimum_variance_matches_cvxopt()
    {
        // cvxopt's long-only minimum variance on the same covariance (tests/reference/qp_reference.py, case 1).
        var weights = TargetModels.Compute(TargetModel.MinimumVariance, Covariance(), 1.0);
        double[] cvxopt = [6.867735006877014e-12, 0.2347034786382691, 1.2791285406827681e-10, 0.7652965212269504];
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(cvxopt[i], weights[i], 1e-7);
        }
    }

    [Fact]
    public void An_asset_without_variance_cannot_be_sized_by_risk()
    {
        Assert.Throws<ArgumentException>(() => TargetModels.Compute(TargetModel.RiskParity, new double[,] { { 0.0 } }, 1));
    }
}
