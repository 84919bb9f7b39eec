using RebalanceMesh.Domain;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

public class PlannerTests
{
    private static readonly Dictionary<string, decimal> Prices = new() { ["A"] = 100m, ["B"] = 50m, ["C"] = 20m };

    private static TargetPolicy Policy(double absolute = 0.05, double relative = 0, double total = 0, RebalanceTarget target = RebalanceTarget.Target,
        decimal minNotional = 0, double costBps = 0, Dictionary<string, decimal>? lots = null) =>
        TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.3, ["C"] = 0.2 }, new TradeRules(target, minNotional, lots ?? [], costBps),
            new DriftBands(absolute, relative, total));

    private static PortfolioSnapshot Portfolio(decimal a, decimal b, decimal c, decimal cash) =>
        new("p", new[] { new Holding("A", a), new Holding("B", b), new Holding("C", c) }.Where(h => h.Quantity != 0).ToArray(), cash, 1);

    [Fact]
    public void Marks_weights_by_hand()
    {
        // A 70×100 = 7000, B 40×50 = 2000, C 50×20 = 1000, cash 0 → 70 %, 20 %, 10 %.
        var marked = PortfolioMarking.Mark(Portfolio(70, 40, 50, 0), Policy(), Prices);
        Assert.Equal(10_000m, marked.NetValue);
        Assert.Equal([0.7, 0.2, 0.1], marked.Positions.Select(p => p.Weight));
    }

    [Fact]
    public void Missing_prices_are_a_failed_precondition()
    {
        var ex = Assert.Throws<DomainException>(() => PortfolioMarking.Mark(Portfolio(1, 1, 1, 0), Policy(), new Dictionary<string, decimal> { ["A"] = 1m }));
        Assert.Equal(DomainErrorKind.FailedPrecondition, ex.Kind);
    }

    [Fact]
    public void Evaluation_records_every_rule_with_measured_value_and_threshold()
    {
        var marked = PortfolioMarking.Mark(Portfolio(70, 40, 50, 0), Policy(absolute: 0.05, relative: 0.25, total: 0.1), Prices);
        var evaluation = DriftEvaluator.Evaluate(marked, Policy(absolute: 0.05, relative: 0.25, total: 0.1));
        var a = evaluation.Reasons.Single(r => r.Rule == DriftBands.AbsoluteRule && r.InstrumentId == "A");
        Assert.Equal(0.2, a.Measured, 12);
        Assert.Equal(0.05, a.Threshold);
        Assert.True(a.Breached);
        var cRelative = evaluation.Reasons.Single(r => r.Rule == DriftBands.RelativeRule && r.InstrumentId == "C");
        Assert.Equal(0.05, cRelative.Threshold, 12); // 25 % of the 20 % target
        Assert.True(cRelative.Breached);             // drift 10 pp
        // Total drift: (|0.7−0.5| + |0.2−0.3| + |0.1−0.2| + |0 − 0|) / 2 = 0.2.
        Assert.Equal(0.2, evaluation.TotalDrift, 12);
        Assert.True(evaluation.Reasons.Single(r => r.Rule == DriftBands.TotalDriftRule).Breached);
    }

    [Fact]
    public void Inside_the_bands_nothing_trades_unless_forced()
    {
        var marked = PortfolioMarking.Mark(Portfolio(52, 58, 100, 0), Policy(), Prices); // 52 %, 29 %, 20 %… within ±5 pp
        Assert.False(RebalancePlanner.Propose(marked, Policy(), force: false).HasTrades);
        Assert.True(RebalancePlanner.Propose(marked, Policy(), force: true).HasTrades);
    }

    [Fact]
    public void Trades_to_target_with_sells_before_buys()
    {
        var marked = PortfolioMarking.Mark(Portfolio(70, 40, 50, 0), Policy(), Prices);
        var proposal = RebalancePlanner.Propose(marked, Policy(), force: false);
        // Target values 5000 / 3000 / 2000 → A −20, B +20, C +50.
        Assert.Collection(proposal.Legs,
            l => { Assert.Equal(("A", TradeSide.Sell, 20m, 1), (l.InstrumentId, l.Side, l.Quantity, l.Sequence)); },
            l => { Assert.Equal(("B", TradeSide.Buy, 20m, 2), (l.InstrumentId, l.Side, l.Quantity, l.Sequence)); },
            l => { Assert.Equal(("C", TradeSide.Buy, 50m, 3), (l.InstrumentId, l.Side, l.Quantity, l.Sequence)); });
        Assert.Equal(0m, proposal.CashAfter);
        Assert.Equal(0.4, proposal.Turnover, 12); // (2000 + 1000 + 1000) / 10000
    }

    [Fact]
    public void Band_edge_trades_only_breached_positions_to_the_nearest_edge()
    {
        var policy = Policy(absolute: 0.05, target: RebalanceTarget.BandEdge);
        var marked = PortfolioMarking.Mark(Portfolio(70, 54, 15, 0), policy, Prices); // A 70 %, B 27 %, C 3 %
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        // A breached above → the 55 % edge is a sale of exactly 15, C breached below → the 15 % edge a purchase of exactly
        // 60. Exactly on an edge the band still measures a hair over it (0.55 − 0.5 = 0.0500000000000000444 > 0.05 in
        // doubles), so each rounds one unit further toward its target: sell 16 (54 %), buy 61 (15.2 %); B inside → untouched.
        Assert.Equal([("A", TradeSide.Sell, 16m), ("C", TradeSide.Buy, 61m)], proposal.Legs.Select(l => (l.InstrumentId, l.Side, l.Quantity)));
    }

    [Fact]
    public void Lots_and_minimum_notional_are_respected()
    {
        var policy = Policy(minNotional: 1_500m, lots: new() { ["C"] = 30m });
        var marked = PortfolioMarking.Mark(Portfolio(70, 40, 50, 0), policy, Prices);
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        // A sell 20 (2000) and C buy 30 (lot 30, 600 notional, dropped by the 1500 minimum); B buy 20 = 1000 dropped.
        var leg = Assert.Single(proposal.Legs);
        Assert.Equal(("A", TradeSide.Sell, 20m), (leg.InstrumentId, leg.Side, leg.Quantity));
    }

    [Fact]
    public void Buys_are_scaled_so_cash_never_goes_negative_after_costs()
    {
        var policy = Policy(costBps: 50);
        var marked = PortfolioMarking.Mark(Portfolio(70, 40, 50, 0), policy, Prices);
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        Assert.True(proposal.CashAfter >= 0m, $"cash after {proposal.CashAfter}");
        var sequence = proposal.Legs.Select(l => l.Side).ToArray();
        Assert.True(sequence.SkipWhile(s => s == TradeSide.Sell).All(s => s == TradeSide.Buy), "sells precede buys");
    }

    [Fact]
    public void Cash_is_spent_only_as_far_as_the_worst_prices_execution_accepts()
    {
        // 10,000 of cash into A/B/C at 50/30/20 %: 50 A, 60 B and 100 C cost exactly 10,000 at the planned prices, and
        // without a slippage limit that is the plan (cash after 0). With execution accepting fills 100 bps from
        // arrival, the purchases are budgeted at 1 % dearer: 10,100 > 10,000, scaled by 10,000 / 10,100 and rounded
        // down: 49 A, 59 B, 99 C — 9,830 at planned prices, 9,928.30 at the worst accepted ones, so cash stays ≥ 0.
        var unlimited = RebalancePlanner.Propose(PortfolioMarking.Mark(Portfolio(0, 0, 0, 10_000m), Policy(), Prices), Policy(), force: true);
        Assert.Equal([50m, 60m, 100m], unlimited.Legs.Select(l => l.Quantity));
        Assert.Equal(0m, unlimited.CashAfter);

        var limited = Policy() with { Trading = TradeRules.Default with { MaxSlippageBps = 100 } };
        var proposal = RebalancePlanner.Propose(PortfolioMarking.Mark(Portfolio(0, 0, 0, 10_000m), limited, Prices), limited, force: true);
        Assert.Equal([("A", 49m), ("B", 59m), ("C", 99m)], proposal.Legs.Select(l => (l.InstrumentId, l.Quantity)));
        Assert.Equal(170m, proposal.CashAfter);
        Assert.True(10_000m - (proposal.Legs.Sum(l => l.Notional) * 1.01m) >= 0m);

        // With sales too, both at their worst accepted prices (sells 1 % cheaper, buys 1 % dearer, 50 bps costs).
        var costly = Policy(costBps: 50) with { Trading = TradeRules.Default with { EstimatedCostBps = 50, MaxSlippageBps = 100 } };
        var mixed = RebalancePlanner.Propose(PortfolioMarking.Mark(Portfolio(70, 40, 50, 0), costly, Prices), costly, force: false);
        Assert.Contains(mixed.Legs, l => l.Side == TradeSide.Sell);
        var worstCash = mixed.Legs.Sum(l => l.Side == TradeSide.Sell ? l.Notional * 0.99m : -(l.Notional * 1.01m)) - mixed.EstimatedCost;
        Assert.True(worstCash >= 0m, $"cash after at the worst accepted prices {worstCash}");
    }

    [Fact]
    public void Rounds_toward_zero_in_whole_lots()
    {
        Assert.Equal(20m, RebalancePlanner.RoundToLot(29.9m, 10m));
        Assert.Equal(-20m, RebalancePlanner.RoundToLot(-29.9m, 10m));
        Assert.Equal(0.3m, RebalancePlanner.RoundToLot(0.34m, 0.05m));
    }

    [Fact]
    public void Fills_move_positions_and_cash()
    {
        var start = Portfolio(10, 0, 0, 1_000m);
        var afterBuy = PortfolioLedger.ApplyFill(start, "B", TradeSide.Buy, 4m, 50m, 1.5m);
        Assert.Equal(4m, afterBuy.Holdings.Single(h => h.InstrumentId == "B").Quantity);
        Assert.Equal(1_000m - 200m - 1.5m, afterBuy.Cash);
        var afterSell = PortfolioLedger.ApplyFill(afterBuy, "A", TradeSide.Sell, 10m, 100m, 2m);
        Assert.DoesNotContain(afterSell.Holdings, h => h.InstrumentId == "A");
        Assert.Equal(798.5m + 1_000m - 2m, afterSell.Cash);
        Assert.Equal(102.5m, PortfolioLedger.Vwap(10m, 100m, 10m, 105m));
    }
}

