namespace RebalanceMesh.Execution.Simulators;

/// <summary>Health factors and margin ratios as the wire and structured logs carry them (neither has an infinity).</summary>
internal static class Ratios
{
    /// <summary>For the wire: 0 stands for infinite (no debt, nothing open).</summary>
    public static double ForWire(double value) => double.IsFinite(value) ? value : 0;

    /// <summary>A health factor or margin ratio to four places, "∞" when nothing is owed or open (JSON has no infinity).</summary>
    public static string ForLog(double value) => double.IsFinite(value) ? value.ToString("F4", System.Globalization.CultureInfo.InvariantCulture) : "∞";
}
