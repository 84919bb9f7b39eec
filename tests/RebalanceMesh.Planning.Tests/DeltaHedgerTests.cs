using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>Delta hedging with a perpetual and the margined-contract ledger, by hand.</summary>
public class DeltaHedgerTests
{
    // A at 100; its perpetual marks at 100 per unit with a multiplier of 2 (contract value 200, delta 200 of A).
    private static readonly Dictionary<string, InstrumentMark> Marks = new()
    {
        ["A"] = InstrumentMark.Spot(100m),
        ["A-PERP"] = new InstrumentMark(200m, Margined: true, Multiplier: 2m, DeltaExposure: 200, Underlying: "A"),
        ["A-PUT"] = new InstrumentMark(5m, DeltaExposure: -40, Underlying: "A"),
    };

    private static MarkedPortfolio Marked(params Holding[] holdings) =>
        PortfolioMarking.Mark(new PortfolioSnapshot("p", holdings, 1_000m, 1), null, Marks.Where(m => holdings.Any(h => h.InstrumentId == m.Key)).ToDictionary());

    [Fact]
    public void Net_delta_outside_the_tolerance_is_hedged_back_to_target_in_whole_contracts()
    {
        // 100 A (10,000 of delta) and 50 puts (−2,000): net 8,000 of delta on a net value of 11,250 → 71.1 %.
        // Neutral ± 5 %: sell 8,000 / 200 = 40 contracts.
        var marked = Marked(new Holding("A", 100m), new Holding("A-PUT", 50m));
        var (legs, reasons, _) = DeltaHedger.Plan(marked, Marks, [new HedgeRule("A", "A-PERP", 0, 0.05)], new Dictionary<string, double>());
        var leg = Assert.Single(legs);
        Assert.Equal((TradeSide.Sell, 40m, 100m, 2m), (leg.Side, leg.Quantity, leg.Price, leg.Multiplier));
        Assert.Equal(8_000.0 / 11_250, leg.DeltaBefore, 12);
        Assert.Equal(0, leg.DeltaAfter, 12);
        Assert.True(reasons.Single().Breached);
    }

    [Fact]
    public void The_other_legs_of_the_plan_count_and_a_small_gap_is_left_alone()
    {
        var marked = Marked(new Holding("A", 100m), new Holding("A-PUT", 50m));
        // The plan also sells 75 A (−7,500 of delta): net 500 → 4.4 % of net value, inside ± 5 %.
        var (legs, reasons, _) = DeltaHedger.Plan(marked, Marks, [new HedgeRule("A", "A-PERP", 0, 0.05)], new Dictionary<string, double> { ["A"] = -7_500 });
        Assert.Empty(legs);
        Assert.False(reasons.Single().Breached);
    }

    [Fact]
    public void A_leverage_band_recentres_only_outside_the_band_and_its_ripcord_is_an_emergency()
    {
        // A 2× leveraged long on A: 100 A (10,000) and 25 long perpetuals (5,000 of delta) on 11,000 of net value:
        // leverage 15,000 / 11,000 = 1.364×, outside the band [1.75, 2.25] → buy (2 × 11,000 − 15,000) / 200 = 35.
        var marked = Marked(new Holding("A", 100m), new Holding("A-PERP", 25m, 100m));
        var band = new HedgeRule("A", "A-PERP", Target: 2, Tolerance: 0, Lower: 1.75, Upper: 2.25, Ripcord: 3);
        var (legs, reasons, ripcord) = DeltaHedger.Plan(marked, Marks, [band], new Dictionary<string, double>());
        Assert.Equal((TradeSide.Buy, 35m), (legs.Single().Side, legs.Single().Quantity));
        Assert.Equal(2, legs.Single().DeltaAfter, 12);
        Assert.False(ripcord);
        Assert.True(reasons.Single().Breached);

        // Inside the band: nothing. After a rally to 3.09× (120 perpetuals: 34,000 / 11,000), past the ripcord at 3×:
        // an emergency that sells back to 2×.
        Assert.Empty(DeltaHedger.Plan(marked, Marks, [band with { Lower = 1.3 }], new Dictionary<string, double>()).Legs);
        var rallied = DeltaHedger.Plan(Marked(new Holding("A", 100m), new Holding("A-PERP", 120m, 100m)), Marks, [band], new Dictionary<string, double>());
        Assert.True(rallied.Ripcord);
        Assert.Equal((TradeSide.Sell, 60m), (rallied.Legs.Single().Side, rallied.Legs.Single().Quantity));
    }

    [Fact]
    public void Margined_fills_average_the_entry_and_realise_profit_when_reducing()
    {
        var start = new PortfolioSnapshot("p", [], 1_000m, 1);
        // Short 10 at 100, short 10 more at 110: entry 105, only fees paid.
        var opened = PortfolioLedger.ApplyMarginedFill(start, "A-PERP", TradeSide.Sell, 10m, 100m, 1m, 2m);
        var added = PortfolioLedger.ApplyMarginedFill(opened, "A-PERP", TradeSide.Sell, 10m, 110m, 1m, 2m);
        Assert.Equal((-20m, 105m), (added.Holdings.Single().Quantity, added.Holdings.Single().EntryPrice!.Value));
        Assert.Equal(998m, added.Cash);
        // Buy back 5 at 95: realise (95 − 105) × 5 × 2 × (−1) = +100.
        var reduced = PortfolioLedger.ApplyMarginedFill(added, "A-PERP", TradeSide.Buy, 5m, 95m, 1m, 2m);
        Assert.Equal((-15m, 105m), (reduced.Holdings.Single().Quantity, reduced.Holdings.Single().EntryPrice!.Value));
        Assert.Equal(998m + 100m - 1m, reduced.Cash);
        // Buy 20 at 100: closes 15 (+150) and opens 5 long at 100.
        var flipped = PortfolioLedger.ApplyMarginedFill(reduced, "A-PERP", TradeSide.Buy, 20m, 100m, 1m, 2m);
        Assert.Equal((5m, 100m), (flipped.Holdings.Single().Quantity, flipped.Holdings.Single().EntryPrice!.Value));
        Assert.Equal(1_097m + 150m - 1m, flipped.Cash);
        // Closing the rest removes the position.
        Assert.Empty(PortfolioLedger.ApplyMarginedFill(flipped, "A-PERP", TradeSide.Sell, 5m, 100m, 0m, 2m).Holdings);
    }
}
