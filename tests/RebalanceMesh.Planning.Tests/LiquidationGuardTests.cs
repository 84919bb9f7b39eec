using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>The liquidation guard on hand-computed loans: 10 ETH at 2,000 pledged with a liquidation threshold of 0.8.</summary>
public class LiquidationGuardTests
{
    private static readonly Dictionary<string, decimal> Prices = new() { ["ETH"] = 2_000m };
    private static readonly HealthFactorBand Band = new(Target: 1.5, RepayBelow: 1.2, BoostAbove: 1.8, EmergencyBelow: 1.05);

    private static PortfolioSnapshot Portfolio(decimal debt, decimal cash = 1_000m, decimal heldEth = 2m) =>
        new("p", heldEth > 0 ? [new Holding("ETH", heldEth)] : [], cash, 1, [new Loan("L1", "LEND", [new LoanCollateral("ETH", 10m, 0.8)], debt)]);

    private static double HealthFactor(PortfolioSnapshot portfolio) =>
        MarkedLoan.Mark(portfolio.LoanList.Single(), a => a == "EUR" ? 1m : Prices[a]).HealthFactor;

    private static PortfolioSnapshot Apply(PortfolioSnapshot portfolio, GuardPlan plan, decimal costRate) => LiquidationGuard.Apply(portfolio, plan, "EUR", costRate);

    [Fact]
    public void Below_the_band_it_repays_from_cash_then_adds_held_collateral_then_deleverages_to_the_target()
    {
        // A = 10 × 2,000 × 0.8 = 16,000 against 15,000 of debt: HF 1.0667 < 1.2.
        var portfolio = Portfolio(debt: 15_000m);
        var plan = LiquidationGuard.Plan(portfolio, Prices, "EUR", Band, costRate: 0.001m);
        Assert.False(plan.Emergency);
        Assert.True(plan.Reasons.Single(r => r.InstrumentId == "L1" && r.Threshold == 1.2).Breached);

        // (1) all 1,000 of cash repays: D = 14,000, HF 1.142857. (2) both held ETH go in: A = 19,200, HF 1.371429.
        // (3) sell v = (1.5 × 14,000 − 19,200) / (1.5 × 0.999 − 0.8) = 2,576.95 of pledged ETH and repay.
        Assert.Equal([GuardAction.Repay, GuardAction.SupplyCollateral, GuardAction.WithdrawCollateral, GuardAction.Sell, GuardAction.Repay], plan.Legs.Select(l => l.Action));
        Assert.Equal(1_000m, plan.Legs[0].Quantity);
        Assert.Equal(2m, plan.Legs[1].Quantity);
        var units = decimal.Ceiling((1_800m + 0.015m) / 0.6985m / 2_000m * 100_000_000m) / 100_000_000m; // + a cent of repayment rounding
        Assert.Equal(units, plan.Legs[2].Quantity);
        Assert.Equal(units, plan.Legs[3].Quantity);
        Assert.Equal(decimal.Round(units * 2_000m * 0.999m, 2, MidpointRounding.ToZero), plan.Legs[4].Quantity);
        Assert.Contains("health factor 1.0667 → 1.1429", plan.Legs[0].Reason);

        // Carried out, the legs bring the loan to the target (just above it: amounts are rounded toward safety).
        var after = Apply(portfolio, plan, 0.001m);
        Assert.InRange(HealthFactor(after), 1.5, 1.5001);
        Assert.InRange(after.Cash, 0m, 0.01m); // free cash spent; the sale's proceeds repaid to the cent
        Assert.DoesNotContain(after.Holdings, h => h.InstrumentId == "ETH");
    }

    [Fact]
    public void Below_the_emergency_level_it_says_so()
    {
        var plan = LiquidationGuard.Plan(Portfolio(debt: 16_000m), Prices, "EUR", Band, 0.001m); // HF 1.0
        Assert.True(plan.Emergency);
        Assert.Contains("emergency", plan.Reasons[0].Message);
        Assert.InRange(HealthFactor(Apply(Portfolio(debt: 16_000m), plan, 0.001m)), 1.5, 1.5001);
    }

    [Fact]
    public void Out_of_reach_targets_are_reported_with_what_the_guard_achieves()
    {
        // Underwater: 25,000 owed against 20,000 of collateral (HF 0.64), nothing else. The venue refuses any withdrawal
        // below a health factor of 1, so there is nothing the guard can do: it says so.
        var plan = LiquidationGuard.Plan(Portfolio(debt: 25_000m, cash: 0m, heldEth: 0m), Prices, "EUR", Band, 0.001m);
        Assert.Empty(plan.Legs);
        Assert.Contains(plan.Reasons, r => r.Message.Contains("out of reach", StringComparison.Ordinal) && r.Message.Contains("reaches 0.6400", StringComparison.Ordinal));
    }

