using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// The simulated venues' own settings, read from configuration section <c>Execution</c> (where they were before the
/// simulators became a plugin). The trading venues themselves — fees, depth, latency, margin terms — are execution's
/// <see cref="ExecutionOptions.Venues"/>: routing prices them whatever reaches them.
/// </summary>
public sealed class SimulatorOptions
{
    /// <summary>
    /// Simulated lending venues (Aave-like) and the collateral they accept: liquidation threshold, bonus and maximum
    /// loan-to-value per asset. EUR is cash collateral.
    /// </summary>
    public List<LendingVenueSpec> LendingVenues { get; set; } =
    [
        new("LEND-A",
        [
            new("DAX", 0.80m, 0.05m, 0.75m),
            new("SMI", 0.80m, 0.05m, 0.75m),
            new("CAC", 0.78m, 0.06m, 0.72m),
            new("FTSE", 0.78m, 0.06m, 0.72m),
            new("EUR", 0.93m, 0.02m, 0.90m),
        ]),
    ];
}
