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
        Assert.Equal(ModelParameter.Covariance, Assert.Throws<InfeasibleModelException>(() => TargetModels.Compute(TargetModel.RiskParity, new double[,] { { 0.0 } }, 1)).Parameter);
    }

    internal static double[,] AnnualCovariance()
    {
        var daily = Covariance();
        var annual = new double[4, 4];
        for (var i = 0; i < 4; i++)
        {
            for (var j = 0; j < 4; j++)
            {
                annual[i, j] = daily[i, j] * 252;
            }
        }

        return annual;
    }

    private static readonly double[] Mu = [0.08, 0.05, 0.07, 0.04];

    public static TheoryData<string, double[]> ReturnModels() => new()
    {
        // cvxopt on the same problems: tests/reference/target_models_reference.py.
        { "MaximumSharpe", [0.6431343372331573, 1.8330169396123562e-13, 0.356865662766554, 1.0538735050026287e-13] },
        { "MeanVariance", [0.1429894798638636, 0.1378166744386847, 0.2732876856494215, 0.4459061600480302] },
        { "EfficientReturn", [0.3303943703403636, 0.029908034240557005, 0.3828381614659961, 0.25685943395308314] },
        { "EfficientRisk", [0.19056645901670013, 0.11042060081984498, 0.30109979705759016, 0.39791314310586473] },
    };

    [Theory]
    [MemberData(nameof(ReturnModels))]
    public void Return_aware_models_match_cvxopt(string model, double[] cvxopt)
    {
        var inputs = new ReturnModelInputs(Mu, RiskFreeRate: 0.01, RiskAversion: 4, TargetReturn: 0.065, TargetVolatility: 0.18);
        var weights = TargetModels.Compute(Enum.Parse<TargetModel>(model), AnnualCovariance(), 0.9, inputs);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(0.9 * cvxopt[i], weights[i], 1e-6);
        }
    }

    [Theory]
    [MemberData(nameof(ReturnModels))]
    public void Return_aware_models_give_the_same_weights_at_daily_scale(string model, double[] cvxopt)
    {
        // The same problems in daily units (asset volatilities 0.6–1.1 % a day): covariance and returns ÷ 252, the
        // volatility target ÷ √252, risk aversion unchanged (γ/2·wᵀΣw − μᵀw only scales). The weights must not change;
        // before the solver's inputs were normalised, maximum Sharpe "did not converge" at this scale.
        var inputs = new ReturnModelInputs(Mu.Select(m => m / 252).ToArray(), RiskFreeRate: 0.01 / 252, RiskAversion: 4, TargetReturn: 0.065 / 252, TargetVolatility: 0.18 / Math.Sqrt(252));
        var weights = TargetModels.Compute(Enum.Parse<TargetModel>(model), Covariance(), 0.9, inputs);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(0.9 * cvxopt[i], weights[i], 1e-6);
        }
    }

    [Fact]
    public void Risk_based_models_give_the_same_weights_at_any_scale()
    {
        foreach (var model in new[] { TargetModel.MinimumVariance, TargetModel.RiskParity, TargetModel.InverseVolatility })
        {
            var annual = TargetModels.Compute(model, AnnualCovariance(), 1);
            var daily = TargetModels.Compute(model, Covariance(), 1);
            var tiny = TargetModels.Compute(model, Scaled(Covariance(), 1e-6), 1);
            for (var i = 0; i < 4; i++)
            {
                Assert.Equal(annual[i], daily[i], 1e-7);
                Assert.Equal(annual[i], tiny[i], 1e-7);
            }
        }
    }

    private static double[,] Scaled(double[,] covariance, double factor)
    {
        var scaled = (double[,])covariance.Clone();
        for (var i = 0; i < scaled.GetLength(0); i++)
        {
            for (var j = 0; j < scaled.GetLength(1); j++)
            {
                scaled[i, j] *= factor;
            }
        }

        return scaled;
    }

    [Fact]
    public void Frontier_targets_hold_and_unreachable_ones_are_refused()
    {
        var covariance = AnnualCovariance();
        var atReturn = TargetModels.Compute(TargetModel.EfficientReturn, covariance, 1, new ReturnModelInputs(Mu, TargetReturn: 0.065));
        Assert.Equal(0.065, atReturn.Select((w, i) => w * Mu[i]).Sum(), 9);
        var atRisk = TargetModels.Compute(TargetModel.EfficientRisk, covariance, 1, new ReturnModelInputs(Mu, TargetVolatility: 0.18));
        var variance = Enumerable.Range(0, 4).Sum(i => Enumerable.Range(0, 4).Sum(j => atRisk[i] * covariance[i, j] * atRisk[j]));
        Assert.Equal(0.18, Math.Sqrt(variance), 8);

        // Each refusal names the parameter at fault (SetPolicy turns it into that field's violation).
        ModelParameter Refused(Func<double[]> compute) => Assert.Throws<InfeasibleModelException>(compute).Parameter;
        Assert.Equal(ModelParameter.TargetReturn, Refused(() => TargetModels.Compute(TargetModel.EfficientReturn, covariance, 1, new ReturnModelInputs(Mu, TargetReturn: 0.09))));
        Assert.Equal(ModelParameter.TargetVolatility, Refused(() => TargetModels.Compute(TargetModel.EfficientRisk, covariance, 1, new ReturnModelInputs(Mu, TargetVolatility: 0.10))));
        Assert.Equal(ModelParameter.RiskFreeRate, Refused(() => TargetModels.Compute(TargetModel.MaximumSharpe, covariance, 1, new ReturnModelInputs(Mu, RiskFreeRate: 0.1))));
        Assert.Equal(ModelParameter.ExpectedReturns, Refused(() => TargetModels.Compute(TargetModel.MeanVariance, covariance, 1)));

        // A generous volatility budget buys the highest-return asset outright.
        Assert.Equal([1.0, 0, 0, 0], TargetModels.Compute(TargetModel.EfficientRisk, covariance, 1, new ReturnModelInputs(Mu, TargetVolatility: 0.5)));
    }
}
