namespace RebalanceMesh.Planning.Core;

/// <summary>Buy or sell.</summary>
public enum TradeSide
{
    Buy,
    Sell,
}

/// <summary>How far a triggered rebalance trades.</summary>
public enum RebalanceTarget
{
    /// <summary>Every position back to its target weight.</summary>
    Target,
    /// <summary>Only breached positions, to the nearest edge of their band.</summary>
    BandEdge,
}

/// <summary>
/// A quantity of one instrument; <paramref name="EntryPrice"/> is the average entry of a margined contract and
/// <paramref name="Venue"/> the account it is held in (empty: the default account).
/// </summary>
public sealed record Holding(string InstrumentId, decimal Quantity, decimal? EntryPrice = null, string Venue = "");

/// <summary>
/// How pricing values one unit of an instrument. A margined contract (perpetual, dated future) is worth its
/// unrealised profit, (unit price − entry × multiplier) per unit; anything else is worth its unit price.
/// </summary>
/// <param name="UnitPrice">Value of one unit (contract) in the base currency.</param>
/// <param name="DeltaExposure">Exposure to the underlying per unit, in the base currency.</param>
/// <param name="Underlying">Underlying the delta refers to; null or the instrument itself for spot.</param>
public sealed record InstrumentMark(decimal UnitPrice, bool Margined = false, decimal Multiplier = 1m, double DeltaExposure = 0, string? Underlying = null)
{
    public static InstrumentMark Spot(decimal price) => new(price, DeltaExposure: (double)price);
}

/// <summary>
/// The positions, cash and loans of a portfolio at one version. An instrument may be held in several accounts, once
/// per account (venue).
/// </summary>
/// <param name="Cash">Cash in the base currency: what pays for trades.</param>
/// <param name="CashBalances">Cash in other currencies, valued at pricing's quote of each currency code.</param>
/// <param name="MarginAccounts">Base-currency collateral posted in venues' margin accounts for the margined contracts held there.</param>
public sealed record PortfolioSnapshot(string PortfolioId, IReadOnlyList<Holding> Holdings, decimal Cash, long Version, IReadOnlyList<Loan>? Loans = null, string BaseCurrency = "", IReadOnlyList<CashBalance>? CashBalances = null, IReadOnlyList<MarginCollateral>? MarginAccounts = null)
{
    public IReadOnlyList<MarginCollateral> MarginAccountList => MarginAccounts ?? [];

    /// <summary>Collateral in every margin account.</summary>
    public decimal MarginCollateralTotal => MarginAccountList.Sum(a => a.Collateral);

    public IReadOnlyList<Loan> LoanList => Loans ?? [];

    public IReadOnlyList<CashBalance> ForeignCash => CashBalances ?? [];

    /// <summary>Units of an instrument over every account.</summary>
    public decimal QuantityOf(string instrument) => Holdings.Where(h => h.InstrumentId == instrument).Sum(h => h.Quantity);

    /// <summary>Instruments pledged to or owed by loans (the base currency excluded).</summary>
    public IEnumerable<string> LoanInstruments =>
        LoanList.SelectMany(l => l.Collateral.Select(c => c.Asset).Append(l.DebtAsset)).Where(a => a.Length > 0 && a != BaseCurrency).Distinct(StringComparer.Ordinal);
}

/// <summary>Collateral (base currency) in the margin account a venue keeps for the margined contracts held with it.</summary>
public sealed record MarginCollateral(string Venue, decimal Collateral);

/// <summary>Cash in a currency other than the base currency.</summary>
public sealed record CashBalance(string Currency, decimal Amount);

/// <summary>A foreign cash balance at the current exchange rate (base-currency units per unit).</summary>
public sealed record MarkedCash(string Currency, decimal Amount, decimal Rate, decimal Value, double Weight);

/// <summary>One asset pledged to a loan: an instrument, or the base currency for cash collateral.</summary>
public sealed record LoanCollateral(string Asset, decimal Quantity, double LiquidationThreshold);

