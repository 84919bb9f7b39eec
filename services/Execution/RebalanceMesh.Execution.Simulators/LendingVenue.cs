using RebalanceMesh.Domain;

using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>What a lending venue accepts as collateral, and on what terms.</summary>
/// <param name="LiquidationThreshold">Share of the asset's value counted toward the health factor.</param>
/// <param name="LiquidationBonus">Extra collateral a liquidator receives per unit of debt repaid.</param>
/// <param name="MaxLoanToValue">Borrowing power per unit of value (below the threshold).</param>
public sealed record LendingAssetTerms(string Asset, decimal LiquidationThreshold, decimal LiquidationBonus, decimal MaxLoanToValue);

/// <summary>A simulated lending venue: its id and the assets it accepts as collateral.</summary>
public sealed record LendingVenueSpec(string VenueId, IReadOnlyList<LendingAssetTerms> Assets)
{
    public LendingAssetTerms? Terms(string asset) => Assets.FirstOrDefault(a => a.Asset == asset);
}

/// <summary>A loan as the lending venue holds it.</summary>
/// <param name="BaseCurrency">Priced at 1.</param>
public sealed record LendingPosition(
    string Venue,
    string PortfolioId,
    string LoanId,
    string BaseCurrency,
    IReadOnlyDictionary<string, decimal> Collateral,
    string DebtAsset,
    decimal Debt,
    int Liquidations = 0);

/// <summary>A loan operation a plan's loan leg asks for.</summary>
public enum LendingOperation
{
    Supply,
    Withdraw,
    Borrow,
    Repay,
}

/// <summary>The venue's answer: the position after the operation and the units it moved, or why it refused.</summary>
public sealed record LendingOutcome(bool Accepted, LendingPosition Position, decimal Quantity, string RejectReason);

/// <summary>One liquidation call with the health factor around it, in units of the seized and the debt asset.</summary>
public sealed record LiquidationEvent(string SeizedAsset, decimal SeizedQuantity, decimal DebtRepaid, double HealthFactorBefore, double HealthFactorAfter);

/// <summary>
/// The rules of an Aave-like lending venue, enforced on every operation: collateral only in accepted assets; a
/// withdrawal or a borrow must leave the health factor at or above 1 and the debt within the maximum loan-to-value;
/// a repayment is capped at the debt. Below a health factor of 1 the account is liquidated by
/// <see cref="LendingLiquidation"/> (close factor, liquidation bonus), as the real protocols do.
/// </summary>
public static class LendingVenue
{
    /// <summary>Σ collateral value × liquidation threshold / debt value; infinite without debt.</summary>
    public static double HealthFactor(LendingPosition position, LendingVenueSpec venue, Func<string, decimal> price) =>
        LendingLiquidation.HealthFactor(Collateral(position, venue, price), DebtValue(position, price));

    public static LendingOutcome Apply(LendingPosition position, LendingVenueSpec venue, LendingOperation operation, string asset, decimal quantity, Func<string, decimal> price)
    {
        if (quantity <= 0)
        {
            return Reject(position, "the quantity must be positive");
        }

        var collateral = position.Collateral.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        switch (operation)
        {
            case LendingOperation.Supply:
                if (venue.Terms(asset) is null)
                {
                    return Reject(position, $"{venue.VenueId} does not accept {asset} as collateral");
                }

                collateral[asset] = collateral.GetValueOrDefault(asset) + quantity;
                return Accept(position with { Collateral = collateral }, quantity);

            case LendingOperation.Withdraw:
                if (collateral.GetValueOrDefault(asset) < quantity)
                {
                    return Reject(position, $"only {collateral.GetValueOrDefault(asset)} {asset} is supplied");
                }

                collateral[asset] -= quantity;
                var withdrawn = position with { Collateral = collateral };
                return HealthFactor(withdrawn, venue, price) < 1
                    ? Reject(position, $"withdrawing {quantity} {asset} would leave the health factor below 1")
                    : Accept(withdrawn, quantity);

            case LendingOperation.Borrow:
                if (asset != position.DebtAsset)
                {
                    return Reject(position, $"the loan owes {position.DebtAsset}, not {asset}");
                }

                var borrowed = position with { Debt = position.Debt + quantity };
                var power = Collateral(borrowed, venue, price).Sum(c => c.Value * (venue.Terms(c.Asset)?.MaxLoanToValue ?? 0));
                return DebtValue(borrowed, price) > power
                    ? Reject(position, $"borrowing {quantity} {asset} exceeds the maximum loan-to-value of the collateral")
                    : Accept(borrowed, quantity);

            case LendingOperation.Repay:
                if (asset != position.DebtAsset)
                {
                    return Reject(position, $"the loan owes {position.DebtAsset}, not {asset}");
                }

                var repaid = Math.Min(quantity, position.Debt);
                return repaid <= 0 ? Reject(position, "the loan has no debt") : Accept(position with { Debt = position.Debt - repaid }, repaid);

            default:
                throw new ArgumentOutOfRangeException(nameof(operation), operation, "Unknown lending operation.");
        }
    }

    /// <summary>Liquidation calls while the health factor is below 1 (at most <paramref name="maxCalls"/>), and the position after them.</summary>
    public static (LendingPosition Position, IReadOnlyList<LiquidationEvent> Calls) Liquidate(LendingPosition position, LendingVenueSpec venue, Func<string, decimal> price, int maxCalls = 16)
    {
        var debtPrice = price(position.DebtAsset);
        if (debtPrice <= 0)
        {
            return (position, []);
        }

        var calls = LendingLiquidation.Run(Collateral(position, venue, price), DebtValue(position, price), maxCalls);
        var collateral = position.Collateral.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        var debt = position.Debt;
        var events = new List<LiquidationEvent>();
        foreach (var call in calls)
        {
            var repaid = Math.Min(call.DebtValueRepaid / debtPrice, debt);
            collateral[call.SeizedAsset] -= call.SeizedQuantity;
            debt -= repaid;
            events.Add(new LiquidationEvent(call.SeizedAsset, call.SeizedQuantity, repaid, call.HealthFactorBefore, call.HealthFactorAfter));
        }

        return (position with { Collateral = collateral, Debt = debt, Liquidations = position.Liquidations + calls.Count }, events);
    }

    private static LendingCollateral[] Collateral(LendingPosition position, LendingVenueSpec venue, Func<string, decimal> price) =>
        position.Collateral.Where(c => c.Value > 0).Select(c =>
        {
            var terms = venue.Terms(c.Key);
            return new LendingCollateral(c.Key, c.Value, price(c.Key), terms?.LiquidationThreshold ?? 0, terms?.LiquidationBonus ?? 0);
        }).ToArray();

    private static decimal DebtValue(LendingPosition position, Func<string, decimal> price) => position.Debt > 0 ? position.Debt * price(position.DebtAsset) : 0;

    private static LendingOutcome Accept(LendingPosition position, decimal quantity) => new(true, position, quantity, string.Empty);

    private static LendingOutcome Reject(LendingPosition position, string reason) => new(false, position, 0, reason);
}
