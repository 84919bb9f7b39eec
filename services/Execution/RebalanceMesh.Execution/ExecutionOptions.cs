using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution;

/// <summary>Configuration section <c>Execution</c>: the venues, configured in this one place.</summary>
public sealed class ExecutionOptions
{
    public List<VenueSpec> Venues { get; set; } = [.. SimulatedVenues.Defaults];

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
