namespace RebalanceMesh.Risk.Core;

/// <summary>One collateral asset of a loan at current prices.</summary>
public sealed record CollateralHolding(string InstrumentId, double Quantity, double Price, double LiquidationThreshold)
{
    public double Value => Quantity * Price;
}

/// <summary>How close a loan is to liquidation.</summary>
public sealed record LoanRiskFigure(double HealthFactor, double CollateralValue, double DebtValue, double DropToLiquidation, double DistanceToLiquidationSd, double LiquidationPrice);

/// <summary>
/// Aave-style liquidation risk: HF = Σ collateralᵢ·priceᵢ·LTᵢ / debt. With debt held and every collateral price falling
/// by the same fraction x, HF(x) = HF·(1 − x), so the loan is liquidated at x* = 1 − 1/HF; in standard deviations of the
/// collateral's horizon log-return that is −ln(1 − x*)/σ = ln(HF)/σ. With one collateral asset the liquidation price
/// is debt / (quantity·LT).
/// </summary>
public static class LoanRiskModel
{
    public static LoanRiskFigure Evaluate(IReadOnlyList<CollateralHolding> collateral, double debtValue, double collateralHorizonSigma)
    {
        var collateralValue = collateral.Sum(c => c.Value);
        var weighted = collateral.Sum(c => c.Value * c.LiquidationThreshold);
        if (debtValue <= 0)
        {
            return new LoanRiskFigure(double.PositiveInfinity, collateralValue, 0, 1, double.PositiveInfinity, 0);
        }

        var healthFactor = weighted / debtValue;
        var drop = Math.Max(0, 1 - (1 / healthFactor));
        var distance = healthFactor <= 1 ? 0 : collateralHorizonSigma > 0 ? Math.Log(healthFactor) / collateralHorizonSigma : double.PositiveInfinity;
        var liquidationPrice = collateral.Count == 1 && collateral[0].Quantity > 0
            ? debtValue / (collateral[0].Quantity * collateral[0].LiquidationThreshold)
            : 0;
        return new LoanRiskFigure(healthFactor, collateralValue, debtValue, drop, distance, liquidationPrice);
    }

    /// <summary>Health factor after relative price moves of collateral and debt instruments.</summary>
    public static double StressedHealthFactor(IReadOnlyList<CollateralHolding> collateral, IReadOnlyList<(string InstrumentId, double Value)> debt, Func<string, double> move)
    {
        var weighted = collateral.Sum(c => c.Value * (1 + move(c.InstrumentId)) * c.LiquidationThreshold);
        var owed = debt.Sum(d => d.Value * (1 + move(d.InstrumentId)));
        return owed > 0 ? weighted / owed : double.PositiveInfinity;
    }
}