    [Fact]
    public void Collateral_comes_out_in_rounds_that_keep_the_health_factor_above_1_until_each_repayment()
    {
        // 15,000 owed against 10 ETH (A 16,000, HF 1.0667), no cash, no costs. Withdrawing at once the v = (1.5 × 15,000
        // − 16,000) / 0.7 = 9,286 of ETH needed would leave (16,000 − 7,429) / 15,000 = 0.571 before the repayment, and
        // the venue would refuse it: rounds of at most (A − 1.01 D) / (0.8 × 2,000) ETH each, until HF 1.5.
        var plan = LiquidationGuard.Plan(Portfolio(debt: 15_000m, cash: 0m, heldEth: 0m), Prices, "EUR", Band, 0m);
        var withdrawals = plan.Legs.Where(l => l.Action == GuardAction.WithdrawCollateral).ToArray();
        Assert.True(withdrawals.Length > 1, "several rounds");
        decimal a = 16_000m, d = 15_000m;
        foreach (var leg in plan.Legs)
        {
            if (leg.Action == GuardAction.WithdrawCollateral)
            {
                a -= leg.Quantity * 2_000m * 0.8m;
                Assert.True(a / d >= LiquidationGuard.WithdrawalFloor - 0.0000001m, $"after {leg.Reason}: HF {a / d}");
            }
            else if (leg.Action == GuardAction.Repay)
            {
                d -= leg.Quantity;
            }
        }

        Assert.InRange(HealthFactor(Apply(Portfolio(debt: 15_000m, cash: 0m, heldEth: 0m), plan, 0m)), 1.5, 1.5001);
    }

    [Fact]
    public void Above_the_boost_level_it_borrows_buys_and_supplies_back_to_the_target()
    {
        // A = 16,000 against 8,000: HF 2.0 > 1.8. Borrow x = (16,000 − 1.5 × 8,000) / (1.5 − 0.999 × 0.8) = 5,707.76.
        var portfolio = Portfolio(debt: 8_000m);
        var plan = LiquidationGuard.Plan(portfolio, Prices, "EUR", Band, 0.001m);
        Assert.Equal([GuardAction.Borrow, GuardAction.Buy, GuardAction.SupplyCollateral], plan.Legs.Select(l => l.Action));
        Assert.Equal(5_707.76m, plan.Legs[0].Quantity);
        var after = Apply(portfolio, plan, 0.001m);
        Assert.Equal(1.5, HealthFactor(after), 3);
        Assert.True(after.Cash >= portfolio.Cash - 0.01m, "the borrowed cash pays for the collateral bought");
    }

    [Fact]
    public void Inside_the_band_nothing_happens()
    {
        var plan = LiquidationGuard.Plan(Portfolio(debt: 10_000m), Prices, "EUR", Band, 0.001m); // HF 1.6
        Assert.False(plan.Acts);
        Assert.False(plan.Reasons.Single().Breached);
    }

    [Fact]
    public void Loan_legs_move_cash_holdings_collateral_and_debt()
    {
        var portfolio = Portfolio(debt: 15_000m);
        var repaid = PortfolioLedger.ApplyLoanLeg(portfolio, GuardAction.Repay, "L1", "EUR", 400m, "EUR");
        Assert.Equal(600m, repaid.Cash);
        Assert.Equal(14_600m, repaid.LoanList[0].Debt);
        var supplied = PortfolioLedger.ApplyLoanLeg(repaid, GuardAction.SupplyCollateral, "L1", "ETH", 2m, "EUR");
        Assert.Empty(supplied.Holdings);
        Assert.Equal(12m, supplied.LoanList[0].Collateral[0].Quantity);
        var withdrawn = PortfolioLedger.ApplyLoanLeg(supplied, GuardAction.WithdrawCollateral, "L1", "ETH", 5m, "EUR");
        Assert.Equal(5m, withdrawn.Holdings.Single().Quantity);
        Assert.Equal(7m, withdrawn.LoanList[0].Collateral[0].Quantity);
        Assert.Throws<ArgumentException>(() => PortfolioLedger.ApplyLoanLeg(portfolio, GuardAction.Repay, "nope", "EUR", 1m, "EUR"));
        Assert.Throws<ArgumentException>(() => PortfolioLedger.ApplyLoanLeg(portfolio, GuardAction.SupplyCollateral, "L1", "BTC", 1m, "EUR"));
    }

