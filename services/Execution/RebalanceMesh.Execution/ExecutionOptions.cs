using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution;

/// <summary>Configuration section <c>Execution</c>: the venues, configured in this one place.</summary>
public sealed class ExecutionOptions
{
    public List<VenueSpec> Venues { get; set; } = [.. SimulatedVenues.Defaults];

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
