using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>A loan at current prices.</summary>
/// <param name="Adjusted">Σ collateral value × liquidation threshold.</param>
public sealed record MarkedLoan(Loan Loan, decimal CollateralValue, decimal Adjusted, decimal Debt)
{
    /// <summary>Adjusted collateral / debt; infinite without debt.</summary>
    public double HealthFactor => Debt > 0 ? (double)(Adjusted / Debt) : double.PositiveInfinity;

    public decimal Equity => CollateralValue - Debt;

    /// <summary>Values a loan with unit prices of its assets (the base currency is worth 1); <see cref="Debt"/> is the debt's value.</summary>
    public static MarkedLoan Mark(Loan loan, Func<string, decimal> priceOf)
    {
        var value = loan.Collateral.Sum(c => c.Quantity * priceOf(c.Asset));
        var adjusted = loan.Collateral.Sum(c => c.Quantity * priceOf(c.Asset) * (decimal)c.LiquidationThreshold);
        return new MarkedLoan(loan, value, adjusted, loan.OwesCash ? loan.Debt : loan.Debt * priceOf(loan.DebtAsset));
    }
}

/// <summary>What a guard leg does.</summary>
public enum GuardAction
{
    /// <summary>Repay debt with cash.</summary>
    Repay,
    /// <summary>Move held units (or cash) into the loan's collateral.</summary>
    SupplyCollateral,
    /// <summary>Take collateral out into the holdings.</summary>
    WithdrawCollateral,
    /// <summary>Borrow cash against the collateral.</summary>
    Borrow,
    /// <summary>Sell withdrawn collateral on a trading venue.</summary>
    Sell,
    /// <summary>Buy collateral with borrowed cash on a trading venue.</summary>
    Buy,
}

/// <summary>One guard leg, with why it is there.</summary>
/// <param name="Asset">Instrument, or the base currency for repay, borrow and cash collateral.</param>
/// <param name="FundedBy">For a repayment of a sale's proceeds: the position of the sale among the guard's legs.</param>
public sealed record GuardLeg(GuardAction Action, string LoanId, string Venue, string Asset, decimal Quantity, decimal Price, string Reason, int? FundedBy = null)
{
    public decimal Value => Quantity * Price;
}

/// <summary>The guard's legs, the health-factor reasons it measured, and whether any loan was in emergency.</summary>
public sealed record GuardPlan(IReadOnlyList<GuardLeg> Legs, IReadOnlyList<DriftReason> Reasons, bool Emergency)
{
    public bool Acts => Legs.Count > 0;
}

/// <summary>
/// The liquidation guard. For each loan below its band (worst first) it restores the target health factor T with the
/// cheapest means first, each sized in closed form from HF = A / D (A = Σ value × liquidation threshold, D = debt):
/// (1) repay from free cash, r = D − A/T; (2) add collateral from holdings of an asset the loan already accepts,
/// highest threshold first, v = (T·D − A)/LT; (3) deleverage — withdraw collateral, sell it and repay with the
/// proceeds after costs, lowest threshold first, v = (T·D − A)/(T(1 − c) − LT). Above the boost level it borrows, buys
/// the highest-threshold collateral and supplies it, v = (A − T·D)/(T − (1 − c)·LT). Each leg says what it does to the
/// health factor; when the target cannot be reached with what the portfolio has, a reason says so.
/// </summary>
public static class LiquidationGuard
{
    public const string Rule = "health_factor";

    /// <summary>Least health factor a withdrawal may leave before its sale repays (a venue refuses below 1).</summary>
    public const decimal WithdrawalFloor = 1.01m;

    /// <summary>Most withdraw-sell-repay rounds per collateral asset.</summary>
    public const int MaxDeleverageRounds = 24;

