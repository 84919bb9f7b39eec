namespace RebalanceMesh.Planning.Core;

/// <summary>How a <see cref="BandScreen"/> found a portfolio.</summary>
public enum ScreenVerdict
{
    /// <summary>Every band holds, by more than the screen's margin.</summary>
    Inside,

    /// <summary>A band is breached by more than the screen's margin.</summary>
    Breached,

    /// <summary>The screen cannot tell (a measurement within its margin of a limit, a price missing, not spot, or no net value): evaluate in full.</summary>
    Undecided,
}

/// <summary>
/// The band and health-factor rules of a plain portfolio compiled into arrays and evaluated in doubles without
/// allocating: the monitor's fast path. Plain means spot holdings, base-currency cash and collateralised loans (no cash
/// in other currencies or margin accounts) under a policy whose measured parts are its <see cref="DriftBands"/> and its
/// <see cref="HealthFactorBand"/> (no risk limits, margin band, hedges or any other trigger rule). It measures exactly
/// what <see cref="DriftEvaluator"/> measures — absolute and relative bands per rebalanced position, total drift with
/// cash — and each loan's health factor as <see cref="LiquidationGuard"/> measures it (adjusted collateral over debt).
/// It answers <see cref="ScreenVerdict.Undecided"/> whenever a measurement lies within <see cref="Margin"/> of its limit,
/// where the decimal marking of the full evaluation and the doubles here could disagree, and whenever a loan is outside
/// its band: the guard then plans, and the full evaluation words it.
/// </summary>
public sealed class BandScreen
{
    /// <summary>Weight units within which a measurement is too close to its limit to decide in doubles.</summary>
    public const double Margin = 1e-9;

    private readonly int[] _slots;
    private readonly double[] _quantities;
    private readonly double[] _targets;
    private readonly bool[] _rebalanced;
    private readonly string[] _instruments;
    private readonly double _cash;
    private readonly DriftBands _bands;
    private readonly double _cashTarget;
    private readonly HealthFactorBand? _healthBand;
    private readonly LoanTerms[] _loans;

    /// <summary>
    /// A loan in slots: collateral quantity and liquidation threshold per asset slot, the debt in units of the debt
    /// asset's slot. A slot of <see cref="BaseCurrencySlot"/> is the base currency, worth 1.
    /// </summary>
    private sealed record LoanTerms(string LoanId, int[] CollateralSlots, double[] CollateralQuantities, double[] Thresholds, double Debt, int DebtSlot);

    /// <summary>The slot of the base currency in loan terms: priced at 1, not read from the price spans.</summary>
    private const int BaseCurrencySlot = -1;

    private BandScreen(int[] slots, string[] instruments, double[] quantities, double[] targets, bool[] rebalanced, double cash, TargetPolicy policy, LoanTerms[] loans)
    {
        _slots = slots;
        _loans = loans;
        _healthBand = loans.Length > 0 ? policy.Part<HealthFactorBand>() : null;
        MaxSlot = slots.Concat(loans.SelectMany(l => l.CollateralSlots.Append(l.DebtSlot))).DefaultIfEmpty(-1).Max();
        _instruments = instruments;
        _quantities = quantities;
        _targets = targets;
        _rebalanced = rebalanced;
        _cash = cash;
        _bands = policy.Bands;
        _cashTarget = policy.CashTarget;
    }

    /// <summary>The instruments the screen reads, in its order (held and targeted).</summary>
    public IReadOnlyList<string> Instruments => _instruments;

    /// <summary>The highest slot the screen reads: the price spans must be longer.</summary>
    public int MaxSlot { get; }

