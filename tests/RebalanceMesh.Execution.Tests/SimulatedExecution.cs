using RebalanceMesh.Execution.Simulators;

namespace RebalanceMesh.Execution.Tests;

/// <summary>The execution service as local runs start it: with the simulated venues plugged in by configuration.</summary>
internal static class SimulatedExecution
{
    /// <summary>The setting that loads the simulated venues (by assembly name: the test's own dependencies resolve it).</summary>
    public static IReadOnlyDictionary<string, string?> Settings(IReadOnlyDictionary<string, string?>? more = null)
    {
        var all = new Dictionary<string, string?> { ["Plugins:0"] = typeof(VenueSimulatorsPlugin).Assembly.GetName().Name };
        foreach (var (key, value) in more ?? new Dictionary<string, string?>())
        {
            all[key] = value;
        }

        return all;
    }
}
