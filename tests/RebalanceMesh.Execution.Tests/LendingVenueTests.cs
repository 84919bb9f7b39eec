using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Simulators;

namespace RebalanceMesh.Execution.Tests;

/// <summary>The simulated lending venue's rules on hand-computed loans: 10 DAX at 2,000 (LT 0.8, max LTV 0.75, bonus 5 %).</summary>
public class LendingVenueTests
{
    private static readonly LendingVenueSpec Venue = new("LEND-A", [new("DAX", 0.80m, 0.05m, 0.75m), new("EUR", 0.93m, 0.02m, 0.90m)]);

    private static LendingPosition Loan(decimal debt, decimal dax = 10m) =>
        new("LEND-A", "p1", "L1", "EUR", new Dictionary<string, decimal> { ["DAX"] = dax }, "EUR", debt);

    private static Func<string, decimal> Prices(decimal dax) => asset => asset == "EUR" ? 1m : dax;

    [Fact]
    public void Supplies_only_accepted_collateral_and_caps_a_repayment_at_the_debt()
    {
        var loan = Loan(10_000m);
        Assert.Equal(16_000.0 / 10_000, LendingVenue.HealthFactor(loan, Venue, Prices(2_000m)), 12);

        var supplied = LendingVenue.Apply(loan, Venue, LendingOperation.Supply, "DAX", 2m, Prices(2_000m));
        Assert.True(supplied.Accepted);
        Assert.Equal(12m, supplied.Position.Collateral["DAX"]);
        Assert.Equal("LEND-A does not accept SMI as collateral", LendingVenue.Apply(loan, Venue, LendingOperation.Supply, "SMI", 1m, Prices(2_000m)).RejectReason);

        var repaid = LendingVenue.Apply(loan, Venue, LendingOperation.Repay, "EUR", 12_000m, Prices(2_000m));
        Assert.Equal((true, 10_000m, 0m), (repaid.Accepted, repaid.Quantity, repaid.Position.Debt));
        Assert.False(LendingVenue.Apply(loan, Venue, LendingOperation.Repay, "DAX", 1m, Prices(2_000m)).Accepted); // owes EUR
    }

    [Fact]
    public void A_withdrawal_must_leave_the_health_factor_at_1_and_a_borrow_within_the_maximum_loan_to_value()
    {
        // HF after withdrawing w DAX: (10 − w) × 2,000 × 0.8 / 10,000 ≥ 1 → w ≤ 3.75.
        var loan = Loan(10_000m);
        Assert.True(LendingVenue.Apply(loan, Venue, LendingOperation.Withdraw, "DAX", 3.75m, Prices(2_000m)).Accepted);
        Assert.Contains("below 1", LendingVenue.Apply(loan, Venue, LendingOperation.Withdraw, "DAX", 3.76m, Prices(2_000m)).RejectReason);
        Assert.Contains("only 10", LendingVenue.Apply(loan, Venue, LendingOperation.Withdraw, "DAX", 11m, Prices(2_000m)).RejectReason);

        // Borrowing power 10 × 2,000 × 0.75 = 15,000: 5,000 more is fine, 5,000.01 is not.
        Assert.True(LendingVenue.Apply(loan, Venue, LendingOperation.Borrow, "EUR", 5_000m, Prices(2_000m)).Accepted);
        Assert.Contains("maximum loan-to-value", LendingVenue.Apply(loan, Venue, LendingOperation.Borrow, "EUR", 5_000.01m, Prices(2_000m)).RejectReason);
    }

    [Fact]
    public void Below_a_health_factor_of_1_the_venue_liquidates_half_the_debt_with_the_bonus()
    {
        // At 1,240: HF = 10 × 1,240 × 0.8 / 10,000 = 0.992 → close factor 50 %: repay 5,000, seize 5,000 × 1.05 / 1,240
        // = 4.2338… DAX. After: (5.7661…) × 1,240 × 0.8 / 5,000 = 1.144.
        var (after, calls) = LendingVenue.Liquidate(Loan(10_000m), Venue, Prices(1_240m));
        var call = Assert.Single(calls);
        Assert.Equal(("DAX", 5_000m, 5_250m / 1_240m), (call.SeizedAsset, call.DebtRepaid, call.SeizedQuantity));
        Assert.Equal(0.992, call.HealthFactorBefore, 12);
        Assert.Equal((double)((10m - (5_250m / 1_240m)) * 1_240m * 0.8m / 5_000m), call.HealthFactorAfter, 12);
        Assert.Equal(5_000m, after.Debt);
        Assert.Equal(1, after.Liquidations);

        // Healthy at 1,300 (HF 1.04): nothing happens.
        Assert.Empty(LendingVenue.Liquidate(Loan(10_000m), Venue, Prices(1_300m)).Calls);
    }
}
