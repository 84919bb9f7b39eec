using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>The margin guard's band (see <see cref="MarginGuard"/>); zero disables the emergency level.</summary>
/// <param name="MaintenanceRate">Maintenance margin per unit of contract notional.</param>
public sealed record MarginBand(double Target, double ActBelow, double EmergencyBelow, double MaintenanceRate);

/// <summary>One position the margin guard closes (in part), with why.</summary>
/// <param name="Price">Price per unit of the underlying; the contract's notional is Price × Multiplier.</param>
public sealed record MarginLeg(string Instrument, string Venue, TradeSide Side, decimal Quantity, decimal Price, decimal Multiplier, string Reason);

/// <summary>The margin guard's legs, its reasons, and whether the ratio was below the emergency level.</summary>
public sealed record MarginPlan(IReadOnlyList<MarginLeg> Legs, IReadOnlyList<DriftReason> Reasons, bool Emergency)
{
    public bool Acts => Legs.Count > 0;
}

/// <summary>
/// The margin guard for margined contracts (perpetuals, futures), cross-margined over every account: margin ratio
/// R = E / M with E the portfolio's net value (open profit included) and M = Σ |contracts| × notional × maintenance
/// rate. Below the band it closes positions until R reaches the target: losing positions first, ranked by margin freed
/// per unit of loss (rate × notional / |open loss per contract|, highest first), then the rest largest notional first.
/// Closing k contracts of notional U frees k·U·m of margin and pays k·U·c of costs, so the target needs
/// k = (T·M − E) / (U·(T·m − c)), rounded up to whole contracts.
/// </summary>
public static class MarginGuard
{
    public const string Rule = "margin_ratio";

    /// <param name="holdings">The portfolio's holdings (for each account's entry price and quantity).</param>
    public static MarginPlan Plan(MarkedPortfolio marked, IReadOnlyList<Holding> holdings, IReadOnlyDictionary<string, InstrumentMark> marks, MarginBand band, decimal costRate)
    {
        var rate = (decimal)band.MaintenanceRate;
        var accounts = holdings
            .Where(h => h.Quantity != 0 && marks.TryGetValue(h.InstrumentId, out var mark) && mark.Margined)
            .Select(h =>
            {
                var mark = marks[h.InstrumentId];
                var pnlPerContract = (mark.UnitPrice - ((h.EntryPrice ?? mark.UnitPrice / mark.Multiplier) * mark.Multiplier)) * Math.Sign(h.Quantity);
                return (Holding: h, Notional: mark.UnitPrice, Mark: mark, PnlPerContract: pnlPerContract);
            })
            .ToArray();
        var margin = accounts.Sum(a => Math.Abs(a.Holding.Quantity) * a.Notional * rate);
        if (margin <= 0)
        {
            return new MarginPlan([], [], false);
        }

        var equity = marked.NetValue;
        var ratio = (double)(equity / margin);
        var act = ratio < band.ActBelow;
        var emergency = band.EmergencyBelow > 0 && ratio < band.EmergencyBelow;
        var reasons = new List<DriftReason>
        {
            new(Rule, string.Empty, ratio, band.ActBelow, act, emergency
                ? Invariant($"margin ratio {ratio:F4} below the emergency level {band.EmergencyBelow:F2}: acting first")
                : act ? Invariant($"margin ratio {ratio:F4} (net value {equity:N2} over maintenance {margin:N2}) < {band.ActBelow:F2}: restore {band.Target:F2}")
                : Invariant($"margin ratio {ratio:F4} inside the band (acts below {band.ActBelow:F2})")),
        };
        if (!act)
        {
            return new MarginPlan([], reasons, false);
        }

        var target = (decimal)band.Target;
        var legs = new List<MarginLeg>();
        var ordered = accounts.Where(a => a.PnlPerContract < 0).OrderByDescending(a => a.Notional * rate / -a.PnlPerContract)
            .Concat(accounts.Where(a => a.PnlPerContract >= 0).OrderByDescending(a => Math.Abs(a.Holding.Quantity) * a.Notional));
        foreach (var (holding, notional, mark, pnl) in ordered)
        {
            if (equity >= target * margin)
            {
                break;
            }

            var perContract = notional * ((target * rate) - costRate);
            if (perContract <= 0)
            {
                continue;
            }

            var contracts = Math.Min(decimal.Ceiling(((target * margin) - equity) / perContract), Math.Abs(holding.Quantity));
            var before = equity / margin;
            equity -= contracts * notional * costRate;
            margin -= contracts * notional * rate;
            var after = margin > 0 ? Invariant($"{equity / margin:F4}") : "∞ (no margined position left)";
            legs.Add(new MarginLeg(holding.InstrumentId, holding.Venue, holding.Quantity > 0 ? TradeSide.Sell : TradeSide.Buy, contracts, mark.UnitPrice / mark.Multiplier, mark.Multiplier,
                Invariant($"close {contracts} of {holding.Quantity} {holding.InstrumentId}{(holding.Venue.Length > 0 ? $" on {holding.Venue}" : string.Empty)} ({(pnl < 0 ? $"open loss {-pnl:N2} per contract, {notional * rate / -pnl:F3} of margin freed per unit of loss" : "in profit")}): margin ratio {before:F4} → {after}")));
        }

        if (margin > 0 && equity < target * margin)
        {
            reasons.Add(new DriftReason(Rule, string.Empty, (double)(equity / margin), band.Target, true,
                Invariant($"target margin ratio {band.Target:F2} is out of reach by closing positions (costs exceed the margin freed); the guard reaches {equity / margin:F4}")));
        }

        return new MarginPlan(legs, reasons, emergency);
    }

    /// <summary>The portfolio after the guard's closes at their reference prices, paying <paramref name="costRate"/> of notional.</summary>
    public static PortfolioSnapshot Apply(PortfolioSnapshot portfolio, MarginPlan plan, decimal costRate) =>
        plan.Legs.Aggregate(portfolio, (p, leg) => PortfolioLedger.ApplyMarginedFill(
            p, leg.Instrument, leg.Side, leg.Quantity, leg.Price, decimal.Round(leg.Quantity * leg.Price * leg.Multiplier * costRate, 8), leg.Multiplier, leg.Venue));

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