    /// <summary>
    /// The screen of a portfolio under a resolved policy, or null when either is not plain. <paramref name="slotOf"/>
    /// numbers instruments the way the price spans given to <see cref="Screen"/> are laid out.
    /// </summary>
    public static BandScreen? TryCompile(PortfolioSnapshot portfolio, TargetPolicy policy, Func<string, int> slotOf)
    {
        if (portfolio.ForeignCash.Count > 0 || portfolio.MarginAccountList.Count > 0
            || policy.Parts.Any(p => p is IMeasuredPart and not DriftBands and not HealthFactorBand)
            || portfolio.Holdings.Any(h => h.EntryPrice is not null))
        {
            return null;
        }

        // Loans matter only under a health-factor band (without one the guard measures nothing).
        int LoanSlot(string asset) => asset.Length == 0 || asset == portfolio.BaseCurrency ? BaseCurrencySlot : slotOf(asset);
        var loans = policy.Part<HealthFactorBand>() is null ? [] : portfolio.LoanList.Select(l => new LoanTerms(
            l.LoanId,
            l.Collateral.Select(c => LoanSlot(c.Asset)).ToArray(),
            l.Collateral.Select(c => (double)c.Quantity).ToArray(),
            l.Collateral.Select(c => c.LiquidationThreshold).ToArray(),
            (double)l.Debt,
            LoanSlot(l.DebtAsset))).ToArray();

        var instruments = portfolio.Holdings.Select(h => h.InstrumentId).Concat(policy.Targets.Keys).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        var quantities = instruments.Select(i => (double)portfolio.Holdings.Where(h => h.InstrumentId == i).Sum(h => h.Quantity)).ToArray();
        return new BandScreen(
            instruments.Select(slotOf).ToArray(),
            instruments,
            quantities,
            instruments.Select(policy.TargetOf).ToArray(),
            instruments.Select(i => !policy.IsNoTrade(i)).ToArray(),
            (double)portfolio.Cash,
            policy,
            loans);
    }

    /// <summary>
    /// Screens the portfolio at these prices. <paramref name="prices"/> and <paramref name="spot"/> are indexed by slot:
    /// the unit price, and whether the instrument is plain spot (not margined, its own underlying).
    /// </summary>
    public (ScreenVerdict Verdict, double TotalDrift) Screen(ReadOnlySpan<double> prices, ReadOnlySpan<bool> spot)
    {
        if (_healthBand is { } band && !LoansInside(band, prices))
        {
            return (ScreenVerdict.Undecided, double.NaN);
        }

        var net = _cash;
        for (var i = 0; i < _slots.Length; i++)
        {
            var slot = _slots[i];
            var price = prices[slot];
            if (!spot[slot] || !double.IsFinite(price))
            {
                return (ScreenVerdict.Undecided, double.NaN);
            }

            net += _quantities[i] * price;
        }

        if (!(net > 0))
        {
            return (ScreenVerdict.Undecided, double.NaN);
        }

        var breached = false;
        var close = false;
        double drift = 0;
        for (var i = 0; i < _slots.Length; i++)
        {
            if (!_rebalanced[i])
            {
                continue;
            }

            var target = _targets[i];
            var deviation = Math.Abs((_quantities[i] * prices[_slots[i]] / net) - target);
            drift += deviation;
            if (_bands.Absolute > 0)
            {
                Compare(deviation, _bands.Absolute, ref breached, ref close);
            }

            if (_bands.Relative > 0 && target > 0)
            {
                Compare(deviation, _bands.Relative * target, ref breached, ref close);
            }
        }

        drift += Math.Abs((_cash / net) - _cashTarget);
        var total = drift / 2;
        if (_bands.TotalDrift > 0)
        {
            Compare(total, _bands.TotalDrift, ref breached, ref close);
        }

        return (breached ? ScreenVerdict.Breached : close ? ScreenVerdict.Undecided : ScreenVerdict.Inside, total);
    }

