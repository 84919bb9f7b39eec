using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Names shared by every host's telemetry. Each service and building block creates its own
/// ActivitySource and Meter under the <c>RebalanceMesh.</c> prefix; the defaults subscribe to the prefix.
/// </summary>
public static class MeshTelemetry
{
    /// <summary>Prefix of every ActivitySource and Meter of the mesh.</summary>
    public const string Prefix = "RebalanceMesh";

    /// <summary>The W3C trace id of the current activity, or empty.</summary>
    public static string CurrentTraceId => Activity.Current?.TraceId.ToHexString() ?? string.Empty;
}
