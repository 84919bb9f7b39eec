using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>The margin guard's band (see <see cref="MarginGuard"/>); zero disables the emergency level.</summary>
/// <param name="MaintenanceRate">Maintenance margin per unit of contract notional.</param>
public sealed record MarginBand(double Target, double ActBelow, double EmergencyBelow, double MaintenanceRate) : IMeasuredPart;

/// <summary>One position the margin guard closes (in part), with why.</summary>
/// <param name="Price">Price per unit of the underlying; the contract's notional is Price × Multiplier.</param>
public sealed record MarginLeg(string Instrument, string Venue, TradeSide Side, decimal Quantity, decimal Price, decimal Multiplier, string Reason);

/// <summary>Base-currency cash the margin guard moves into a venue's margin account, with why.</summary>
public sealed record MarginTopUp(string Venue, decimal Amount, string Reason);

/// <summary>Collateral the margin guard moves from one venue's margin account to another's, with why.</summary>
public sealed record MarginTransfer(string FromVenue, string ToVenue, decimal Amount, string Reason);

/// <summary>The margin guard's top-ups, transfers and closes, its reasons, and whether a ratio was below the emergency level.</summary>
public sealed record MarginPlan(IReadOnlyList<MarginLeg> Legs, IReadOnlyList<DriftReason> Reasons, bool Emergency, IReadOnlyList<MarginTopUp>? TopUps = null, IReadOnlyList<MarginTransfer>? Transfers = null)
{
    public IReadOnlyList<MarginTopUp> TopUpList => TopUps ?? [];

    public IReadOnlyList<MarginTransfer> TransferList => Transfers ?? [];

    public bool Acts => Legs.Count > 0 || TopUpList.Count > 0 || TransferList.Count > 0;
}

/// <summary>
/// The margin guard for margined contracts (perpetuals, futures). Margin ratio R = E / M with M = Σ |contracts| ×
/// notional × maintenance rate. Contracts held in a venue's margin account are margined there alone (as the venue
/// does, which liquidates the account below R = 1): E is the account's collateral plus their open profit. The rest is
/// cross-margined over the portfolio: E is its net value without the margin accounts. Below the band, an account is
/// topped up from free cash to the target — (T·M − E), as far as cash goes — then from other margin accounts' excess
/// over their own target (E − T·M, largest first: a transfer between venues; a target of at least the venues' initial
/// over maintenance rate keeps the source within what its venue lets leave), and what neither restores is done by
/// closing positions: losing positions first, ranked by margin freed per unit of loss (rate × notional / |open loss
/// per contract|, highest first), then the rest largest notional first. Closing k contracts of notional U frees
/// k·U·m of margin and pays k·U·c of costs, so the target needs k = (T·M − E) / (U·(T·m − c)), rounded up to whole
/// contracts.
/// </summary>
public static class MarginGuard
{
    public const string Rule = "margin_ratio";

    /// <param name="holdings">The portfolio's holdings (for each account's entry price and quantity).</param>
    /// <param name="accounts">The portfolio's margin accounts (collateral per venue).</param>
    /// <param name="freeCash">Base-currency cash top-ups may take.</param>
    public static MarginPlan Plan(
        MarkedPortfolio marked,
        IReadOnlyList<Holding> holdings,
        IReadOnlyDictionary<string, InstrumentMark> marks,
        MarginBand band,
        decimal costRate,
        IReadOnlyList<MarginCollateral>? accounts = null,
        decimal freeCash = 0)
    {
        var rate = (decimal)band.MaintenanceRate;
        var margined = holdings
            .Where(h => h.Quantity != 0 && marks.TryGetValue(h.InstrumentId, out var mark) && mark.Margined)
            .Select(h =>
            {
                var mark = marks[h.InstrumentId];
                var pnlPerContract = (mark.UnitPrice - ((h.EntryPrice ?? mark.UnitPrice / mark.Multiplier) * mark.Multiplier)) * Math.Sign(h.Quantity);
                return new Margined(h, mark.UnitPrice, mark, pnlPerContract);
            })
            .ToArray();
        var collateral = (accounts ?? []).ToDictionary(a => a.Venue, a => a.Collateral, StringComparer.Ordinal);
        var target = (decimal)band.Target;
        var isolated = collateral.OrderBy(a => a.Key, StringComparer.Ordinal).Select(a =>
        {
            var held = margined.Where(m => m.Holding.Venue == a.Key).ToArray();
            var equity = a.Value + held.Sum(m => m.PnlPerContract * Math.Abs(m.Holding.Quantity));
            var margin = held.Sum(m => Math.Abs(m.Holding.Quantity) * m.Notional * rate);
            return (Venue: a.Key, Held: held, Equity: equity, Margin: margin);
        }).ToArray();

        // What each account holds beyond its own target may move to an account below its band.
        var excess = isolated.Where(a => a.Equity > target * a.Margin).ToDictionary(a => a.Venue, a => decimal.Floor((a.Equity - (target * a.Margin)) * 100m) / 100m, StringComparer.Ordinal);
        var guard = new Restoration(band, rate, costRate, Math.Max(freeCash, 0), excess);

        // Each margin account on its own, as its venue margins it.
        foreach (var (venue, held, equity, _) in isolated)
        {
            guard.Restore(venue, held, equity);
        }

        // The rest, cross-margined over the portfolio.
        var pooled = margined.Where(m => !collateral.ContainsKey(m.Holding.Venue)).ToArray();
        guard.Restore(null, pooled, marked.NetValue - isolated.Sum(a => a.Equity));
        return new MarginPlan(guard.Legs, guard.Reasons, guard.Emergency, guard.TopUps, guard.Transfers);
    }

