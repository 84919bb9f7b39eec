using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>
/// Measures every band rule of a policy and records each measurement, breached or not:
/// absolute band |w − w*| &gt; a, relative band |w − w*| &gt; r·w*, and total drift Σ|w − w*| / 2 (cash included) &gt; T;
/// and, when the policy has risk limits, concentration, volatility and VaR (<see cref="RiskLimitRules"/>).
/// </summary>
public static class DriftEvaluator
{
    public const string AbsoluteBandRule = "absolute_band";
    public const string RelativeBandRule = "relative_band";
    public const string TotalDriftRule = "total_drift";

    /// <param name="describeAll">False: only breached measurements carry their message (the monitor, which shows
    /// breaches only, saves formatting every position's on every event).</param>
    public static DriftEvaluation Evaluate(MarkedPortfolio portfolio, TargetPolicy policy, bool describeAll = true)
    {
        var reasons = new List<DriftReason>();
        double drift = 0;
        foreach (var position in portfolio.Positions.Where(p => IsRebalanced(p, policy)))
        {
            var target = policy.TargetOf(position.InstrumentId);
            var deviation = Math.Abs(position.Weight - target);
            drift += deviation;
            if (policy.AbsoluteBand > 0)
            {
                var breached = deviation > policy.AbsoluteBand;
                reasons.Add(new DriftReason(AbsoluteBandRule, position.InstrumentId, deviation, policy.AbsoluteBand, breached,
                    breached || describeAll ? Describe(position.InstrumentId, position.Weight, target, deviation, policy.AbsoluteBand, breached, "absolute band") : string.Empty));
            }

            if (policy.RelativeBand > 0 && target > 0)
            {
                var limit = policy.RelativeBand * target;
                var breached = deviation > limit;
                reasons.Add(new DriftReason(RelativeBandRule, position.InstrumentId, deviation, limit, breached,
                    breached || describeAll ? Describe(position.InstrumentId, position.Weight, target, deviation, limit, breached, string.Create(CultureInfo.InvariantCulture, $"relative band ({policy.RelativeBand:P0} of target)")) : string.Empty));
            }
        }

        drift += Math.Abs(portfolio.TotalCashWeight - policy.CashTarget); // cash in every currency against the cash target
        var total = drift / 2;
        if (policy.TotalDriftThreshold > 0)
        {
            var breached = total > policy.TotalDriftThreshold;
            reasons.Add(new DriftReason(TotalDriftRule, string.Empty, total, policy.TotalDriftThreshold, breached,
                DescribeTotal(total, policy.TotalDriftThreshold, breached)));
        }

        if (policy.Limits is { } limits)
        {
            reasons.AddRange(RiskLimitRules.Measure(portfolio, policy, limits, policy.RiskModel));
        }

        return new DriftEvaluation(reasons, total);
    }

    /// <summary>Whether weight rebalancing measures and trades a position: not on the no-trade list, not margined.</summary>
    public static bool IsRebalanced(MarkedPosition position, TargetPolicy policy) =>
        !position.Margined && !policy.IsNoTrade(position.InstrumentId);

    /// <summary>Half-width of an instrument's band: the tighter of the enabled bands; infinite when none.</summary>
    public static double BandWidth(TargetPolicy policy, double target)
    {
        var width = double.PositiveInfinity;
        if (policy.AbsoluteBand > 0)
        {
            width = policy.AbsoluteBand;
        }

        if (policy.RelativeBand > 0 && target > 0)
        {
            width = Math.Min(width, policy.RelativeBand * target);
        }

        return width;
    }

    internal static string DescribeTotal(double total, double threshold, bool breached) =>
        string.Create(CultureInfo.InvariantCulture, $"total drift {total:P2} {(breached ? ">" : "<=")} threshold {threshold:P2}");

    internal static string Describe(string instrument, double weight, double target, double deviation, double limit, bool breached, string rule) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{instrument}: weight {weight:P2} vs target {target:P2}, drift {deviation:P2} {(breached ? ">" : "<=")} {rule} {limit:P2}");
}
