namespace RebalanceMesh.Pricing.Core;

/// <summary>Time in years as every pricing model here counts it: Actual/365 Fixed.</summary>
public static class YearFraction
{
    /// <summary>Years from <paramref name="from"/> to <paramref name="to"/>; negative when <paramref name="to"/> is earlier.</summary>
    public static double Between(DateTimeOffset from, DateTimeOffset to) => (to - from).TotalDays / 365.0;
}