/// <summary>
/// A collateralised loan on a lending venue. <paramref name="Debt"/> is owed in units of <paramref name="DebtAsset"/>
/// (an instrument, for example ETH borrowed against BTC); empty is the portfolio's base currency.
/// </summary>
public sealed record Loan(string LoanId, string Venue, IReadOnlyList<LoanCollateral> Collateral, decimal Debt, string DebtAsset = "")
{
    /// <summary>True when the debt is owed in the base currency.</summary>
    public bool OwesCash => DebtAsset.Length == 0;
}

/// <summary>The liquidation guard's band (see <see cref="LiquidationGuard"/>); zero disables boost and emergency.</summary>
public sealed record HealthFactorBand(double Target, double RepayBelow, double BoostAbove, double EmergencyBelow) : IMeasuredPart;

/// <summary>
/// One concern of a policy besides its target weights and trade rules: its bands, risk limits, a guard, hedges, the
/// optimiser, the target model. A policy is its targets, its trade rules and a list of parts; a stage asks for the
/// part it acts on (<see cref="TargetPolicy.Part{T}"/>) and leaves the others alone.
/// </summary>
public interface IPolicyPart;

/// <summary>
/// A part the trigger stage measures on the portfolio as it stands (<see cref="PlanComposer.Assess"/>): bands, risk
/// limits, the liquidation and margin guards, delta hedges. <see cref="BandScreen"/> speaks only for policies whose
/// measured parts are all <see cref="DriftBands"/>.
/// </summary>
public interface IMeasuredPart : IPolicyPart;

/// <summary>
/// A rule whose breach triggers a rebalance, measured by <see cref="DriftEvaluator"/> for the monitor and the plan
/// pipeline alike. A new trigger rule is one class implementing this, added to a policy's parts.
/// </summary>
public interface ITriggerRule : IMeasuredPart
{
    /// <summary>Adds a reason per measurement, breached or not.</summary>
    void Measure(in TriggerInput input, List<DriftReason> reasons);
}

/// <summary>What a trigger rule measures: the marked portfolio under its policy and its total drift Σ|w − w*| / 2.</summary>
/// <param name="DescribeAll">False: only breached measurements need their message (the monitor shows breaches only).</param>
public readonly record struct TriggerInput(MarkedPortfolio Marked, TargetPolicy Policy, double TotalDrift, bool DescribeAll);

/// <summary>How a policy trades: how far, in what sizes, at what estimated cost, and what it leaves alone.</summary>
/// <param name="MinTradeNotional">Trades below this notional are dropped.</param>
/// <param name="LotSizes">Quantity increments per instrument; missing means 1.</param>
/// <param name="EstimatedCostBps">Pre-trade cost estimate in basis points of notional.</param>
/// <param name="NoTrade">Instruments weight rebalancing leaves alone.</param>
/// <param name="OptimalLotRounding">Lots chosen together by CP-SAT instead of rounded one by one.</param>
/// <param name="MaxSlippageBps">Execution's limit-price protection (worst fill versus arrival); 0 is none.</param>
public sealed record TradeRules(
    RebalanceTarget RebalanceTarget,
    decimal MinTradeNotional,
    IReadOnlyDictionary<string, decimal> LotSizes,
    double EstimatedCostBps,
    IReadOnlySet<string>? NoTrade = null,
    bool OptimalLotRounding = false,
    double MaxSlippageBps = 0)
{
    /// <summary>Every position back to target, whole units, no minimum, no cost estimate.</summary>
    public static TradeRules Default { get; } = new(RebalanceTarget.Target, 0m, new Dictionary<string, decimal>(), 0);
}

