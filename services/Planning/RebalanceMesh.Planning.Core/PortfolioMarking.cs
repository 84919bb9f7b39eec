using RebalanceMesh.Domain;

namespace RebalanceMesh.Planning.Core;

/// <summary>
/// Marks a portfolio to market over the union of held and targeted instruments (each position sums its accounts), with
/// cash in other currencies converted at the price of their currency code.
/// </summary>
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
        var missing = instruments.Concat(portfolio.ForeignCash.Select(c => c.Currency)).Where(i => !prices.ContainsKey(i)).ToArray();
        if (missing.Length > 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"No market price for {string.Join(", ", missing)}.");
        }

        var holdings = portfolio.Holdings.ToLookup(h => h.InstrumentId, StringComparer.Ordinal);
        var values = instruments.Select(i => holdings[i].Sum(h => Value(h, prices[i]))).ToArray();
        var foreign = portfolio.ForeignCash.Select(c => (c.Currency, c.Amount, Rate: prices[c.Currency].UnitPrice)).ToArray();
        var net = values.Sum() + portfolio.Cash + portfolio.MarginCollateralTotal + foreign.Sum(c => c.Amount * c.Rate);
        var positions = instruments.Select((id, k) =>
        {
            var quantity = holdings[id].Sum(h => h.Quantity);
            return new MarkedPosition(
                id,
                quantity,
                prices[id].UnitPrice,
                values[k],
                net != 0 ? (double)(values[k] / net) : 0,
                prices[id].Margined,
                (double)quantity * prices[id].DeltaExposure,
                prices[id].Underlying,
                holdings[id].Select(h => new AccountQuantity(h.Venue, h.Quantity)).OrderByDescending(a => Math.Abs(a.Quantity)).ThenBy(a => a.Venue, StringComparer.Ordinal).ToArray());
        }).ToArray();
        var cash = foreign.Select(c => new MarkedCash(c.Currency, c.Amount, c.Rate, c.Amount * c.Rate, net != 0 ? (double)(c.Amount * c.Rate / net) : 0)).ToArray();
        return new MarkedPortfolio(positions, portfolio.Cash, net, cash, portfolio.MarginCollateralTotal);
    }

    private static decimal Value(Holding holding, InstrumentMark mark)
    {
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
