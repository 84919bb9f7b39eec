namespace RebalanceMesh.Domain;

/// <summary>One collateral asset of a lending account at current prices.</summary>
/// <param name="LiquidationThreshold">Share of its value that counts toward the health factor.</param>
/// <param name="LiquidationBonus">Extra collateral a liquidator receives per unit of debt repaid (0.05 = 5 %).</param>
public sealed record LendingCollateral(string Asset, decimal Quantity, decimal Price, decimal LiquidationThreshold, decimal LiquidationBonus)
{
    public decimal Value => Quantity * Price;
}

/// <summary>One liquidation call: debt value repaid by the liquidator and the collateral units it seized.</summary>
/// <param name="HealthFactorBefore">Set by <see cref="LendingLiquidation.Run"/>: the health factor around the call.</param>
public sealed record LiquidationCall(decimal DebtValueRepaid, string SeizedAsset, decimal SeizedQuantity, double HealthFactorBefore = 0, double HealthFactorAfter = 0);

/// <summary>
/// Aave v3's liquidation rule, shared by the simulated lending venue and the backtest. An account whose health factor
/// HF = Σ valueᵢ·LTᵢ / debt falls below 1 can be liquidated: a liquidator repays up to the close factor of the debt (50 %,
/// or all of it once HF is below 0.95) and seizes collateral worth the repaid value × (1 + bonus) from one asset (the
/// largest by value); when that asset cannot cover it, it seizes all of it and repays proportionally less.
/// </summary>
public static class LendingLiquidation
{
    public const decimal DefaultCloseFactor = 0.5m;

    /// <summary>Below this health factor the whole debt may be repaid in one call.</summary>
    public const decimal FullCloseBelow = 0.95m;

    public static double HealthFactor(IReadOnlyList<LendingCollateral> collateral, decimal debtValue) =>
        debtValue > 0 ? (double)(collateral.Sum(c => c.Value * c.LiquidationThreshold) / debtValue) : double.PositiveInfinity;

    /// <summary>
    /// The liquidation calls liquidators make one after another while the account stays below a health factor of 1
    /// (at most <paramref name="maxCalls"/>), each applied before the next, with the health factor around each.
    /// </summary>
    public static IReadOnlyList<LiquidationCall> Run(IReadOnlyList<LendingCollateral> collateral, decimal debtValue, int maxCalls = 16)
    {
        var current = collateral.ToList();
        var calls = new List<LiquidationCall>();
        for (var i = 0; i < maxCalls; i++)
        {
            var before = HealthFactor(current, debtValue);
            if (Next(current, debtValue) is not { } call)
            {
                break;
            }

            var at = current.FindIndex(c => c.Asset == call.SeizedAsset);
            current[at] = current[at] with { Quantity = current[at].Quantity - call.SeizedQuantity };
            debtValue -= call.DebtValueRepaid;
            calls.Add(call with { HealthFactorBefore = before, HealthFactorAfter = HealthFactor(current, debtValue) });
        }

        return calls;
    }

    /// <summary>The liquidation call a liquidator would make now, or null when the account is healthy (HF ≥ 1) or empty.</summary>
    public static LiquidationCall? Next(IReadOnlyList<LendingCollateral> collateral, decimal debtValue)
    {
        var hf = HealthFactor(collateral, debtValue);
        var seized = collateral.Where(c => c.Quantity > 0 && c.Price > 0).OrderByDescending(c => c.Value).FirstOrDefault();
        if (hf >= 1 || seized is null)
        {
            return null;
        }

        var repay = debtValue * ((decimal)hf < FullCloseBelow ? 1m : DefaultCloseFactor);
        var seizeValue = repay * (1 + seized.LiquidationBonus);
        if (seizeValue > seized.Value)
        {
            seizeValue = seized.Value;
            repay = seizeValue / (1 + seized.LiquidationBonus);
        }

        return new LiquidationCall(repay, seized.Asset, seizeValue / seized.Price);
    }
}
