using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>A delta hedge of one underlying with a margined contract (see <see cref="DeltaHedger"/>).</summary>
/// <param name="Target">Target net delta, weight of net value (0: neutral).</param>
/// <param name="Tolerance">Distance from the target tolerated before hedging, weight of net value.</param>
public sealed record HedgeRule(string Underlying, string HedgeInstrument, double Target, double Tolerance, decimal LotSize = 1m);

/// <summary>One hedge trade and why.</summary>
/// <param name="Multiplier">Contract multiplier of the hedge instrument (for the margined ledger).</param>
public sealed record HedgeLeg(string Underlying, string Instrument, TradeSide Side, decimal Quantity, decimal Price, decimal Multiplier, double DeltaBefore, double DeltaAfter, string Reason);

/// <summary>
/// Keeps the net delta per underlying — spot, options and delta-one positions together, each position's delta from
/// pricing — within target ± tolerance of net value by trading the rule's perpetual or future. Measured on the
/// portfolio after the plan's other legs (their delta moves are passed in), so a hedge sits beside the trades it
/// hedges. The hedge brings delta back to the target (whole lots, rounded to the nearest), and says so.
/// </summary>
public static class DeltaHedger
{
    public const string Rule = "delta";

    /// <param name="tradeDeltas">Change of delta (base currency) per underlying from the plan's other legs.</param>
    public static (IReadOnlyList<HedgeLeg> Legs, IReadOnlyList<DriftReason> Reasons) Plan(
        MarkedPortfolio marked, IReadOnlyDictionary<string, InstrumentMark> marks, IReadOnlyList<HedgeRule> rules, IReadOnlyDictionary<string, double> tradeDeltas)
    {
        var legs = new List<HedgeLeg>();
        var reasons = new List<DriftReason>();
        var nav = (double)marked.NetValue;
        if (nav <= 0)
        {
            return (legs, reasons);
        }

        foreach (var rule in rules)
        {
            if (!marks.TryGetValue(rule.HedgeInstrument, out var hedge) || hedge.DeltaExposure == 0)
            {
                reasons.Add(new DriftReason(Rule, rule.Underlying, 0, rule.Tolerance, true, $"{rule.Underlying}: hedge instrument {rule.HedgeInstrument} has no delta from pricing; not hedged"));
                continue;
            }

            var delta = marked.Positions.Where(p => p.UnderlyingId == rule.Underlying).Sum(p => p.DeltaExposure) + tradeDeltas.GetValueOrDefault(rule.Underlying);
            var weight = delta / nav;
            var gap = weight - rule.Target;
            var breached = Math.Abs(gap) > rule.Tolerance;
            reasons.Add(new DriftReason(Rule, rule.Underlying, weight, rule.Tolerance, breached, string.Create(CultureInfo.InvariantCulture,
                $"{rule.Underlying}: net delta {weight:P2} of net value vs target {rule.Target:P2} ± {rule.Tolerance:P2}")));
            if (!breached)
            {
                continue;
            }

            var lot = rule.LotSize > 0 ? rule.LotSize : 1m;
            var contracts = -(gap * nav) / hedge.DeltaExposure;
            var quantity = decimal.Round((decimal)contracts / lot, MidpointRounding.AwayFromZero) * lot;
            if (quantity == 0)
            {
                continue;
            }

            var after = (delta + ((double)quantity * hedge.DeltaExposure)) / nav;
            legs.Add(new HedgeLeg(rule.Underlying, rule.HedgeInstrument, quantity > 0 ? TradeSide.Buy : TradeSide.Sell, Math.Abs(quantity), hedge.UnitPrice / hedge.Multiplier, hedge.Multiplier, weight, after,
                string.Create(CultureInfo.InvariantCulture, $"hedge {rule.Underlying}: {(quantity > 0 ? "buy" : "sell")} {Math.Abs(quantity)} {rule.HedgeInstrument}, net delta {weight:P2} → {after:P2} of net value")));
        }

        return (legs, reasons);
    }
}