    /// <summary>
    /// The portfolio after the guard: top-ups move cash into their accounts, closes fill at their reference prices
    /// paying <paramref name="costRate"/> of notional.
    /// </summary>
    public static PortfolioSnapshot Apply(PortfolioSnapshot portfolio, MarginPlan plan, decimal costRate)
    {
        var after = plan.TopUpList.Aggregate(portfolio, (p, topUp) => PortfolioLedger.ApplyMarginTopUp(p, topUp.Venue, topUp.Amount));
        after = plan.TransferList.Aggregate(after, (p, transfer) => PortfolioLedger.ApplyCollateralTransfer(p, transfer.FromVenue, transfer.ToVenue, transfer.Amount));
        return plan.Legs.Aggregate(after, (p, leg) => PortfolioLedger.ApplyMarginedFill(
            p, leg.Instrument, leg.Side, leg.Quantity, leg.Price, decimal.Round(leg.Quantity * leg.Price * leg.Multiplier * costRate, 8), leg.Multiplier, leg.Venue));
    }

    private sealed record Margined(Holding Holding, decimal Notional, InstrumentMark Mark, decimal PnlPerContract);

    /// <summary>Restores one margin pool (an account, or the cross-margined rest) and collects the legs and reasons.</summary>
    private sealed class Restoration(MarginBand band, decimal rate, decimal costRate, decimal freeCash, Dictionary<string, decimal> excess)
    {
        public List<MarginLeg> Legs { get; } = [];

        public List<MarginTopUp> TopUps { get; } = [];

        public List<MarginTransfer> Transfers { get; } = [];

        public List<DriftReason> Reasons { get; } = [];

        public bool Emergency { get; private set; }

        /// <param name="venue">The margin account, or null for the cross-margined rest (which cannot be topped up).</param>
        public void Restore(string? venue, IReadOnlyList<Margined> held, decimal equity)
        {
            var margin = held.Sum(m => Math.Abs(m.Holding.Quantity) * m.Notional * rate);
            if (margin <= 0)
            {
                return;
            }

            var scope = venue is null ? "margin ratio" : $"margin ratio of the {venue} account";
            var what = venue is null ? "net value" : "collateral and open profit";
            var ratio = (double)(equity / margin);
            var act = ratio < band.ActBelow;
            var emergency = band.EmergencyBelow > 0 && ratio < band.EmergencyBelow;
            Emergency |= emergency;
            Reasons.Add(new DriftReason(Rule, venue ?? string.Empty, ratio, band.ActBelow, act, emergency
                ? Invariant($"{scope} {ratio:F4} below the emergency level {band.EmergencyBelow:F2}: acting first")
                : act ? Invariant($"{scope} {ratio:F4} ({what} {equity:N2} over maintenance {margin:N2}) < {band.ActBelow:F2}: restore {band.Target:F2}")
                : Invariant($"{scope} {ratio:F4} inside the band (acts below {band.ActBelow:F2})")));
            if (!act)
            {
                return;
            }

            var target = (decimal)band.Target;
            if (venue is not null && freeCash > 0)
            {
                var amount = Math.Min(decimal.Ceiling(((target * margin) - equity) * 100m) / 100m, freeCash);
                if (amount > 0)
                {
                    TopUps.Add(new MarginTopUp(venue, amount, Invariant($"top up the {venue} margin account by {amount:N2}: margin ratio {equity / margin:F4} → {(equity + amount) / margin:F4}")));
                    equity += amount;
                    freeCash -= amount;
                }
            }

            while (venue is not null && equity < target * margin && excess.Where(e => e.Key != venue && e.Value > 0).OrderByDescending(e => e.Value).ThenBy(e => e.Key, StringComparer.Ordinal).FirstOrDefault() is { Key: { } donor } available)
            {
                var amount = Math.Min(decimal.Ceiling(((target * margin) - equity) * 100m) / 100m, available.Value);
                Transfers.Add(new MarginTransfer(donor, venue, amount, Invariant($"move {amount:N2} of collateral from the {donor} account (beyond its own target) to {venue}: margin ratio {equity / margin:F4} → {(equity + amount) / margin:F4}")));
                equity += amount;
                excess[donor] = available.Value - amount;
            }

            var ordered = held.Where(m => m.PnlPerContract < 0).OrderByDescending(m => m.Notional * rate / -m.PnlPerContract)
                .Concat(held.Where(m => m.PnlPerContract >= 0).OrderByDescending(m => Math.Abs(m.Holding.Quantity) * m.Notional));
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
                Legs.Add(new MarginLeg(holding.InstrumentId, holding.Venue, holding.Quantity > 0 ? TradeSide.Sell : TradeSide.Buy, contracts, mark.UnitPrice / mark.Multiplier, mark.Multiplier,
                    Invariant($"close {contracts} of {holding.Quantity} {holding.InstrumentId}{(holding.Venue.Length > 0 ? $" on {holding.Venue}" : string.Empty)} ({(pnl < 0 ? $"open loss {-pnl:N2} per contract, {notional * rate / -pnl:F3} of margin freed per unit of loss" : "in profit")}): {scope} {before:F4} → {after}")));
            }

            if (margin > 0 && equity < target * margin)
            {
                Reasons.Add(new DriftReason(Rule, venue ?? string.Empty, (double)(equity / margin), band.Target, true,
                    Invariant($"target {scope} {band.Target:F2} is out of reach{(venue is null ? string.Empty : " with the free cash")} by closing positions (costs exceed the margin freed); the guard reaches {equity / margin:F4}")));
            }
        }
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
