namespace RebalanceMesh.Planning.Core;

/// <summary>Applies fills to positions and cash.</summary>
public static class PortfolioLedger
{
    /// <summary>
    /// A buy adds quantity and pays notional plus fee; a sell removes quantity and receives notional less fee.
    /// Positions that reach zero are removed.
    /// </summary>
    public static PortfolioSnapshot ApplyFill(PortfolioSnapshot portfolio, string instrument, TradeSide side, decimal quantity, decimal price, decimal fee)
    {
        if (quantity <= 0 || price <= 0 || fee < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(quantity), "A fill has a positive quantity and price and a non-negative fee.");
        }

        var signed = side == TradeSide.Buy ? quantity : -quantity;
        var holdings = portfolio.Holdings.ToDictionary(h => h.InstrumentId, StringComparer.Ordinal);
        var before = holdings.GetValueOrDefault(instrument) ?? new Holding(instrument, 0m);
        holdings[instrument] = before with { Quantity = before.Quantity + signed };
        var cash = portfolio.Cash - (signed * price) - fee;
        var updated = holdings.Values.Where(h => h.Quantity != 0).OrderBy(h => h.InstrumentId, StringComparer.Ordinal).ToArray();
        return portfolio with { Holdings = updated, Cash = cash };
    }

    /// <summary>Volume-weighted average price after adding a fill.</summary>
    public static decimal Vwap(decimal filledBefore, decimal averageBefore, decimal quantity, decimal price) =>
        filledBefore + quantity == 0 ? 0 : ((filledBefore * averageBefore) + (quantity * price)) / (filledBefore + quantity);
}
