using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>A delta hedge of one underlying with a margined contract (see <see cref="DeltaHedger"/>).</summary>
/// <param name="Target">Target net delta, weight of net value (0: neutral; 2: a 2× leveraged long).</param>
/// <param name="Tolerance">Distance from the target tolerated before hedging, weight of net value.</param>
/// <param name="Lower">With <paramref name="Upper"/>, a leverage band replacing target ± tolerance (both zero: none).</param>
/// <param name="Ripcord">Net delta beyond which the rule is an emergency (zero: none).</param>
public sealed record HedgeRule(string Underlying, string HedgeInstrument, double Target, double Tolerance, decimal LotSize = 1m, double Lower = 0, double Upper = 0, double Ripcord = 0)
{
    public bool IsBand => Lower < Upper;

    /// <summary>Whether a net delta weight is outside the rule: outside [lower, upper], or farther than tolerance from target.</summary>
    public bool Breached(double weight) => IsBand ? weight < Lower || weight > Upper : Math.Abs(weight - Target) > Tolerance;

    /// <summary>Past the ripcord, on the side of the target (above it for long targets, below it for short ones).</summary>
    public bool PastRipcord(double weight) => Ripcord != 0 && (Target >= 0 ? weight > Ripcord : weight < Ripcord);
}

/// <summary>One hedge trade and why.</summary>
/// <param name="Multiplier">Contract multiplier of the hedge instrument (for the margined ledger).</param>
public sealed record HedgeLeg(string Underlying, string Instrument, TradeSide Side, decimal Quantity, decimal Price, decimal Multiplier, double DeltaBefore, double DeltaAfter, string Reason, string Venue = "");

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
    public static (IReadOnlyList<HedgeLeg> Legs, IReadOnlyList<DriftReason> Reasons, bool Ripcord) Plan(
        MarkedPortfolio marked, IReadOnlyDictionary<string, InstrumentMark> marks, IReadOnlyList<HedgeRule> rules, IReadOnlyDictionary<string, double> tradeDeltas)
    {
        var legs = new List<HedgeLeg>();
        var reasons = new List<DriftReason>();
        var ripcord = false;
        var nav = (double)marked.NetValue;
        if (nav <= 0)
        {
            return (legs, reasons, ripcord);
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
            var breached = rule.Breached(weight);
            var pulled = rule.PastRipcord(weight);
            ripcord |= pulled;
            reasons.Add(new DriftReason(Rule, rule.Underlying, weight, rule.IsBand ? (weight < rule.Lower ? rule.Lower : rule.Upper) : rule.Tolerance, breached, rule.IsBand
                ? string.Create(CultureInfo.InvariantCulture, $"{rule.Underlying}: leverage {weight:F3}× vs band [{rule.Lower:F3}, {rule.Upper:F3}], target {rule.Target:F3}{(pulled ? $", past the ripcord {rule.Ripcord:F3}: acting at once" : string.Empty)}")
                : string.Create(CultureInfo.InvariantCulture, $"{rule.Underlying}: net delta {weight:P2} of net value vs target {rule.Target:P2} ± {rule.Tolerance:P2}")));
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
                string.Create(CultureInfo.InvariantCulture, $"hedge {rule.Underlying}: {(quantity > 0 ? "buy" : "sell")} {Math.Abs(quantity)} {rule.HedgeInstrument}, net delta {weight:P2} → {after:P2} of net value"),
                marked.Find(rule.HedgeInstrument)?.Accounts is [var account, ..] ? account.Venue : string.Empty));
        }

        return (legs, reasons, ripcord);
    }
}
