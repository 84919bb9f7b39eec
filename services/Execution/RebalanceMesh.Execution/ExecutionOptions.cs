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

    /// <summary>Plans one replica runs at once; beyond it plans wait in the run queue, for this replica or another.</summary>
    public int MaxConcurrentPlans { get; set; } = 256;

    /// <summary>How long a replica holds a plan without renewing: the plans of a replica that died go to another after this.</summary>
    public TimeSpan PlanLease { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often a replica renews its leases and looks in the run queue for plans free to take.</summary>
    public TimeSpan RunScanInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Runs of a plan that may fail with an error (not a venue's refusal) before the plan ends FAILED.</summary>
    public int MaxPlanAttempts { get; set; } = 5;

    /// <summary>This replica's name in the run queue: Mesh:InstanceId when set (stable across restarts), else machine and process.</summary>
    public string ReplicaId { get; set; } = string.Empty;
}
