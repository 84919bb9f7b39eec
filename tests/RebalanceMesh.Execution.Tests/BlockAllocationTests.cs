using FsCheck;
using FsCheck.Fluent;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Blocks;
using RebalanceMesh.Execution.Core.Runs;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// Block orders in Execution.Core: the largest-remainder split (hand-computed), a block's cross and allocation
/// (hand-computed), and the allocation's invariants property-tested over random blocks on the simulated venues' books.
/// </summary>
public class BlockAllocationTests
{
    /// <summary>One venue, its touch alone, 10 bps taker fee, no participation cap: fills are easy to compute by hand.</summary>
    private static readonly VenueSpec[] OneVenue = [new("V", TakerFeeBps: 10, MakerFeeBps: 0)];

    [Fact]
    public void Largest_remainder_rounds_down_then_hands_the_rest_to_the_largest_remainders()
    {
        // 7 lots over 5:3:2 — exact 3.5, 2.1, 1.4; rounded down 3, 2, 1; the one left goes to the largest remainder (0.5).
        Assert.Equal([4m, 2m, 1m], LargestRemainder.Split([5m, 3m, 2m], 7m, 1m, [5m, 3m, 2m], ["a", "b", "c"]));

        // Equal remainders: the larger weight first, then the id.
        Assert.Equal([2m, 1m, 1m], LargestRemainder.Split([1m, 1m, 1m], 4m, 1m, null, ["a", "b", "c"]));
        Assert.Equal([1m, 2m, 1m], LargestRemainder.Split([1m, 1m, 1m], 4m, 1m, null, ["b", "a", "c"]));

        // 7.5 units over two equal shares: 3 each, then a whole unit to the first id and the half left to the second.
        Assert.Equal([4m, 3.5m], LargestRemainder.Split([1m, 1m], 7.5m, 1m, [5m, 5m], ["a", "b"]));

        // Lots of 10 over 25:15 of 30: exact 18.75 and 11.25 → 10 and 10, the 10 left to the larger remainder (8.75).
        Assert.Equal([20m, 10m], LargestRemainder.Split([25m, 15m], 30m, 10m, [30m, 20m], ["a", "b"]));

        // A cap holds: the share that would take the leftover is full, so the next one gets it.
        Assert.Equal([2m, 1m], LargestRemainder.Split([2m, 1m], 3m, 1m, [2m, 1m], ["a", "b"]));
        Assert.Throws<ArgumentOutOfRangeException>(() => LargestRemainder.Split([1m], 2m, 1m, [1m], ["a"]));
    }

    [Fact]
    public void A_block_crosses_buys_against_sells_at_the_mid_and_allocates_the_venue_fills_at_one_average_price()
    {
        // Buyers of 100, 50 and 50 and a seller of 120, all allowing crosses; the mid of 99/101 is 100.
        var host = new ScriptedHost { Venues = OneVenue };
        host.Quotes["X"] = [new VenueQuote("V", 99m, 101m, 1_000m, 1_000m)];
        var block = new BlockRun(new BlockOrder("blk-1", "X", 1m,
        [
            Member("b1", OrderSide.Buy, 100m, cap: 110m), Member("b2", OrderSide.Buy, 50m, cap: 110m),
            Member("b3", OrderSide.Buy, 50m, cap: 110m), Member("s1", OrderSide.Sell, 120m, cap: 90m),
        ]));
        var outcome = host.Drive(block);

        // 120 cross at 100, split 100:50:50 over the buyers (60, 30, 30); the 80 left buy at 101 with a fee of 8.08,
        // allocated 40, 20, 20 with fees 4.04, 2.02, 2.02.
        Assert.Equal(120m, outcome.Crossed);
        Assert.Equal(100m, outcome.CrossPrice);
        var side = Assert.Single(outcome.Sides);
        Assert.Equal((OrderSide.Buy, 80m, 80m, 101m, 8.08m), (side.Side, side.Quantity, side.Filled, side.AveragePrice, side.Fees));
        Assert.Equal(
            [("b1", 60m, 40m, 4.04m), ("b2", 30m, 20m, 2.02m), ("b3", 30m, 20m, 2.02m), ("s1", 120m, 0m, 0m)],
            outcome.Shares.Select(s => (s.MemberId, s.Crossed, s.Filled, s.Fee)));
        Assert.All(outcome.Shares.Where(s => s.Filled > 0), s => Assert.Equal(101m, s.AveragePrice));
        Assert.All(outcome.Shares, s => Assert.Equal(100m, s.CrossPrice));
    }

