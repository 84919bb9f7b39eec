using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>Risk limits on targets and on the held portfolio, by hand: A σ 20 %, B σ 10 %, uncorrelated.</summary>
public class RiskLimitTests
{
    private static readonly RiskModelInputs Model = new(["A", "B"], new[,] { { 0.04, 0.0 }, { 0.0, 0.01 } });

    [Fact]
    public void Targets_are_capped_then_scaled_to_the_volatility_limit()
    {
        var targets = new Dictionary<string, double> { ["A"] = 0.6, ["B"] = 0.3 };
        var (limited, reasons) = RiskLimitRules.ApplyToTargets(targets, new RiskLimits(MaxWeight: 0.5, MaxVolatility: 0.08, MaxVar99: 0), Model);

        // A capped at 50 %: σ = √(0.5²·0.04 + 0.3²·0.01) = √0.0109 = 10.44 %, scaled by 0.08 / 0.10440 to 8 %.
        var scale = 0.08 / Math.Sqrt(0.0109);
        Assert.Equal(0.5 * scale, limited["A"], 12);
        Assert.Equal(0.3 * scale, limited["B"], 12);
        Assert.Equal(0.08, RiskLimitRules.Volatility(limited, Model), 12);
        Assert.Equal(2, reasons.Count);
        Assert.All(reasons, r => Assert.Equal(RiskLimitRules.Rule, r.Rule));
    }

    [Fact]
    public void The_VaR_limit_scales_by_the_99_percent_normal_quantile()
    {
        // σ(0.5 A) = 10 % a year → 1-day VaR 99 % = 2.3263 × 0.10 / √252 = 1.4655 % of net value; limit 1 %.
        var (limited, _) = RiskLimitRules.ApplyToTargets(new Dictionary<string, double> { ["A"] = 0.5 }, new RiskLimits(0, 0, MaxVar99: 0.01), Model);
        Assert.Equal(0.5 * 0.01 / (2.3263478740408408 * 0.10 / Math.Sqrt(252)), limited["A"], 12);
        Assert.Equal(0.01, RiskLimitRules.Var99(RiskLimitRules.Volatility(limited, Model)), 12);
    }

    [Fact]
    public void A_held_portfolio_outside_its_limits_triggers_a_rebalance()
    {
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.4, ["B"] = 0.4 }, TradeRules.Default,
            new DriftBands(0.5), new RiskLimits(0.6, 0.12, 0, Model));
        // 70 % A, 30 % B: inside a ±50 pp band, but 70 % > 60 % and σ = √(0.49·0.04 + 0.09·0.01) = 14.3 % > 12 %.
        var marked = PortfolioMarking.Mark(new PortfolioSnapshot("p", [new Holding("A", 70), new Holding("B", 30)], 0m, 1), policy,
            new Dictionary<string, decimal> { ["A"] = 100m, ["B"] = 100m });
        var evaluation = DriftEvaluator.Evaluate(marked, policy);
        Assert.True(evaluation.Breached);
        Assert.DoesNotContain(evaluation.Reasons, r => r.Rule == DriftBands.AbsoluteRule && r.Breached);
        var concentration = evaluation.Reasons.Single(r => r.Rule == RiskLimitRules.Rule && r.InstrumentId == "A");
        Assert.True(concentration.Breached);
        var volatility = evaluation.Reasons.Single(r => r.Rule == RiskLimitRules.Rule && r.InstrumentId.Length == 0);
        Assert.Equal(Math.Sqrt(0.0205), volatility.Measured, 12);
        Assert.True(volatility.Breached);
    }
}