    public static GuardPlan Plan(PortfolioSnapshot portfolio, IReadOnlyDictionary<string, decimal> prices, string baseCurrency, HealthFactorBand band, decimal costRate)
    {
        decimal PriceOf(string asset) => asset == baseCurrency ? 1m : prices[asset];
        var legs = new List<GuardLeg>();
        var reasons = new List<DriftReason>();
        var emergency = false;
        var cash = portfolio.Cash;
        var held = portfolio.Holdings.GroupBy(h => h.InstrumentId, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Sum(h => h.Quantity), StringComparer.Ordinal);
        var target = (decimal)band.Target;

        foreach (var marked in portfolio.LoanList.Select(l => MarkedLoan.Mark(l, PriceOf)).Where(m => m.Debt > 0).OrderBy(m => m.HealthFactor))
        {
            var loan = marked.Loan;
            var hf = marked.HealthFactor;
            var below = hf < band.RepayBelow;
            var above = band.BoostAbove > 0 && hf > band.BoostAbove;
            var inEmergency = band.EmergencyBelow > 0 && hf < band.EmergencyBelow;
            emergency |= inEmergency;
            reasons.Add(new DriftReason(Rule, loan.LoanId, hf, below || !above ? band.RepayBelow : band.BoostAbove, below || above,
                Describe(loan.LoanId, hf, band, below, above, inEmergency)));
            decimal a = marked.Adjusted, d = marked.Debt;
            string Hf() => (d > 0 ? a / d : 0m).ToString("F4", CultureInfo.InvariantCulture);

            // Debt in the base currency is repaid with cash; debt in an instrument is repaid in its units, bought with
            // cash (each conversion pays the cost rate) unless the portfolio already holds them.
            var debtAsset = loan.OwesCash ? baseCurrency : loan.DebtAsset;
            var debtPrice = PriceOf(debtAsset);
            var conversion = loan.OwesCash ? 1 - costRate : (1 - costRate) * (1 - costRate); // debt value repaid per unit of collateral value sold
            void Repay(decimal units, string why, int? fundedBy = null)
            {
                var before = Hf();
                d -= units * debtPrice;
                legs.Add(new GuardLeg(GuardAction.Repay, loan.LoanId, loan.Venue, debtAsset, units, debtPrice,
                    $"repay {(loan.OwesCash ? units.ToString("F2", CultureInfo.InvariantCulture) : $"{Units(units)} {debtAsset}")} {why}: health factor {before} → {Hf()}", fundedBy));
            }

            if (below)
            {
                // (0) Repay with units of the debt asset the portfolio holds.
                if (!loan.OwesCash)
                {
                    var units = Math.Min(Ceiling((d - (a / target)) / debtPrice, 8), Math.Max(held.GetValueOrDefault(debtAsset), 0));
                    if (units > 0)
                    {
                        held[debtAsset] = held.GetValueOrDefault(debtAsset) - units;
                        Repay(units, "from holdings");
                    }
                }

                // (1) Repay from free cash (buying the debt asset first when it is not cash).
                if (a < target * d && cash > 0)
                {
                    if (loan.OwesCash)
                    {
                        var repay = Math.Min(Ceiling(d - (a / target), 2), cash);
                        cash -= repay;
                        Repay(repay, "from free cash");
                    }
                    else
                    {
                        var units = Math.Min(Ceiling((d - (a / target)) / debtPrice, 8), decimal.Round(cash * (1 - costRate) / debtPrice, 8, MidpointRounding.ToZero));
                        if (units > 0)
                        {
                            cash -= units * debtPrice * (1 + costRate);
                            legs.Add(new GuardLeg(GuardAction.Buy, loan.LoanId, loan.Venue, debtAsset, units, debtPrice, $"buy {Units(units)} {debtAsset} with free cash to repay"));
                            Repay(units, "bought with free cash");
                        }
                    }
                }

                // (2) Add collateral the loan accepts from holdings, highest threshold first.
                foreach (var collateral in loan.Collateral.Where(c => c.Asset != baseCurrency).OrderByDescending(c => c.LiquidationThreshold))
                {
                    if (a >= target * d)
                    {
                        break;
                    }

                    var price = PriceOf(collateral.Asset);
                    var units = Math.Min(Ceiling((target * d - a) / ((decimal)collateral.LiquidationThreshold * price), 8), Math.Max(held.GetValueOrDefault(collateral.Asset), 0));
                    if (units <= 0)
                    {
                        continue;
                    }

                    var before = Hf();
                    a += units * price * (decimal)collateral.LiquidationThreshold;
                    held[collateral.Asset] = held.GetValueOrDefault(collateral.Asset) - units;
                    legs.Add(new GuardLeg(GuardAction.SupplyCollateral, loan.LoanId, loan.Venue, collateral.Asset, units, price,
                        $"add {Units(units)} {collateral.Asset} from holdings as collateral: health factor {before} → {Hf()}"));
                }

                // (3) Deleverage: sell collateral and repay (through the debt asset when it is not cash), lowest threshold
                // first. A lending venue refuses a withdrawal that leaves the health factor below 1 before the sale's
                // repayment lands, so collateral comes out in rounds that each keep it at WithdrawalFloor or above.
                var pledged = loan.Collateral.ToDictionary(c => c.Asset, c => c.Quantity, StringComparer.Ordinal);
                foreach (var collateral in loan.Collateral.Where(c => c.Asset != baseCurrency && c.Asset != debtAsset).OrderBy(c => c.LiquidationThreshold))
                {
                    var price = PriceOf(collateral.Asset);
                    var lt = (decimal)collateral.LiquidationThreshold;
                    var denominator = (target * conversion) - lt;
                    for (var round = 0; round < MaxDeleverageRounds && a < target * d && denominator > 0; round++)
                    {
                        // The repayment is rounded down (cents, or 1e-8 units); sell enough more that it does not leave HF short.
                        var slack = target * (loan.OwesCash ? 0.01m : 0.00000001m * debtPrice);
                        var needed = Math.Min(Ceiling(((target * d) - a + slack) / denominator / price, 8), pledged[collateral.Asset]);
                        var safe = decimal.Round((a - (WithdrawalFloor * d)) / (lt * price), 8, MidpointRounding.ToZero);
                        var units = Math.Min(needed, safe);
                        if (units <= 0)
                        {
                            break;
                        }

                        var proceeds = units * price * (1 - costRate);
                        a -= units * price * lt;
                        pledged[collateral.Asset] -= units;
                        legs.Add(new GuardLeg(GuardAction.WithdrawCollateral, loan.LoanId, loan.Venue, collateral.Asset, units, price,
                            $"withdraw {Units(units)} {collateral.Asset} to sell{(units < needed ? $" (round {round + 1}: at most what keeps the health factor at {WithdrawalFloor:F2} until the repayment)" : string.Empty)}"));
                        legs.Add(new GuardLeg(GuardAction.Sell, loan.LoanId, loan.Venue, collateral.Asset, units, price, $"sell {Units(units)} {collateral.Asset} to repay debt"));
                        if (loan.OwesCash)
                        {
                            Repay(Math.Min(decimal.Round(proceeds, 2, MidpointRounding.ToZero), d), "from the sale", legs.Count - 1);
                        }
                        else
                        {
                            var bought = Math.Min(decimal.Round(proceeds * (1 - costRate) / debtPrice, 8, MidpointRounding.ToZero), d / debtPrice);
                            legs.Add(new GuardLeg(GuardAction.Buy, loan.LoanId, loan.Venue, debtAsset, bought, debtPrice, $"buy {Units(bought)} {debtAsset} with the proceeds"));
                            Repay(bought, "bought with the sale");
                        }
                    }
                }

                if (a < target * d)
                {
                    reasons.Add(new DriftReason(Rule, loan.LoanId, (double)(a / d), band.Target, true,
                        $"{loan.LoanId}: target health factor {band.Target:F2} is out of reach with the portfolio's cash, holdings and collateral; the guard reaches {Hf()}"));
                }
            }
            else if (above)
            {
                // Boost: borrow, buy the highest-threshold collateral (selling borrowed units first when the debt is not
                // cash), supply it.
                var best = loan.Collateral.Where(c => c.Asset != baseCurrency && c.Asset != debtAsset).OrderByDescending(c => c.LiquidationThreshold).FirstOrDefault();
                if (best is null)
                {
                    continue;
                }

                var price = PriceOf(best.Asset);
                var lt = (decimal)best.LiquidationThreshold;
                var denominator = target - (conversion * lt);
                var borrowValue = denominator > 0 ? (a - (target * d)) / denominator : 0m;
                var borrow = loan.OwesCash
                    ? decimal.Round(borrowValue, 2, MidpointRounding.ToZero)
                    : decimal.Round(borrowValue / debtPrice, 8, MidpointRounding.ToZero);
                var units = decimal.Round(borrow * debtPrice * conversion / price, 8, MidpointRounding.ToZero);
                if (borrow <= 0 || units <= 0)
                {
                    continue;
                }

                var before = Hf();
                d += borrow * debtPrice;
                a += units * price * lt;
                legs.Add(new GuardLeg(GuardAction.Borrow, loan.LoanId, loan.Venue, debtAsset, borrow, debtPrice,
                    loan.OwesCash ? $"borrow {borrow.ToString("F2", CultureInfo.InvariantCulture)} against the collateral" : $"borrow {Units(borrow)} {debtAsset} against the collateral"));
                if (!loan.OwesCash)
                {
                    legs.Add(new GuardLeg(GuardAction.Sell, loan.LoanId, loan.Venue, debtAsset, borrow, debtPrice, $"sell the borrowed {Units(borrow)} {debtAsset}"));
                }

                legs.Add(new GuardLeg(GuardAction.Buy, loan.LoanId, loan.Venue, best.Asset, units, price, $"buy {Units(units)} {best.Asset} with it"));
                legs.Add(new GuardLeg(GuardAction.SupplyCollateral, loan.LoanId, loan.Venue, best.Asset, units, price,
                    $"supply {Units(units)} {best.Asset}: health factor {before} → {Hf()}"));
            }
        }

        return new GuardPlan(legs, reasons, emergency);
    }

