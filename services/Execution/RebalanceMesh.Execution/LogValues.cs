namespace RebalanceMesh.Execution;

/// <summary>Values as structured logs carry them.</summary>
internal static class LogValues
{
    /// <summary>A health factor or margin ratio to four places, "∞" when nothing is owed or open (JSON has no infinity).</summary>
    public static string Ratio(double value) => double.IsFinite(value) ? value.ToString("F4", System.Globalization.CultureInfo.InvariantCulture) : "∞";
}
