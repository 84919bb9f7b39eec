using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>Lot rounding by CP-SAT against truncation, on hand-computed cases.</summary>
public class LotRounderTests
{
    [Fact]
    public void Rounds_up_where_cash_allows_instead_of_truncating()
    {
        // 1,000 of cash; the plan wants 2.9 A at 300 (870) and 1.85 B at 70 (129.50). Truncation buys 2 A and 1 B
        // (distance 270 + 59.50 = 329.50, 330 left idle). The best whole allocation buys 3 A and 1 B: distance
        // 30 + 59.50 = 89.50, 30 of cash left.
        var result = LotRounder.Round(
            [new RoundingItem("A", 300m, 1m, 2.9m, 0m, 0m), new RoundingItem("B", 70m, 1m, 1.85m, 0m, 0m)], 1_000m);
        Assert.True(result.Optimal);
        Assert.Equal(3m, result.Changes["A"]);
        Assert.Equal(1m, result.Changes["B"]);
        Assert.Equal(89.5m, result.Deviation);
        Assert.Equal(30m, result.CashAfter);
    }

    [Fact]
    public void A_minimum_notional_drops_or_grows_a_trade_and_cash_counts_costs_and_sales()
    {
        // B's single unit (70) is under the 100 minimum and two do not fit once A takes 3: B is dropped.
        var dropped = LotRounder.Round(
            [new RoundingItem("A", 300m, 1m, 2.9m, 0m, 0m), new RoundingItem("B", 70m, 1m, 1.85m, 100m, 0m)], 1_000m);
        Assert.Equal((3m, 0m, 100m), (dropped.Changes["A"], dropped.Changes["B"], dropped.CashAfter));

        // Sell 4.6 C at 50 in lots of 2 and buy 2 A at 100, 1 % cost each way, with 3 of cash. Selling 4 raises 198,
        // enough for 1 A (101): distance 30 + 100 = 130. Selling 6 raises 297, enough for both A (202): distance
        // 70 + 0 = 70 — the better whole allocation, though neither trade alone is rounded to its nearest lot.
        var mixed = LotRounder.Round(
            [new RoundingItem("C", 50m, 2m, -4.6m, 0m, 0.01m), new RoundingItem("A", 100m, 1m, 2m, 0m, 0.01m)], 3m);
        Assert.Equal(-6m, mixed.Changes["C"]);
        Assert.Equal(2m, mixed.Changes["A"]);
        Assert.Equal(70m, mixed.Deviation);
        Assert.Equal(3m + 297m - 202m, mixed.CashAfter);
    }

    [Fact]
    public void Trades_never_change_side_or_go_past_one_lot_beyond_their_size()
    {
        var result = LotRounder.Round([new RoundingItem("A", 10m, 5m, -12m, 0m, 0m), new RoundingItem("B", 10m, 5m, 3m, 0m, 0m)], 1_000_000m);
        Assert.InRange(result.Changes["A"], -15m, 0m);
        Assert.InRange(result.Changes["B"], 0m, 5m);
        Assert.Equal(-10m, result.Changes["A"]); // −12 is nearer −10 than −15
        Assert.Equal(5m, result.Changes["B"]);   // 3 is nearer 5 than 0
    }
}

/// <summary>The planner with CP-SAT rounding switched on by the policy.</summary>
public class OptimalRoundingPlannerTests
{
    [Fact]
    public void The_policy_switches_truncation_for_the_best_whole_allocation()
    {
        // 1,000 of cash; targets 87 % A (300) and 12.95 % B (70): 2.9 A and 1.85 B unrounded.
        var prices = new Dictionary<string, decimal> { ["A"] = 300m, ["B"] = 70m };
        TargetPolicy Policy(bool optimal) => new(new Dictionary<string, double> { ["A"] = 0.87, ["B"] = 0.1295 }, 0.05, 0, 0, RebalanceTarget.Target, 0m,
            new Dictionary<string, decimal>(), 0, OptimalLotRounding: optimal);
        var marked = PortfolioMarking.Mark(new PortfolioSnapshot("p", [], 1_000m, 1), Policy(false), prices);

        var truncated = RebalancePlanner.Propose(marked, Policy(false), force: true);
        Assert.Equal([("A", 2m), ("B", 1m)], truncated.Legs.Select(l => (l.InstrumentId, l.Quantity)));
        Assert.Null(truncated.Rounding);

        var optimal = RebalancePlanner.Propose(marked, Policy(true), force: true);
        Assert.Equal([("A", 3m), ("B", 1m)], optimal.Legs.Select(l => (l.InstrumentId, l.Quantity)));
        Assert.Equal(30m, optimal.CashAfter);
        Assert.Equal(30m, optimal.Rounding!.CashAfter);
    }
}