/// <summary>
/// Target-weight policy: target weights, how it trades, and its parts (bands, limits, guards, hedges, optimiser,
/// target model). Build one with <see cref="Of"/>; a part of each type at most.
/// </summary>
/// <param name="Targets">Target weight per instrument; the rest of the portfolio is cash.</param>
public sealed record TargetPolicy(IReadOnlyDictionary<string, double> Targets, TradeRules Trading, IReadOnlyList<IPolicyPart> Parts)
{
    /// <summary>A policy of the parts given (nulls left out).</summary>
    public static TargetPolicy Of(IReadOnlyDictionary<string, double> targets, TradeRules trading, params IPolicyPart?[] parts)
    {
        var kept = parts.OfType<IPolicyPart>().ToArray();
        if (kept.Select(p => p.GetType()).Distinct().Count() != kept.Length)
        {
            throw new ArgumentException("A policy has one part of each type.", nameof(parts));
        }

        return new TargetPolicy(targets, trading, kept);
    }

    /// <summary>The part of type <typeparamref name="T"/>, or null.</summary>
    public T? Part<T>() where T : class, IPolicyPart
    {
        for (var i = 0; i < Parts.Count; i++)
        {
            if (Parts[i] is T part)
            {
                return part;
            }
        }

        return null;
    }

    /// <summary>The policy with <paramref name="part"/> in place of the part of its type (added when there is none).</summary>
    public TargetPolicy With<T>(T part) where T : class, IPolicyPart
    {
        var parts = Parts.ToList();
        var at = parts.FindIndex(p => p is T);
        if (at >= 0)
        {
            parts[at] = part;
        }
        else
        {
            parts.Add(part);
        }

        return this with { Parts = parts };
    }

    /// <summary>The drift bands; none when the policy has no band part.</summary>
    public DriftBands Bands => Part<DriftBands>() ?? DriftBands.None;

    /// <summary>The delta hedges' rules; empty when it has none.</summary>
    public IReadOnlyList<HedgeRule> HedgeRules => Part<DeltaHedges>()?.Rules ?? [];

    /// <summary>The target model; fixed weights when it has none.</summary>
    public TargetModelSpec ModelSpec => Part<TargetModelSpec>() ?? TargetModelSpec.Fixed;

    /// <summary>Expected annual return per instrument given with the policy; null when none were.</summary>
    public IReadOnlyDictionary<string, double>? ExpectedReturns => Part<ReturnForecast>()?.Returns;

    /// <summary>True when weight rebalancing leaves the instrument alone.</summary>
    public bool IsNoTrade(string instrument) => Trading.NoTrade?.Contains(instrument) == true;

    public decimal LotSize(string instrument) => Trading.LotSizes.TryGetValue(instrument, out var lot) && lot > 0 ? lot : 1m;

    public double TargetOf(string instrument) => Targets.TryGetValue(instrument, out var w) ? w : 0.0;

    public double CashTarget => 1.0 - Targets.Values.Sum();

    /// <summary><see cref="TradeRules.EstimatedCostBps"/> as a fraction of notional.</summary>
    public decimal CostRate => (decimal)Trading.EstimatedCostBps / 10_000m;

    /// <summary>
    /// <see cref="TradeRules.MaxSlippageBps"/> as a fraction of price: how far from its planned price execution may
    /// fill a trade, which the planner keeps in reserve when it spends cash.
    /// </summary>
    public decimal SlippageReserve => (decimal)Trading.MaxSlippageBps / 10_000m;
}

/// <summary>Expected annual returns given with a policy (the return-aware models and the optimiser use them).</summary>
public sealed record ReturnForecast(IReadOnlyDictionary<string, double> Returns) : IPolicyPart;

/// <summary>The policy's delta hedges (see <see cref="DeltaHedger"/>).</summary>
public sealed record DeltaHedges(IReadOnlyList<HedgeRule> Rules) : IMeasuredPart;

