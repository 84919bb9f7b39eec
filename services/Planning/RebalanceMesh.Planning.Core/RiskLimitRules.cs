using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>A policy's risk limits; zero disables one. Volatility is annualised; VaR is 1-day parametric at 99 %.</summary>
/// <param name="MaxWeight">Largest weight of any one rebalanced instrument.</param>
/// <param name="MaxVolatility">Largest annualised volatility of the portfolio (a fraction of net value).</param>
/// <param name="MaxVar99">Largest 1-day 99 % parametric VaR as a fraction of net value.</param>
/// <param name="Model">The covariance the limits are measured with, set when the policy is resolved.</param>
public sealed record RiskLimits(double MaxWeight, double MaxVolatility, double MaxVar99, RiskModelInputs? Model = null) : ITriggerRule
{
    public void Measure(in TriggerInput input, List<DriftReason> reasons) =>
        reasons.AddRange(RiskLimitRules.Measure(input.Marked, input.Policy, this));
}

/// <summary>Covariance over a universe, as resolved with the policy (annualised).</summary>
public sealed record RiskModelInputs(IReadOnlyList<string> Instruments, double[,] AnnualCovariance);

/// <summary>
/// Risk limits on targets and on the portfolio. Targets are brought inside the limits before anything trades toward
/// them: each weight is capped at the maximum (the excess stays in cash), then the whole invested share is scaled
/// down until volatility and VaR are within their limits (both are proportional to the invested share). The portfolio
/// as held is measured against the same limits, and a breach triggers a rebalance like a band does.
/// </summary>
public static class RiskLimitRules
{
    public const string Rule = "risk_limit";

    /// <summary>z of the 99 % one-sided normal quantile.</summary>
    public const double Z99 = 2.3263478740408408;

    public static (IReadOnlyDictionary<string, double> Targets, IReadOnlyList<DriftReason> Reasons) ApplyToTargets(
        IReadOnlyDictionary<string, double> targets, RiskLimits limits, RiskModelInputs model)
    {
        var reasons = new List<DriftReason>();
        var adjusted = targets.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        if (limits.MaxWeight > 0)
        {
            foreach (var (id, weight) in targets.Where(kv => kv.Value > limits.MaxWeight))
            {
                adjusted[id] = limits.MaxWeight;
                reasons.Add(new DriftReason(Rule, id, weight, limits.MaxWeight, false,
                    Invariant($"{id}: target {weight:P2} capped at the concentration limit {limits.MaxWeight:P2}; the rest stays in cash")));
            }
        }

        var volatility = Volatility(adjusted, model);
        var scale = 1.0;
        if (limits.MaxVolatility > 0 && volatility > limits.MaxVolatility)
        {
            scale = Math.Min(scale, limits.MaxVolatility / volatility);
        }

        var var99 = Var99(volatility);
        if (limits.MaxVar99 > 0 && var99 > limits.MaxVar99)
        {
            scale = Math.Min(scale, limits.MaxVar99 / var99);
        }

        if (scale < 1)
        {
            foreach (var id in adjusted.Keys.ToArray())
            {
                adjusted[id] *= scale;
            }

            reasons.Add(new DriftReason(Rule, string.Empty, volatility, limits.MaxVolatility, false,
                Invariant($"targets de-risked to {scale:P2} of their invested share: volatility {volatility:P2} → {volatility * scale:P2}, 1-day VaR 99 % {var99:P2} → {var99 * scale:P2} of net value")));
        }

        return (adjusted, reasons);
    }

    /// <summary>The held portfolio against the limits: concentration over every rebalanced position, volatility and VaR over the model's universe.</summary>
    public static IReadOnlyList<DriftReason> Measure(MarkedPortfolio marked, TargetPolicy policy, RiskLimits limits)
    {
        var model = limits.Model;
        var reasons = new List<DriftReason>();
        if (limits.MaxWeight > 0)
        {
            foreach (var position in marked.Positions.Where(p => DriftEvaluator.IsRebalanced(p, policy)))
            {
                var breached = position.Weight > limits.MaxWeight;
                if (breached || position.Weight > 0.9 * limits.MaxWeight)
                {
                    reasons.Add(new DriftReason(Rule, position.InstrumentId, position.Weight, limits.MaxWeight, breached,
                        Invariant($"{position.InstrumentId}: weight {position.Weight:P2} {(breached ? ">" : "<=")} concentration limit {limits.MaxWeight:P2}")));
                }
            }
        }

        if (model is not null && (limits.MaxVolatility > 0 || limits.MaxVar99 > 0))
        {
            var weights = marked.Positions.ToDictionary(p => p.InstrumentId, p => p.Weight, StringComparer.Ordinal);
            var volatility = Volatility(weights, model);
            if (limits.MaxVolatility > 0)
            {
                var breached = volatility > limits.MaxVolatility;
                reasons.Add(new DriftReason(Rule, string.Empty, volatility, limits.MaxVolatility, breached,
                    Invariant($"volatility {volatility:P2} {(breached ? ">" : "<=")} limit {limits.MaxVolatility:P2}")));
            }

            if (limits.MaxVar99 > 0)
            {
                var var99 = Var99(volatility);
                var breached = var99 > limits.MaxVar99;
                reasons.Add(new DriftReason(Rule, string.Empty, var99, limits.MaxVar99, breached,
                    Invariant($"1-day VaR 99 % {var99:P2} {(breached ? ">" : "<=")} limit {limits.MaxVar99:P2} of net value")));
            }
        }

        return reasons;
    }

    /// <summary>√(wᵀΣw) over the model's universe (weights of other instruments ignored).</summary>
    public static double Volatility(IReadOnlyDictionary<string, double> weights, RiskModelInputs model) =>
        Math.Sqrt(Math.Max(TargetModels.Quadratic(model.AnnualCovariance, model.Instruments.Select(id => weights.GetValueOrDefault(id)).ToArray()), 0));

    /// <summary>1-day 99 % parametric VaR (fraction of net value) of an annualised volatility.</summary>
    public static double Var99(double annualVolatility) => Z99 * annualVolatility / Math.Sqrt(252);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
