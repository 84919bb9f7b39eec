using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution;

/// <summary>Configuration section <c>Execution</c>: the venues, configured in this one place.</summary>
public sealed class ExecutionOptions
{
    public List<VenueSpec> Venues { get; set; } =
    [
        new("SIM-A", TakerFeeBps: 10, MakerFeeBps: 2),
        new("SIM-B", TakerFeeBps: 5, MakerFeeBps: 1),
        new("SIM-C", TakerFeeBps: 2, MakerFeeBps: 0),
    ];
}