public class DerivativeMarkingTests
{
    [Fact]
    public void Margined_contracts_are_worth_their_unrealised_profit_and_are_never_traded()
    {
        // 10 A at 100 (1000), short 4 perps entered at 95 now marked 100 with multiplier 2 → value −4·(200 − 190) = −40.
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 10), new Holding("A-PERP", -4, 95m)], 1_040m, 1);
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5 }, TradeRules.Default, new DriftBands(0.05));
        var marks = new Dictionary<string, InstrumentMark>
        {
            ["A"] = InstrumentMark.Spot(100m),
            ["A-PERP"] = new InstrumentMark(200m, Margined: true, Multiplier: 2m, DeltaExposure: 200),
        };
        var marked = PortfolioMarking.Mark(portfolio, policy, marks);
        Assert.Equal(-40m, marked.Find("A-PERP")!.MarketValue);
        Assert.Equal(2_000m, marked.NetValue);
        Assert.Equal(-800.0, marked.Find("A-PERP")!.DeltaExposure);
        var proposal = RebalancePlanner.Propose(marked, policy, force: true);
        Assert.DoesNotContain(proposal.Legs, l => l.InstrumentId == "A-PERP");
        Assert.Equal(0.0, DriftEvaluator.Evaluate(marked, policy).Reasons.Single(r => r.InstrumentId == "A").Measured, 12); // A is 50 % of 2000, its target
        Assert.DoesNotContain(DriftEvaluator.Evaluate(marked, policy).Reasons, r => r.InstrumentId == "A-PERP");
    }

    [Fact]
    public void No_trade_instruments_count_in_net_value_but_are_not_measured_or_traded()
    {
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 10), new Holding("OPT", 5)], 500m, 1);
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.9 }, TradeRules.Default with { NoTrade = new HashSet<string> { "OPT" } }, new DriftBands(0.01));
        var marked = PortfolioMarking.Mark(portfolio, policy, new Dictionary<string, decimal> { ["A"] = 100m, ["OPT"] = 100m });
        Assert.Equal(2_000m, marked.NetValue);
        var evaluation = DriftEvaluator.Evaluate(marked, policy);
        Assert.DoesNotContain(evaluation.Reasons, r => r.InstrumentId == "OPT");
        var proposal = RebalancePlanner.Propose(marked, policy, force: false);
        // 90 % of 2000 would be 8 more A, but the 500 of cash buys only 5: the option is not sold to pay for them.
        Assert.Equal([("A", TradeSide.Buy, 5m)], proposal.Legs.Select(l => (l.InstrumentId, l.Side, l.Quantity)));
    }

    [Fact]
    public void A_margined_position_without_entry_price_cannot_be_marked()
    {
        var portfolio = new PortfolioSnapshot("p", [new Holding("A-PERP", 1)], 0m, 1);
        var ex = Assert.Throws<RebalanceMesh.Domain.DomainException>(() => PortfolioMarking.Mark(portfolio, null, new Dictionary<string, InstrumentMark> { ["A-PERP"] = new(100m, Margined: true) }));
        Assert.Contains("entry price", ex.Message);
    }
}