/// <summary>
/// Weight bands: absolute |w − w*| &gt; a, relative |w − w*| &gt; r·w*, and total drift Σ|w − w*| / 2 (cash included)
/// &gt; T, each measured on every rebalanced position; 0 disables one.
/// </summary>
/// <param name="Absolute">± weight units (0.05 = ±5 pp).</param>
/// <param name="Relative">± fraction of each target (0.25 = ±25 % of target).</param>
/// <param name="TotalDrift">Σ|w − w*| / 2 that triggers on its own.</param>
public sealed record DriftBands(double Absolute, double Relative = 0, double TotalDrift = 0) : ITriggerRule
{
    public const string AbsoluteRule = "absolute_band";
    public const string RelativeRule = "relative_band";
    public const string TotalDriftRule = "total_drift";

    public static DriftBands None { get; } = new(0);

    /// <summary>Half-width of an instrument's band: the tighter of the enabled bands; infinite when none.</summary>
    public double Width(double target)
    {
        var width = double.PositiveInfinity;
        if (Absolute > 0)
        {
            width = Absolute;
        }

        if (Relative > 0 && target > 0)
        {
            width = Math.Min(width, Relative * target);
        }

        return width;
    }

    public void Measure(in TriggerInput input, List<DriftReason> reasons)
    {
        var policy = input.Policy;
        foreach (var position in input.Marked.Positions)
        {
            if (!DriftEvaluator.IsRebalanced(position, policy))
            {
                continue;
            }

            var target = policy.TargetOf(position.InstrumentId);
            var deviation = Math.Abs(position.Weight - target);
            if (Absolute > 0)
            {
                var breached = deviation > Absolute;
                reasons.Add(new DriftReason(AbsoluteRule, position.InstrumentId, deviation, Absolute, breached,
                    breached || input.DescribeAll ? DriftEvaluator.Describe(position.InstrumentId, position.Weight, target, deviation, Absolute, breached, "absolute band") : string.Empty));
            }

            if (Relative > 0 && target > 0)
            {
                var limit = Relative * target;
                var breached = deviation > limit;
                reasons.Add(new DriftReason(RelativeRule, position.InstrumentId, deviation, limit, breached,
                    breached || input.DescribeAll ? DriftEvaluator.Describe(position.InstrumentId, position.Weight, target, deviation, limit, breached, RelativeName) : string.Empty));
            }
        }

        if (TotalDrift > 0)
        {
            var breached = input.TotalDrift > TotalDrift;
            reasons.Add(new DriftReason(TotalDriftRule, string.Empty, input.TotalDrift, TotalDrift, breached, DriftEvaluator.DescribeTotal(input.TotalDrift, TotalDrift, breached)));
        }
    }

    /// <summary>How a relative band is named in its reasons.</summary>
    internal string RelativeName => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"relative band ({Relative:P0} of target)");
}

/// <summary>
/// How a computed target model set a resolved policy's targets, and from what: the model's weights, the history behind
/// the covariance (days asked for, returns it had; none when the policy gave the covariance), and the expected returns
/// a return-aware model used (the policy's, else the historical means).
/// </summary>
public sealed record ModelFit(TargetModel Model, IReadOnlyDictionary<string, double> Weights, int LookbackDays, int Observations, bool CovarianceGiven, IReadOnlyDictionary<string, double>? ExpectedReturns) : IPolicyPart;

/// <summary>The cost-aware optimiser's settings of a policy (see <see cref="RebalanceOptimizer"/>).</summary>
/// <param name="FeeBps">Fee in basis points of traded notional; the half-spread is added from quotes.</param>
/// <param name="ImpactCoefficient">b of b·σ·|x|^1.5/√V.</param>
/// <param name="DailyVolumes">Average daily traded value per instrument; instruments without one get no impact term.</param>
/// <param name="Bounds">Weight bounds per instrument; others are long-only up to 1.</param>
public sealed record OptimizerPolicy(
    OptimizerObjective Objective,
    double RiskAversion,
    double FeeBps,
    double ImpactCoefficient,
    IReadOnlyDictionary<string, decimal> DailyVolumes,
    double? TurnoverCap,
    double? MaxGrossLeverage,
    IReadOnlyDictionary<string, (double Lower, double Upper)> Bounds,
    double MinCashWeight,
    IReadOnlyList<DeltaBand> DeltaBands) : IPolicyPart;

