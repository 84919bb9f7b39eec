namespace RebalanceMesh.Execution.Core;

/// <summary>The local mesh's simulated trading venues, configured in this one place (the service's defaults).</summary>
public static class SimulatedVenues
{
    /// <summary>
    /// Three venues with different fees, depth and speed: A is fast and expensive with a deep book, C cheap and slow
    /// and its book thins out fastest; none gives a routing more than half its displayed depth. Each clears margined
    /// contracts in isolated margin accounts (maintenance margin 5 % of notional, initial 10 %; liquidation fees differ).
    /// </summary>
    public static IReadOnlyList<VenueSpec> Defaults { get; } =
    [
        new("SIM-A", TakerFeeBps: 10, MakerFeeBps: 2, Book: new BookProfile(Levels: 10, LevelStepBps: 1, SizeGrowth: 1.0), LatencyMs: 2, ParticipationCap: 0.5, Margin: new MarginTerms(0.05m, 0.010m, 0.10m)),
        new("SIM-B", TakerFeeBps: 5, MakerFeeBps: 1, Book: new BookProfile(Levels: 10, LevelStepBps: 2, SizeGrowth: 0.5), LatencyMs: 5, ParticipationCap: 0.5, Margin: new MarginTerms(0.05m, 0.0125m, 0.10m)),
        new("SIM-C", TakerFeeBps: 2, MakerFeeBps: 0, Book: new BookProfile(Levels: 5, LevelStepBps: 4, SizeGrowth: 0.25), LatencyMs: 15, ParticipationCap: 0.5, Margin: new MarginTerms(0.05m, 0.015m, 0.10m)),
    ];
}
