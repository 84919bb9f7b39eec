using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution;

/// <summary>Configuration section <c>Execution</c>: the venues, configured in this one place.</summary>
public sealed class ExecutionOptions
{
    public List<VenueSpec> Venues { get; set; } =
    [
        // Three venues with different fees, depth and speed: A is fast and expensive, C cheap and slow and its book
        // thins out fastest.
        new("SIM-A", TakerFeeBps: 10, MakerFeeBps: 2, Book: new BookProfile(Levels: 10, LevelStepBps: 1, SizeGrowth: 1.0), LatencyMs: 2, ParticipationCap: 0.5),
        new("SIM-B", TakerFeeBps: 5, MakerFeeBps: 1, Book: new BookProfile(Levels: 10, LevelStepBps: 2, SizeGrowth: 0.5), LatencyMs: 5, ParticipationCap: 0.5),
        new("SIM-C", TakerFeeBps: 2, MakerFeeBps: 0, Book: new BookProfile(Levels: 5, LevelStepBps: 4, SizeGrowth: 0.25), LatencyMs: 15, ParticipationCap: 0.5),
    ];

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
