using FsCheck;
using FsCheck.Fluent;
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

/// <summary>LOT_ROUNDING_OPTIMAL's stated bound: every trade within one lot of the affordable continuous plan.</summary>
public class LotRounderBoundTests
{
    [Fact]
    public void A_buy_cash_cannot_pay_in_full_is_rounded_within_one_lot_of_what_cash_pays()
    {
        // The outside client saw 588 chosen against an unrounded 600 (lot 1): cash paid only for 588.7. The continuous
        // plan is now made affordable first (588.7), and the rounding stays within one lot of it.
        var result = LotRounder.Round([new RoundingItem("A", 10m, 1m, 600m, 0m, 0m)], 5_887m);
        Assert.Equal(588.7m, decimal.Round(result.Continuous!["A"], 20));
        Assert.Equal(588m, result.Changes["A"]);
        Assert.Equal(7m, result.CashAfter);
    }

    public sealed record Case(decimal[] Prices, decimal[] Lots, decimal[] Desired, decimal MinNotional, decimal[] Costs, decimal Cash);

    private static readonly Gen<Case> Cases =
        from n in Gen.Choose(1, 6)
        from prices in Gen.ArrayOf(Gen.Choose(1, 100_000).Select(p => p / 100m), n)
        from lots in Gen.ArrayOf(Gen.Elements(1m, 5m, 10m, 0.5m, 0.01m), n)
        from desired in Gen.ArrayOf(Gen.Choose(-100_000, 100_000).Select(d => d / 100m), n)
        from minNotional in Gen.Elements(0m, 100m, 1_000m)
        from costs in Gen.ArrayOf(Gen.Elements(0m, 0.0005m, 0.01m), n)
        from cash in Gen.Choose(0, 2_000_000).Select(c => (decimal)c)
        select new Case(prices, lots, desired, minNotional, costs, cash);

    [Fact]
    public void Each_trade_is_the_lot_below_or_above_its_affordable_size_and_cash_stays_non_negative()
    {
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var items = c.Prices.Select((p, i) => new RoundingItem($"I{i}", p, c.Lots[i], c.Desired[i], c.MinNotional, c.Costs[i])).ToArray();
            var result = LotRounder.Round(items, c.Cash, TimeSpan.FromSeconds(5));
            return result.CashAfter >= 0 && items.All(item =>
            {
                var change = result.Changes[item.InstrumentId];
                var continuous = result.Continuous![item.InstrumentId];
                var belowUnderMinimum = decimal.Truncate(Math.Abs(continuous) / item.Lot) * item.Lot * item.Price < item.MinNotional;
                return change % item.Lot == 0
                    && (change == 0 || Math.Sign(change) == Math.Sign(continuous))
                    && (change == 0 || Math.Abs(change * item.Price) >= item.MinNotional)
                    && (Math.Abs(change - continuous) < item.Lot || (change == 0 && belowUnderMinimum))
                    && Math.Abs(continuous) <= Math.Abs(item.DesiredChange);
            });
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
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
        TargetPolicy Policy(bool optimal) => TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.87, ["B"] = 0.1295 },
            TradeRules.Default with { OptimalLotRounding = optimal }, new DriftBands(0.05));
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
