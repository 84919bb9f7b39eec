using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>Which accounts a batch's filter takes.</summary>
public static class BatchSelection
{
    /// <summary>The excess cash weight that counts as new cash when a policy has no absolute band.</summary>
    public const double DefaultNewCashBand = 0.01;

    /// <summary>
    /// Whether an account holds new cash: its cash weight (cash / net value) above its target cash weight
    /// (1 − <paramref name="investedTarget"/>, the sum of its target weights) by more than <paramref name="band"/>
    /// (its absolute band; <see cref="DefaultNewCashBand"/> when it has none). Null when it does; otherwise why not.
    /// </summary>
    public static string? NewCashShortfall(decimal cash, decimal netValue, double investedTarget, double band)
    {
        if (netValue <= 0)
        {
            return "its net value is not positive";
        }

        var threshold = band > 0 ? band : DefaultNewCashBand;
        var weight = (double)(cash / netValue);
        var target = Math.Max(0, 1 - investedTarget);
        return weight - target > threshold
            ? null
            : string.Create(CultureInfo.InvariantCulture, $"no new cash: cash is {weight:P2} of net value, within {threshold:P2} of its target {target:P2}");
    }
}