    /// <summary>
    /// The portfolio after the guard's legs at their reference prices: trades as fills paying <paramref name="costRate"/>
    /// of notional, loan legs through the ledger. Plans build their rebalancing legs on this.
    /// </summary>
    public static PortfolioSnapshot Apply(PortfolioSnapshot portfolio, GuardPlan plan, string baseCurrency, decimal costRate) =>
        plan.Legs.Aggregate(portfolio, (p, leg) => leg.Action switch
        {
            GuardAction.Sell => PortfolioLedger.ApplyFill(p, leg.Asset, TradeSide.Sell, leg.Quantity, leg.Price, leg.Value * costRate),
            GuardAction.Buy => PortfolioLedger.ApplyFill(p, leg.Asset, TradeSide.Buy, leg.Quantity, leg.Price, leg.Value * costRate),
            _ => PortfolioLedger.ApplyLoanLeg(p, leg.Action, leg.LoanId, leg.Asset, leg.Quantity, baseCurrency),
        });

    private static string Describe(string loanId, double hf, HealthFactorBand band, bool below, bool above, bool emergency) =>
        emergency ? FormattableString.Invariant($"{loanId}: health factor {hf:F4} below the emergency level {band.EmergencyBelow:F2}: acting first")
        : below ? FormattableString.Invariant($"{loanId}: health factor {hf:F4} < repay level {band.RepayBelow:F2}: restore {band.Target:F2}")
        : above ? FormattableString.Invariant($"{loanId}: health factor {hf:F4} > boost level {band.BoostAbove:F2}: borrow back to {band.Target:F2}")
        : FormattableString.Invariant($"{loanId}: health factor {hf:F4} inside the band [{band.RepayBelow:F2}, {(band.BoostAbove > 0 ? band.BoostAbove.ToString("F2", CultureInfo.InvariantCulture) : "∞")}]");

    private static string Units(decimal units) => units.ToString("0.########", CultureInfo.InvariantCulture);

    /// <summary>Rounds up to <paramref name="decimals"/> places (amounts that must reach a target).</summary>
    private static decimal Ceiling(decimal value, int decimals)
    {
        var scale = (decimal)Math.Pow(10, decimals);
        return decimal.Ceiling(value * scale) / scale;
    }
}