    [Fact]
    public void A_block_the_venues_fill_in_part_is_allocated_pro_rata_in_whole_lots()
    {
        // Buyers of 5, 3 and 2 that do not cross; the venue shows 7: they get 4, 2 and 1 (largest remainder), fees
        // 0.707 split the same way.
        var host = new ScriptedHost { Venues = OneVenue };
        host.Quotes["X"] = [new VenueQuote("V", 99m, 101m, 7m, 7m)];
        var outcome = host.Drive(new BlockRun(new BlockOrder("blk-2", "X", 1m,
            [Member("a", OrderSide.Buy, 5m, 110m, cross: false), Member("b", OrderSide.Buy, 3m, 110m, cross: false), Member("c", OrderSide.Buy, 2m, 110m, cross: false)])));

        Assert.Equal(0m, outcome.Crossed);
        Assert.Equal([4m, 2m, 1m], outcome.Shares.Select(s => s.Filled));
        Assert.Equal([0.404m, 0.202m, 0.101m], outcome.Shares.Select(s => s.Fee));
    }

    [Fact]
    public void A_member_crosses_only_within_its_price_cap()
    {
        // The seller's cap (102) is above the mid (100): it does not cross, and sells at the venue within its cap —
        // the bid (99) is below it, so nothing fills; the buyer gets nothing from the cross and buys at the venue.
        var host = new ScriptedHost { Venues = OneVenue };
        host.Quotes["X"] = [new VenueQuote("V", 99m, 101m, 1_000m, 1_000m)];
        var outcome = host.Drive(new BlockRun(new BlockOrder("blk-3", "X", 1m, [Member("b", OrderSide.Buy, 10m, 110m), Member("s", OrderSide.Sell, 10m, 102m)])));

        Assert.Equal(0m, outcome.Crossed);
        Assert.Equal([(OrderSide.Sell, 0m), (OrderSide.Buy, 10m)], outcome.Sides.Select(s => (s.Side, s.Filled)));
    }

    [Fact]
    public void A_purchase_the_cash_pays_for_only_nearer_the_market_joins_with_a_tighter_cap_not_a_smaller_slice()
    {
        // 20 units: at the limit (100.5, 50 bps above the mid) with the 10 bps fee they cost 2,012.01; the cash is 2,010.
        // At the ask (100.1, where its own routing would fill) they cost 2,004.00: the slice keeps its 20 units and its
        // cap comes down to the price the cash pays for.
        var host = new ScriptedHost { Venues = OneVenue };
        host.Quotes["X"] = [new VenueQuote("V", 99.9m, 100.1m, 1_000m, 1_000m)];
        var run = new PlanRun(new RunPlan("plan-t", "p", [new RunLeg("L1", 1, LegAction.Trade, "X", OrderSide.Buy, 20m, 100m)], CashBudget: 2_010m, MaxSlippageBps: 50, new SliceStyle(), BlockTrading.Block));
        host.Drive(run);

        var request = Assert.Single(host.Log.Select(l => l.Command).OfType<JoinBlock>().Single().Requests);
        Assert.Equal(20m, request.Quantity);
        Assert.Equal(decimal.Round((2_010m - PlanCash.RoundingReserve) / 20m / 1.001m, 8, MidpointRounding.ToZero), request.PriceCap);
        Assert.InRange(request.PriceCap, 100.1m, 100.5m);
        Assert.Equal((20m, RunStatus.Filled), (run.Legs[0].Filled, run.Legs[0].Status));
        Assert.True(run.CashLeft >= 0);
    }

    [Fact]
    public void A_plan_whose_legs_join_blocks_asks_for_its_slices_within_its_cash_and_books_its_shares()
    {
        // Cash for about 9 units even at the ask (100.1, the worst price its own routing walks) with the dearest fee:
        // the cap comes down to that price and the request is cut to what the cash pays for there; the leg says so.
        var host = new ScriptedHost { Venues = OneVenue };
        host.Quotes["X"] = [new VenueQuote("V", 99.9m, 100.1m, 1_000m, 1_000m)];
        var plan = new RunPlan("plan-b", "p", [new RunLeg("L1", 1, LegAction.Trade, "X", OrderSide.Buy, 20m, 100m)], CashBudget: 910m, MaxSlippageBps: 50, new SliceStyle(), BlockTrading.BlockAndCross);
        var run = new PlanRun(plan);
        host.Drive(run);

        var join = host.Log.Select(l => l.Command).OfType<JoinBlock>().Single();
        var request = Assert.Single(join.Requests);
        Assert.Equal(("plan-b:L1", 100.1m, true), (request.MemberId, request.PriceCap, request.Cross));
        Assert.Equal(PlanCash.Affordable(910m, PlanCash.UnitCost(OrderSide.Buy, false, 100.1m, 10)), request.Quantity);
        Assert.Equal(request.Quantity, run.Legs[0].Filled);
        Assert.Equal(100.1m, run.Legs[0].AveragePrice);
        Assert.True(run.CashLeft >= 0);
        Assert.Contains("stopped by the plan's cash", run.Legs[0].Message);
        Assert.DoesNotContain(host.ClientOrderIds, id => id.StartsWith("plan-b", StringComparison.Ordinal));
    }