/// <summary>Net delta on one underlying (weight of net value) kept within Target ± Tolerance.</summary>
public sealed record DeltaBand(string Underlying, double Target, double Tolerance);

/// <summary>
/// One position marked to market; a margined one is worth its unrealised profit and is never traded by weight.
/// <paramref name="DeltaExposure"/> is the position's exposure to <paramref name="Underlying"/> in the base currency.
/// </summary>
/// <param name="Accounts">Where the quantity is held: per account (venue; empty is the default account), largest first.</param>
public sealed record MarkedPosition(string InstrumentId, decimal Quantity, decimal Price, decimal MarketValue, double Weight, bool Margined = false, double DeltaExposure = 0, string? Underlying = null, IReadOnlyList<AccountQuantity>? Accounts = null)
{
    /// <summary>The underlying its delta refers to: the instrument itself for spot.</summary>
    public string UnderlyingId => Underlying ?? InstrumentId;

    /// <summary>Spot: its own underlying, worth its price.</summary>
    public bool IsSpot => !Margined && UnderlyingId == InstrumentId;
}

/// <summary>The quantity of an instrument held in one account (a venue; empty is the default account).</summary>
public sealed record AccountQuantity(string Venue, decimal Quantity);

/// <summary>
/// A portfolio marked to market: positions (held or targeted, summed over accounts), base-currency cash, cash in
/// other currencies at their exchange rates, and net value (all of it, in the base currency).
/// </summary>
/// <param name="MarginCollateral">Collateral in venues' margin accounts: part of net value, not available to pay for trades.</param>
public sealed record MarkedPortfolio(IReadOnlyList<MarkedPosition> Positions, decimal Cash, decimal NetValue, IReadOnlyList<MarkedCash>? ForeignCash = null, decimal MarginCollateral = 0)
{
    /// <summary>Weight of base-currency cash, the cash that pays for trades.</summary>
    public double CashWeight => NetValue != 0 ? (double)(Cash / NetValue) : 0;

    /// <summary>Weight of cash in every currency: what a policy's cash target is measured against.</summary>
    public double TotalCashWeight => NetValue != 0 ? (double)((Cash + MarginCollateral + (ForeignCash?.Sum(c => c.Value) ?? 0m)) / NetValue) : 0;

    public MarkedPosition? Find(string instrument) => Positions.FirstOrDefault(p => p.InstrumentId == instrument);
}

/// <summary>One rule measured during an evaluation, whether it fired or not.</summary>
public sealed record DriftReason(string Rule, string InstrumentId, double Measured, double Threshold, bool Breached, string Message);

/// <summary>The result of evaluating a policy against a marked portfolio.</summary>
public sealed record DriftEvaluation(IReadOnlyList<DriftReason> Reasons, double TotalDrift)
{
    public bool Breached => Reasons.Any(r => r.Breached);
}

/// <summary>
/// A planned trade. <paramref name="Venue"/> is the account it trades in: a sell of units held on a venue is sold
/// there, a buy into an account is bought there; empty is the default account, tradable on any venue.
/// </summary>
public sealed record PlannedLeg(
    string LegId,
    int Sequence,
    string InstrumentId,
    TradeSide Side,
    decimal Quantity,
    decimal ReferencePrice,
    decimal Notional,
    decimal EstimatedCost,
    double WeightBefore,
    double WeightAfter,
    string Venue = "");

/// <summary>The trades of a rebalance and why they were chosen; <paramref name="Rounding"/> when lots were chosen by CP-SAT.</summary>
public sealed record RebalanceProposal(DriftEvaluation Evaluation, IReadOnlyList<PlannedLeg> Legs, decimal NetValue, decimal EstimatedCost, double Turnover, decimal CashAfter, RoundingResult? Rounding = null)
{
    public bool HasTrades => Legs.Count > 0;
}