    [Fact]
    public void Debt_owed_in_an_instrument_is_repaid_in_its_units_from_holdings_then_bought_with_cash_then_with_sold_collateral()
    {
        // 2 BTC at 30,000 (LT 0.8) against 20 ETH at 2,000: A = 48,000, D = 40,000, HF 1.2 < 1.3; no costs.
        var prices = new Dictionary<string, decimal> { ["BTC"] = 30_000m, ["ETH"] = 2_000m };
        var band = new HealthFactorBand(Target: 1.5, RepayBelow: 1.3, BoostAbove: 0, EmergencyBelow: 0);
        var portfolio = new PortfolioSnapshot("p", [new Holding("ETH", 3m)], 1_000m, 1,
            [new Loan("L1", "LEND", [new LoanCollateral("BTC", 2m, 0.8)], 20m, DebtAsset: "ETH")], "EUR");
        Assert.Equal(["BTC", "ETH"], portfolio.LoanInstruments.Order());
        var plan = LiquidationGuard.Plan(portfolio, prices, "EUR", band, costRate: 0m);

        // (0) the 3 held ETH repay (D 34,000, HF 1.4118); (1) 1,000 of cash buys 0.5 ETH and repays it (D 33,000);
        // (3) sell u = ⌈(1.5 × 33,000 − 48,000 + 1.5 × 1e-8 × 2,000) / 0.7 / 30,000⌉ = 0.07142858 BTC, buy
        // ⌊2,142.8574 / 2,000⌋ = 1.0714287 ETH with the proceeds and repay it: HF 46,285.71408 / 30,857.1426 = 1.5000000058.
        Assert.Equal(
            [(GuardAction.Repay, "ETH", 3m), (GuardAction.Buy, "ETH", 0.5m), (GuardAction.Repay, "ETH", 0.5m),
             (GuardAction.WithdrawCollateral, "BTC", 0.07142858m), (GuardAction.Sell, "BTC", 0.07142858m), (GuardAction.Buy, "ETH", 1.0714287m), (GuardAction.Repay, "ETH", 1.0714287m)],
            plan.Legs.Select(l => (l.Action, l.Asset, l.Quantity)));
        Assert.Contains("repay 3 ETH from holdings: health factor 1.2000 → 1.4118", plan.Legs[0].Reason);

        var after = LiquidationGuard.Apply(portfolio, plan, "EUR", 0m);
        var loan = after.LoanList.Single();
        Assert.Equal(20m - 3m - 0.5m - 1.0714287m, loan.Debt);
        Assert.Equal(46_285.71408 / 30_857.1426, MarkedLoan.Mark(loan, a => prices[a]).HealthFactor, 12);
        Assert.Equal(0m, after.Cash);                               // 1,000 spent on ETH, the sale's 2,142.8574 on ETH too
        Assert.Equal(0m, after.QuantityOf("ETH"));
        Assert.Throws<ArgumentException>(() => PortfolioLedger.ApplyLoanLeg(portfolio, GuardAction.Repay, "L1", "EUR", 1m, "EUR")); // it owes ETH
    }

    [Fact]
    public void Above_the_boost_level_borrowed_units_of_the_debt_asset_are_sold_to_buy_collateral()
    {
        // 2 BTC at 30,000 (LT 0.8) against 5 ETH at 2,000: A = 48,000, D = 10,000, HF 4.8 > 2. Target 1.5, no costs:
        // borrow b with 48,000 + 0.8·b = 1.5 (10,000 + b) → b = 33,000 / 0.7 = 47,142.857… → 23.57142857 ETH.
        var prices = new Dictionary<string, decimal> { ["BTC"] = 30_000m, ["ETH"] = 2_000m };
        var portfolio = new PortfolioSnapshot("p", [], 0m, 1, [new Loan("L1", "LEND", [new LoanCollateral("BTC", 2m, 0.8)], 5m, DebtAsset: "ETH")], "EUR");
        var plan = LiquidationGuard.Plan(portfolio, prices, "EUR", new HealthFactorBand(1.5, 1.3, 2.0, 0), 0m);
        Assert.Equal([GuardAction.Borrow, GuardAction.Sell, GuardAction.Buy, GuardAction.SupplyCollateral], plan.Legs.Select(l => l.Action));
        Assert.Equal(23.57142857m, plan.Legs[0].Quantity);
        Assert.Equal(("ETH", 23.57142857m), (plan.Legs[1].Asset, plan.Legs[1].Quantity));
        Assert.Equal(("BTC", 1.57142857m), (plan.Legs[2].Asset, plan.Legs[2].Quantity));
        var after = LiquidationGuard.Apply(portfolio, plan, "EUR", 0m);
        Assert.Equal(1.5, MarkedLoan.Mark(after.LoanList.Single(), a => prices[a]).HealthFactor, 6);
        Assert.True(after.Cash >= 0m);
    }
}
