using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>
/// The trigger rules of a policy measured on a marked portfolio, each measurement recorded whether breached or not:
/// the total drift Σ|w − w*| / 2 (cash included), then every <see cref="ITriggerRule"/> part in the policy's order —
/// its <see cref="DriftBands"/>, its <see cref="RiskLimits"/>, and any rule added later.
/// </summary>
public static class DriftEvaluator
{
    /// <param name="describeAll">False: only breached measurements carry their message (the monitor, which shows
    /// breaches only, saves formatting every position's on every event).</param>
    public static DriftEvaluation Evaluate(MarkedPortfolio portfolio, TargetPolicy policy, bool describeAll = true)
    {
        var total = TotalDrift(portfolio, policy);
        var reasons = new List<DriftReason>();
        var input = new TriggerInput(portfolio, policy, total, describeAll);
        foreach (var part in policy.Parts)
        {
            if (part is ITriggerRule rule)
            {
                rule.Measure(input, reasons);
            }
        }

        return new DriftEvaluation(reasons, total);
    }

    /// <summary>Σ|w − w*| / 2 over the rebalanced positions and cash in every currency against the cash target.</summary>
    public static double TotalDrift(MarkedPortfolio portfolio, TargetPolicy policy)
    {
        double drift = 0;
        foreach (var position in portfolio.Positions)
        {
            if (IsRebalanced(position, policy))
            {
                drift += Math.Abs(position.Weight - policy.TargetOf(position.InstrumentId));
            }
        }

        drift += Math.Abs(portfolio.TotalCashWeight - policy.CashTarget);
        return drift / 2;
    }

    /// <summary>Whether weight rebalancing measures and trades a position: not on the no-trade list, not margined.</summary>
    public static bool IsRebalanced(MarkedPosition position, TargetPolicy policy) =>
        !position.Margined && !policy.IsNoTrade(position.InstrumentId);

    internal static string DescribeTotal(double total, double threshold, bool breached) =>
        string.Create(CultureInfo.InvariantCulture, $"total drift {total:P2} {(breached ? ">" : "<=")} threshold {threshold:P2}");

    internal static string Describe(string instrument, double weight, double target, double deviation, double limit, bool breached, string rule) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{instrument}: weight {weight:P2} vs target {target:P2}, drift {deviation:P2} {(breached ? ">" : "<=")} {rule} {limit:P2}");
}