    [Fact]
    public void A_slice_its_block_filled_short_joins_another_on_a_fresh_market_up_to_three_blocks()
    {
        // The first block fills 4 of 10 (the market moved past its cap), the second 5 of the 6 left, the third none:
        // the leg asks again twice, reading the market before each, and then stops saying so.
        var host = new ScriptedHost { Venues = OneVenue };
        host.Quotes["X"] = [new VenueQuote("V", 99.9m, 100.1m, 1_000m, 1_000m)];
        var fills = new Queue<decimal>([4m, 5m, 0m]);
        host.JoinBlocks = join => new BlockJoined(join.Requests.Select(r => new MemberShare("blk-" + r.MemberId, r.MemberId, 0m, 0m, fills.Dequeue(), 100.1m, 0m)).ToArray());
        var run = new PlanRun(new RunPlan("plan-r", "p", [new RunLeg("L1", 1, LegAction.Trade, "X", OrderSide.Buy, 10m, 100m)], CashBudget: null, MaxSlippageBps: 0, new SliceStyle(), BlockTrading.Block));
        host.Drive(run);

        var joins = host.Log.Select(l => l.Command).Where(c => c is JoinBlock or ReadMarkets).ToArray();
        Assert.Equal(["ReadMarkets", "JoinBlock", "ReadMarkets", "JoinBlock", "ReadMarkets", "JoinBlock"], joins.Select(c => c.GetType().Name));
        Assert.Equal([("plan-r:L1", 10m), ("plan-r:L1-j2", 6m), ("plan-r:L1-j3", 1m)], joins.OfType<JoinBlock>().Select(j => (j.Requests[0].MemberId, j.Requests[0].Quantity)));
        Assert.Equal((9m, RunStatus.PartiallyFilled), (run.Legs[0].Filled, run.Legs[0].Status));
        Assert.Contains("after 3 blocks", run.Legs[0].Message);
    }

