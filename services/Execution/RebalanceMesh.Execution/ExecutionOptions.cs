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

    /// <summary>
    /// Block orders: the longest a block collects the slices of concurrent plans after its first joins — it closes
    /// sooner once no slice has joined for <see cref="BlockQuiet"/>, so a lone plan waits little and a batch arriving
    /// over seconds fills few large blocks.
    /// </summary>
    public TimeSpan BlockWindow { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Block orders: a forming block closes once no slice has joined it for this long.</summary>
    public TimeSpan BlockQuiet { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Block orders: the most slices one block takes (it closes at once when full; the next slice starts another).</summary>
    public int MaxBlockMembers { get; set; } = 2_000;

    /// <summary>
    /// Fault injection for crash tests, off (zero) in production: how long a block waits after its venue fills and
    /// before its allocation is committed — a window to kill the service in.
    /// </summary>
    public TimeSpan BlockAllocationPause { get; set; } = TimeSpan.Zero;

    /// <summary>This replica's name in the run queue: Mesh:InstanceId when set (stable across restarts), else machine and process.</summary>
    public string ReplicaId { get; set; } = string.Empty;
}
