using System.Text.Json;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>The cost-aware optimiser against cvxopt (cases and values from tests/reference/optimizer_reference.py).</summary>
public class RebalanceOptimizerTests
{
    private const string CasesFile = "optimizer_cases.json";

    public static TheoryData<string> Cases() => ReferenceCases.Names(CasesFile);

    private static JsonElement Case(string name) => ReferenceCases.Case(CasesFile, name);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Objective_matches_cvxopt_to_1e6_relative(string name)
    {
        var c = Case(name);
        var problem = OptimizerCase.Parse(c);
        var result = RebalanceOptimizer.Optimize(problem);
        var expected = c.GetProperty("expected_objective").GetDouble();
        var trades = c.GetProperty("trades").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        Assert.True(result.Converged, $"not converged after {result.Iterations} iterations");
        Assert.True(Math.Abs(result.Objective - expected) <= 1e-6 * Math.Abs(expected),
            $"objective {result.Objective:R} vs cvxopt {expected:R}: relative {Math.Abs(result.Objective - expected) / Math.Abs(expected):E2} after {result.Iterations} iterations");
        var worst = trades.Select((t, i) => Math.Abs(t - result.Trades[i])).Max();
        Assert.True(worst < 1e-5, $"trades differ from cvxopt's by {worst:E2}");
    }

    private static OptimizerProblem OneAsset(double weight, double target, double linear, double impact = 0, double cash = 1, double? turnover = null) =>
        new([new OptimizerAsset("A", weight, target, 1, linear, impact, 0, 1)], new[,] { { 0.04 } }, cash, TurnoverCap: turnover);

    [Fact]
    public void One_asset_trades_until_the_marginal_risk_reduction_equals_the_fee()
    {
        // 2γσ²(w₀ + t − w*) + k = 0 with γ = 1, σ² = 0.04, w₀ = 0.2, w* = 0.5, k = 0.004 → t = 0.3 − 0.004/0.08 = 0.25.
        var result = RebalanceOptimizer.Optimize(OneAsset(0.2, 0.5, 0.004));
        Assert.Equal(0.25, result.Trades[0], 8);
        Assert.Equal(0.004 * 0.25, result.LinearCost, 10);
        Assert.Equal(0.04 * 0.05 * 0.05, result.RiskTerm, 10);
    }

    [Fact]
    public void Inside_the_no_trade_region_nothing_trades()
    {
        // The gradient at t = 0 is 2·0.04·(0.49 − 0.5) = −0.0008, smaller in size than the fee 0.004: no trade pays.
        var result = RebalanceOptimizer.Optimize(OneAsset(0.49, 0.5, 0.004));
        Assert.Equal(0, result.Trades[0], 9);
    }

    [Fact]
    public void Impact_solves_the_three_halves_power_condition()
    {
        // 0.08(t − 0.3) + 1.5c√t = 0 with c = 0.01: √t = (−0.015 + √(0.015² + 4·0.08·0.024))/(2·0.08).
        var result = RebalanceOptimizer.Optimize(OneAsset(0.2, 0.5, 0, impact: 0.01));
        var root = (-0.015 + Math.Sqrt((0.015 * 0.015) + (4 * 0.08 * 0.024))) / (2 * 0.08);
        Assert.Equal(root * root, result.Trades[0], 7);
        Assert.Equal(0.01 * Math.Pow(root * root, 1.5), result.ImpactCost, 8);
    }

    [Fact]
    public void Cash_and_turnover_caps_bind()
    {
        Assert.Equal(0.1, RebalanceOptimizer.Optimize(OneAsset(0.2, 0.5, 0.004, cash: 0.1)).Trades[0], 7);
        Assert.Equal(0.05, RebalanceOptimizer.Optimize(OneAsset(0.2, 0.5, 0.004, turnover: 0.05)).Trades[0], 7);
    }

    [Fact]
    public void A_warm_start_from_the_previous_solution_converges_faster()
    {
        var problem = OptimizerCase.Parse(Case("te-turnover-cap"));
        var cold = RebalanceOptimizer.Optimize(problem);
        var warm = RebalanceOptimizer.Optimize(problem, warm: cold.Solution);
        Assert.True(warm.Iterations < cold.Iterations, $"warm {warm.Iterations} vs cold {cold.Iterations}");
        Assert.Equal(cold.Objective, warm.Objective, 9);
    }

    [Fact]
    public void Bad_problems_are_refused()
    {
        Assert.Throws<ArgumentException>(() => RebalanceOptimizer.Optimize(OneAsset(0.2, 0.5, -1)));
        Assert.Throws<ArgumentException>(() => RebalanceOptimizer.Optimize(new OptimizerProblem([], new double[0, 0], 1)));
    }
}
