using RebalanceMesh.Domain;

namespace RebalanceMesh.Planning.Core;

/// <summary>Marks a portfolio to market over the union of held and targeted instruments.</summary>
public static class PortfolioMarking
{
    public static MarkedPortfolio Mark(PortfolioSnapshot portfolio, TargetPolicy? policy, IReadOnlyDictionary<string, decimal> prices)
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

        var quantities = portfolio.Holdings.ToDictionary(h => h.InstrumentId, h => h.Quantity, StringComparer.Ordinal);
        var values = instruments.Select(i => quantities.GetValueOrDefault(i) * prices[i]).ToArray();
        var net = values.Sum() + portfolio.Cash;
        var positions = instruments.Select((id, k) => new MarkedPosition(
            id,
            quantities.GetValueOrDefault(id),
            prices[id],
            values[k],
            net != 0 ? (double)(values[k] / net) : 0)).ToArray();
        return new MarkedPortfolio(positions, portfolio.Cash, net);
    }
}
