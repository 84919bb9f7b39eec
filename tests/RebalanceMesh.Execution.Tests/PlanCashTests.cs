using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution.Tests;

public class PlanCashTests
{
    [Fact]
    public void Cash_left_counts_purchases_sales_margined_fees_and_other_legs_in_proportion()
    {
        // 10,000 to start. Bought 20 at 101 with 2.02 fees: −2,022.02. Sold 5 at 99 with 0.495: +494.505. A perpetual
        // traded with 1.5 fees: −1.5 (its notional never changes hands). A repayment of 3,000 cash that repaid 1,200
        // (capped to what its sale raised) moves −1,200. A borrowing not done yet moves nothing.
        LegCash[] legs =
        [
            new(OrderSide.Buy, false, 30m, 0m, 20m, 101m, 2.02m),
            new(OrderSide.Sell, false, 5m, 0m, 5m, 99m, 0.495m),
            new(OrderSide.Buy, true, 2m, 0m, 2m, 15_000m, 1.5m),
            new(null, false, 3_000m, -3_000m, 1_200m, 1m, 0m),
            new(null, false, 500m, 500m, 0m, 0m, 0m),
        ];
        Assert.Equal(10_000m - 2_022.02m + 494.505m - 1.5m - 1_200m, PlanCash.Remaining(10_000m, legs));
    }

    [Fact]
    public void A_routing_is_cut_child_by_child_to_what_the_cash_pays_at_each_limit_and_fee()
    {
        // Cash 1,500. A: 10 at worst 100 with 10 bps → 100.1 a unit, all 10 paid: 1,001 (499 left). B: 8 at worst
        // 100.5 with 2 bps → 100.5201 a unit: (499 − 0.0000001) / 100.5201 = 4.96418129 (8 decimals, down).
        // C, after: nothing left, dropped.
        VenueSpec[] venues = [new("A", 10, 0), new("B", 2, 0), new("C", 0, 0)];
        ChildOrder[] children =
        [
            new("p:L1:1", "A", 10m, 100m, 100.1m, 100m, 100m),
            new("p:L1:2", "B", 8m, 100.4m, 100.42m, 100.5m, 100.3m),
            new("p:L1:3", "C", 3m, 100.6m, 100.6m, 100.6m, 100.6m),
        ];
        var capped = PlanCash.Cap(children, OrderSide.Buy, margined: false, venues, 1_500m);
        Assert.Equal([("A", 10m), ("B", 4.96418129m)], capped.Select(c => (c.VenueId, c.Quantity)));
        Assert.Equal(children[0], capped[0]); // untouched children are the routing's own
        Assert.True(capped.Sum(c => c.Quantity * c.WorstPrice * (1 + (decimal)venues.First(v => v.VenueId == c.VenueId).TakerFeeBps / 10_000m)) <= 1_500m);

        // Enough cash: the routing as it was. Sales are never cut (they raise cash). None: nothing is sent.
        Assert.Equal(children, PlanCash.Cap(children, OrderSide.Buy, false, venues, 1_000_000m));
        Assert.Equal(children, PlanCash.Cap(children, OrderSide.Sell, false, venues, 0m));
        Assert.Empty(PlanCash.Cap(children, OrderSide.Buy, false, venues, -5m));
    }

    [Fact]
    public void A_margined_contract_needs_cash_for_its_fee_only_on_either_side()
    {
        // 2 perpetuals at 15,000 with 10 bps: 15 a unit of fee. 20 of cash pays 1.33333332 of them (the 0.0000001 reserve kept back).
        Assert.Equal(15m, PlanCash.UnitCost(OrderSide.Sell, margined: true, 15_000m, 10));
        Assert.Equal(1.33333332m, PlanCash.Affordable(20m, PlanCash.UnitCost(OrderSide.Buy, true, 15_000m, 10)));
        Assert.Equal(0m, PlanCash.UnitCost(OrderSide.Sell, margined: false, 100m, 10));
        Assert.Equal(decimal.MaxValue, PlanCash.Affordable(0m, 0m));
        Assert.Equal(0m, PlanCash.Affordable(0.00000001m, 100m));
    }
}
