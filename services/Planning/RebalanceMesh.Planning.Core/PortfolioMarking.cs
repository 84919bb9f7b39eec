using RebalanceMesh.Domain;

namespace RebalanceMesh.Planning.Core;

/// <summary>Marks a portfolio to market over the union of held and targeted instruments.</summary>
public static class PortfolioMarking
{
    /// <summary>Marks with spot prices only (every instrument worth its price).</summary>
    public static MarkedPortfolio Mark(PortfolioSnapshot portfolio, TargetPolicy? policy, IReadOnlyDictionary<string, decimal> prices) =>
        Mark(portfolio, policy, prices.ToDictionary(kv => kv.Key, kv => InstrumentMark.Spot(kv.Value), StringComparer.Ordinal));

    public static MarkedPortfolio Mark(PortfolioSnapshot portfolio, TargetPolicy? policy, IReadOnlyDictionary<string, InstrumentMark> prices)
    {
        var instruments = portfolio.Holdings.Select(h => h.InstrumentId)
            .Concat(policy?.Targets.Keys ?? [])
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal)
            .ToArray();
        var missing = instruments.Where(i => !prices.ContainsKey(i)).ToArray();
        if (missing.Length > 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"No market price for {string.Join(", ", missing)}.");
        }

        var holdings = portfolio.Holdings.ToDictionary(h => h.InstrumentId, StringComparer.Ordinal);
        var values = instruments.Select(i => Value(holdings.GetValueOrDefault(i), prices[i])).ToArray();
        var net = values.Sum() + portfolio.Cash;
        var positions = instruments.Select((id, k) => new MarkedPosition(
            id,
            holdings.GetValueOrDefault(id)?.Quantity ?? 0m,
            prices[id].UnitPrice,
            values[k],
            net != 0 ? (double)(values[k] / net) : 0,
            prices[id].Margined,
            (double)(holdings.GetValueOrDefault(id)?.Quantity ?? 0m) * prices[id].DeltaExposure,
            prices[id].Underlying)).ToArray();
        return new MarkedPortfolio(positions, portfolio.Cash, net);
    }

    private static decimal Value(Holding? holding, InstrumentMark mark)
    {
        if (holding is null)
        {
            return 0m;
        }

        if (!mark.Margined)
        {
            return holding.Quantity * mark.UnitPrice;
        }

        if (holding.EntryPrice is not { } entry)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Position {holding.InstrumentId} is a margined contract and needs its entry price.");
        }

        return holding.Quantity * (mark.UnitPrice - (entry * mark.Multiplier));
    }
}
