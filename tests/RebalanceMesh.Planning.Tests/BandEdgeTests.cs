using FsCheck;
using FsCheck.Fluent;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Band-edge rebalancing ends inside the band: the outside client's case (a sale of 60 D left D at 15.015 % against a
/// 15 % edge, for good) and a property over random portfolios.
/// </summary>
public class BandEdgeTests
{
    private static readonly Dictionary<string, decimal> Mids = new() { ["A"] = 100m, ["B"] = 50m, ["C"] = 20m, ["D"] = 33m };

    private static TargetPolicy Policy(bool optimal = false, double costBps = 0, decimal minNotional = 0m) =>
        TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.30, ["B"] = 0.30, ["C"] = 0.20, ["D"] = 0.10 },
            new TradeRules(RebalanceTarget.BandEdge, minNotional, new Dictionary<string, decimal>(), costBps, OptimalLotRounding: optimal), new DriftBands(0.05));

    private static MarkedPortfolio Marked(TargetPolicy policy, decimal cash, decimal a, decimal b, decimal c, decimal d, IReadOnlyDictionary<string, decimal>? mids = null) =>
        PortfolioMarking.Mark(new PortfolioSnapshot("p", [new("A", a), new("B", b), new("C", c), new("D", d)], cash, 1), policy, mids ?? Mids);

    /// <summary>The portfolio after the legs at their reference prices and estimated costs, marked again.</summary>
    private static MarkedPortfolio After(MarkedPortfolio before, RebalanceProposal proposal, TargetPolicy policy, IReadOnlyDictionary<string, decimal> mids)
    {
        var snapshot = new PortfolioSnapshot("p", before.Positions.Select(p => new Holding(p.InstrumentId, p.Quantity)).ToArray(), before.Cash, 1);
        foreach (var leg in proposal.Legs)
        {
            snapshot = PortfolioLedger.ApplyFill(snapshot, leg.InstrumentId, leg.Side, leg.Quantity, leg.ReferencePrice, leg.EstimatedCost);
        }

        return PortfolioMarking.Mark(snapshot, policy, mids);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_outside_clients_portfolio_ends_inside_its_bands(bool optimalRounding)
    {
        // Net value 100,000: A 33 %, B 22 %, C 21 %, D 16.995 %. B is below 25 % and D above 15 %.
        // D: to 15 % is a sale of 60.45; 60 leaves 15,015 (15.015 %, still outside), 61 leaves 14,982 (14.982 %).
        // B: to 25 % is a purchase of exactly 60 (25,000: on the edge, inside).
        var policy = Policy(optimalRounding);
        var marked = Marked(policy, 7_005m, 330m, 440m, 1_050m, 515m);
        Assert.Equal(100_000m, marked.NetValue);
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        Assert.Equal([("D", TradeSide.Sell, 61m), ("B", TradeSide.Buy, 60m)], proposal.Legs.Select(l => (l.InstrumentId, l.Side, l.Quantity)));
        Assert.Equal(0.14982, proposal.Legs[0].WeightAfter, 12);
        Assert.False(DriftEvaluator.Evaluate(After(marked, proposal, policy, Mids), policy).Breached);
    }

    [Fact]
    public void A_purchase_to_the_lower_edge_rounds_up_to_the_lot_that_reaches_it()
    {
        // B at 33 (667 units = 22,011, 22.011 %): to 25 % is 90.58 units; 90 reach 24,981 (24.981 %, outside), 91 reach
        // 25,014 (25.014 %). A (33 %), C (21 %) and D (450 units, 14.85 %) are inside their bands; net value 100,000.
        var mids = new Dictionary<string, decimal>(Mids) { ["B"] = 33m };
        var policy = Policy();
        var marked = Marked(policy, 100_000m - 33_000m - 22_011m - 21_000m - 14_850m, 330m, 667m, 1_050m, 450m, mids);
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        var buy = Assert.Single(proposal.Legs);
        Assert.Equal(("B", TradeSide.Buy, 91m), (buy.InstrumentId, buy.Side, buy.Quantity));
        Assert.Equal(0.25014, buy.WeightAfter, 12);
    }

    [Fact]
    public void Costs_and_the_minimum_notional_are_met_without_leaving_the_band()
    {
        // 25 bps of cost and a 5,000 minimum trade: D's sale grows to the minimum (152 units, 5,016) — still inside,
        // since it stays above the lower edge of 5 % — and both positions end inside their bands after the costs.
        var policy = Policy(costBps: 25, minNotional: 5_000m);
        var marked = Marked(policy, 7_005m, 330m, 440m, 1_050m, 515m);
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        Assert.Equal(("D", 152m), (proposal.Legs[0].InstrumentId, proposal.Legs[0].Quantity));
        Assert.False(DriftEvaluator.Evaluate(After(marked, proposal, policy, Mids), policy).Breached);
    }

    [Fact]
    public void A_breach_no_whole_lot_can_cure_plans_nothing_for_it()
    {
        // D trades in lots of 500 (16,500 a lot): from 16.995 % any sale lands at 0.495 % or below, past the 5 % lower edge.
        var policy = Policy() with { Trading = Policy().Trading with { LotSizes = new Dictionary<string, decimal> { ["D"] = 500m } } };
        var marked = Marked(policy, 7_005m, 330m, 440m, 1_050m, 515m);
        Assert.Null(RebalancePlanner.BandEdgeTrade(marked.Find("D")!, policy, (marked.NetValue, marked.NetValue)));
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        Assert.DoesNotContain(proposal.Legs, l => l.InstrumentId == "D");
    }

    /// <summary>A random breached portfolio: 2–5 instruments, prices, holdings, lots, band, minimum notional; cash plenty.</summary>
    public sealed record Case(decimal[] Prices, decimal[] Held, double[] Targets, decimal[] Lots, double Band, decimal MinNotional, bool Optimal);

    private static readonly Gen<Case> Cases =
        from n in Gen.Choose(2, 5)
        from prices in Gen.ArrayOf(Gen.Choose(100, 50_000).Select(p => p / 100m), n)
        from held in Gen.ArrayOf(Gen.Choose(0, 5_000).Select(q => (decimal)q), n)
        from raw in Gen.ArrayOf(Gen.Choose(1, 100), n)
        from lots in Gen.ArrayOf(Gen.Elements(1m, 5m, 10m, 0.5m), n)
        from band in Gen.Elements(0.02, 0.05, 0.1)
        from minNotional in Gen.Elements(0m, 100m, 1_000m)
        from optimal in Gen.Elements(false, true)
        let total = raw.Sum()
        select new Case(prices, held, raw.Select(r => 0.9 * r / total).ToArray(), lots, band, minNotional, optimal);

    [Fact]
    public void Every_breached_position_a_whole_lot_can_cure_ends_inside_its_band()
    {
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var ids = Enumerable.Range(0, c.Prices.Length).Select(i => $"I{i}").ToArray();
            var mids = ids.Select((id, i) => (id, c.Prices[i])).ToDictionary(x => x.id, x => x.Item2);
            var policy = TargetPolicy.Of(ids.Select((id, i) => (id, c.Targets[i])).ToDictionary(x => x.id, x => x.Item2),
                new TradeRules(RebalanceTarget.BandEdge, c.MinNotional, ids.Select((id, i) => (id, c.Lots[i])).ToDictionary(x => x.id, x => x.Item2), 0, OptimalLotRounding: c.Optimal),
                new DriftBands(c.Band));
            var invested = ids.Select((id, i) => c.Held[i] * c.Prices[i]).Sum();
            var snapshot = new PortfolioSnapshot("p", ids.Select((id, i) => new Holding(id, c.Held[i])).ToArray(), invested + 1_000_000m, 1); // cash never binds
            var marked = PortfolioMarking.Mark(snapshot, policy, mids);
            var before = DriftEvaluator.Evaluate(marked, policy);
            var proposal = RebalancePlanner.Propose(marked, policy, force: false);
            var after = DriftEvaluator.Evaluate(After(marked, proposal, policy, mids), policy);
            return before.Reasons.Where(r => r.Breached).All(r =>
                RebalancePlanner.BandEdgeTrade(marked.Find(r.InstrumentId)!, policy, (marked.NetValue, marked.NetValue)) is null
                || !after.Reasons.Single(a => a.InstrumentId == r.InstrumentId && a.Rule == r.Rule).Breached);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }
}
