namespace RebalanceMesh.Contracts.Common.V1;

/// <summary>What a leg kind means, for every reader of the contracts (planning, the CLI's reports).</summary>
public static class LegKindExtensions
{
    /// <summary>Whether a plan leg is a trade on a venue (a plan stored before leg kinds has its trades unspecified).</summary>
    public static bool IsTrade(this LegKind kind) => kind is LegKind.Unspecified or LegKind.Trade;
}