    /// <summary>
    /// The breached rules at these prices, worded as <see cref="DriftEvaluator"/> words them; for a portfolio the screen
    /// found <see cref="ScreenVerdict.Breached"/> (where no measurement is within the margin of its limit).
    /// </summary>
    public IReadOnlyList<DriftReason> BreachedReasons(ReadOnlySpan<double> prices)
    {
        var net = _cash;
        for (var i = 0; i < _slots.Length; i++)
        {
            net += _quantities[i] * prices[_slots[i]];
        }

        var reasons = new List<DriftReason>();
        double drift = 0;
        for (var i = 0; i < _slots.Length; i++)
        {
            if (!_rebalanced[i])
            {
                continue;
            }

            var (instrument, target) = (_instruments[i], _targets[i]);
            var weight = _quantities[i] * prices[_slots[i]] / net;
            var deviation = Math.Abs(weight - target);
            drift += deviation;
            if (_bands.Absolute > 0 && deviation > _bands.Absolute)
            {
                reasons.Add(new DriftReason(DriftBands.AbsoluteRule, instrument, deviation, _bands.Absolute, true,
                    DriftEvaluator.Describe(instrument, weight, target, deviation, _bands.Absolute, true, "absolute band")));
            }

            if (_bands.Relative > 0 && target > 0 && deviation > _bands.Relative * target)
            {
                var limit = _bands.Relative * target;
                reasons.Add(new DriftReason(DriftBands.RelativeRule, instrument, deviation, limit, true,
                    DriftEvaluator.Describe(instrument, weight, target, deviation, limit, true, _bands.RelativeName)));
            }
        }

        var total = (drift + Math.Abs((_cash / net) - _cashTarget)) / 2;
        if (_bands.TotalDrift > 0 && total > _bands.TotalDrift)
        {
            reasons.Add(new DriftReason(DriftBands.TotalDriftRule, string.Empty, total, _bands.TotalDrift, true, DriftEvaluator.DescribeTotal(total, _bands.TotalDrift, true)));
        }

        return reasons;
    }

    /// <summary>Loans the screen measures (under a health-factor band), in the portfolio's order.</summary>
    public int LoanCount => _loans.Length;

    public string LoanId(int loan) => _loans[loan].LoanId;

    /// <summary>
    /// The loan's health factor at these prices — Σ collateral value × liquidation threshold over the debt's value — or
    /// null when it has no debt (the guard measures only loans in debt); NaN when a price is missing.
    /// </summary>
    public double? HealthFactor(int loan, ReadOnlySpan<double> prices)
    {
        var terms = _loans[loan];
        var debt = terms.Debt * PriceAt(terms.DebtSlot, prices);
        if (debt is 0 || (double.IsFinite(debt) && debt < 0))
        {
            return null;
        }

        double adjusted = 0;
        for (var c = 0; c < terms.CollateralSlots.Length; c++)
        {
            adjusted += terms.CollateralQuantities[c] * PriceAt(terms.CollateralSlots[c], prices) * terms.Thresholds[c];
        }

        return adjusted / debt;
    }

    private static double PriceAt(int slot, ReadOnlySpan<double> prices) => slot == BaseCurrencySlot ? 1 : prices[slot];

    /// <summary>
    /// True when every loan in debt is inside its band by more than the margin: neither below the repay level nor above
    /// the boost level nor below the emergency level, nor close to any of them.
    /// </summary>
    private bool LoansInside(HealthFactorBand band, ReadOnlySpan<double> prices)
    {
        for (var i = 0; i < _loans.Length; i++)
        {
            if (HealthFactor(i, prices) is not { } hf)
            {
                continue;
            }

            if (!double.IsFinite(hf) || Outside(hf, band.RepayBelow, below: true)
                || (band.BoostAbove > 0 && Outside(hf, band.BoostAbove, below: false))
                || (band.EmergencyBelow > 0 && Outside(hf, band.EmergencyBelow, below: true)))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>On the wrong side of <paramref name="limit"/> (below it, or above it), or within the margin of it.</summary>
    private static bool Outside(double measured, double limit, bool below) =>
        Math.Abs(measured - limit) <= Margin || (below ? measured < limit : measured > limit);

    private static void Compare(double measured, double limit, ref bool breached, ref bool close)
    {
        if (Math.Abs(measured - limit) <= Margin)
        {
            close = true;
        }
        else if (measured > limit)
        {
            breached = true;
        }
    }
}