    [Fact]
    public void A_plan_trading_in_blocks_never_takes_its_cash_below_zero()
    {
        // Random purchases and sales in blocks on the simulated venues' books, random cash and limits: whatever the
        // caps and cuts, the plan's cash after its shares is never negative and no leg fills beyond its quantity.
        var cases = from mid in Gen.Choose(1_000, 50_000).Select(m => m / 100m)
                    from size in Gen.Choose(10, 4_000).Select(x => (decimal)x)
                    from buy in Gen.Choose(1, 400).Select(q => (decimal)q)
                    from sell in Gen.Choose(0, 400).Select(q => (decimal)q)
                    from cash in Gen.Choose(0, 200_000).Select(c => (decimal)c)
                    from limit in Gen.Elements(0, 0, 10, 50, 200)
                    select (mid, size, buy, sell, cash, limit);
        Prop.ForAll(cases.ToArbitrary(), c =>
        {
            var host = new ScriptedHost();
            host.Quotes["X"] = host.Venues.Select(v => new VenueQuote(v.VenueId, c.mid * 0.9995m, c.mid * 1.0005m, c.size, c.size)).ToArray();
            var legs = new List<RunLeg> { new("B", 2, LegAction.Trade, "X", OrderSide.Buy, c.buy, c.mid) };
            if (c.sell > 0)
            {
                legs.Insert(0, new RunLeg("S", 1, LegAction.Trade, "X", OrderSide.Sell, c.sell, c.mid));
            }

            var run = new PlanRun(new RunPlan("plan-c", "p", legs, c.cash, c.limit, new SliceStyle(), BlockTrading.BlockAndCross));
            host.Drive(run);
            return (run.CashLeft >= 0 && run.Legs.All(l => l.Filled <= l.Quantity)).Label($"cash left {run.CashLeft}, {string.Join(", ", run.Legs.Select(l => $"{l.Leg.LegId} {l.Filled}/{l.Quantity}"))}");
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    /// <summary>A random block: members (side, whole lots, cap around the mid, cross or not, a buyer's cash) and books.</summary>
    public sealed record BlockCase(decimal Mid, decimal Lot, decimal[] Sizes, (bool Buy, int Lots, int CapBps, bool Cross, int Cash)[] Members);

    private static readonly Gen<BlockCase> Cases =
        from mid in Gen.Choose(1_000, 100_000).Select(m => m / 100m)
        from lot in Gen.Elements(1m, 0.5m, 10m, 0.001m)
        from sizes in Gen.ArrayOf(Gen.Choose(0, 4_000).Select(s => s / 4m), 3)
        from count in Gen.Choose(1, 25)
        from members in Gen.ArrayOf(
            from buy in Gen.Elements(true, false)
            from lots in Gen.Choose(1, 60)
            from capBps in Gen.Choose(-30, 80)
            from cross in Gen.Elements(true, true, false)
            from cash in Gen.Choose(0, 400_000)
            select (buy, lots, capBps, cross, cash), count)
        select new BlockCase(mid, lot, sizes, members);

    [Fact]
    public void Allocations_sum_to_the_fills_stay_within_a_lot_of_pro_rata_at_one_price_never_overdraw_cash_and_crosses_net_to_zero()
    {
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var host = new ScriptedHost();
            host.Quotes["X"] = host.Venues.Select((v, i) => new VenueQuote(v.VenueId, c.Mid * 0.9995m, c.Mid * 1.0005m, c.Sizes[i], c.Sizes[i])).ToArray();
            var maxFee = host.Venues.Max(v => v.TakerFeeBps);
            var members = c.Members.Select((m, i) =>
            {
                var side = m.Buy ? OrderSide.Buy : OrderSide.Sell;
                var cap = decimal.Round(c.Mid * (1 + ((m.Buy ? 1 : -1) * m.CapBps / 10_000m)), 6);
                var quantity = m.Lots * c.Lot;
                if (m.Buy)
                {
                    // As a plan asks: no more than its cash pays for at its cap with the dearest fee.
                    quantity = Math.Min(quantity, PlanCash.Affordable(m.Cash, PlanCash.UnitCost(side, false, cap, maxFee)));
                }

                return new BlockMember("plan-" + i, "p" + i, new BlockRequest("L", $"m{i:00}", "X", side, quantity, c.Lot, cap, m.Cross));
            }).Where(m => m.Request.Quantity > 0).ToArray();
            if (members.Length == 0)
            {
                return true.ToProperty();
            }

            var order = new BlockOrder("blk", "X", c.Lot, members);
            var outcome = host.Drive(new BlockRun(order));
            var again = new ScriptedHost { Quotes = { ["X"] = host.Quotes["X"] } }.Drive(new BlockRun(order));
            var shares = outcome.Shares;

            var crossNets = shares.Where((s, i) => members[i].Request.Side == OrderSide.Buy).Sum(s => s.Crossed) == shares.Where((s, i) => members[i].Request.Side == OrderSide.Sell).Sum(s => s.Crossed);
            var crossWithinCaps = shares.Select((s, i) => s.Crossed == 0 || (members[i].Request.Cross && (members[i].Request.Side == OrderSide.Buy ? members[i].Request.PriceCap >= s.CrossPrice : members[i].Request.PriceCap <= s.CrossPrice))).All(x => x);
            var withinRequests = shares.Select((s, i) => s.Crossed + s.Filled <= members[i].Request.Quantity).All(x => x);
            var sidesOk = outcome.Sides.All(side =>
            {
                var idx = Enumerable.Range(0, members.Length).Where(i => members[i].Request.Side == side.Side && members[i].Request.Quantity > shares[i].Crossed).ToArray();
                var residual = idx.Sum(i => members[i].Request.Quantity - shares[i].Crossed);
                var sums = idx.Sum(i => shares[i].Filled) == side.Filled && idx.Sum(i => shares[i].Fee) == side.Fees;
                var proRata = idx.All(i => Math.Abs(shares[i].Filled - (side.Filled * (members[i].Request.Quantity - shares[i].Crossed) / residual)) <= c.Lot);
                var onePrice = idx.All(i => shares[i].Filled == 0 || shares[i].AveragePrice == side.AveragePrice);
                var wholeLots = side.Filled % c.Lot != 0 || idx.Any(i => members[i].Request.Quantity % c.Lot != 0) || idx.All(i => shares[i].Filled % c.Lot == 0);
                return sums && proRata && onePrice && wholeLots;
            });
            var cashOk = shares.Select((s, i) => (Share: s, Member: c.Members[int.Parse(members[i].MemberId[1..], System.Globalization.CultureInfo.InvariantCulture)], Request: members[i].Request))
                .Where(x => x.Request.Side == OrderSide.Buy)
                .All(x => x.Member.Cash - (x.Share.Crossed * x.Share.CrossPrice) - (x.Share.Filled * x.Share.AveragePrice) - x.Share.Fee >= 0);
            var deterministic = outcome.Shares.SequenceEqual(again.Shares);
            return (crossNets && crossWithinCaps && withinRequests && sidesOk && cashOk && deterministic)
                .Label($"cross {crossNets}, caps {crossWithinCaps}, requests {withinRequests}, sides {sidesOk}, cash {cashOk}, deterministic {deterministic}");
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));
    }

    private static BlockMember Member(string id, OrderSide side, decimal quantity, decimal cap, bool cross = true) =>
        new("plan-" + id, "p-" + id, new BlockRequest("L", id, "X", side, quantity, 1m, cap, cross));
}
