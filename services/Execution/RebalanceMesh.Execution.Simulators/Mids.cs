using RebalanceMesh.MarketState;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>The consolidated mids of market state the venue desks value accounts at.</summary>
internal static class Mids
{
    /// <summary>
    /// The mids of <paramref name="instruments"/> (positive ones only) and those without one; <paramref name="atOne"/>,
    /// when given, is priced at 1 (an account's base currency).
    /// </summary>
    public static async Task<(Func<string, decimal> Of, string[] Missing)> OfAsync(MarketStateStore market, IEnumerable<string> instruments, string? atOne = null)
    {
        var wanted = instruments.Where(i => i != atOne).Distinct(StringComparer.Ordinal).ToArray();
        var mids = (await market.GetPricesAsync(wanted)).Where(p => p.Mid.ToDecimal() > 0).ToDictionary(p => p.InstrumentId, p => p.Mid.ToDecimal(), StringComparer.Ordinal);
        return (instrument => instrument == atOne ? 1m : mids[instrument], wanted.Where(i => !mids.ContainsKey(i)).ToArray());
    }
}
