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
public sealed record HealthFactorBand(double Target, double RepayBelow, double BoostAbove, double EmergencyBelow);

/// <summary>Target-weight policy with drift bands.</summary>
/// <param name="Targets">Target weight per instrument; the rest of the portfolio is cash.</param>
/// <param name="AbsoluteBand">± weight units (0.05 = ±5 pp); 0 disables.</param>
/// <param name="RelativeBand">± fraction of each target (0.25 = ±25 % of target); 0 disables.</param>
/// <param name="TotalDriftThreshold">Σ|w − w*| / 2 that triggers on its own; 0 disables.</param>
/// <param name="MinTradeNotional">Trades below this notional are dropped.</param>
/// <param name="LotSizes">Quantity increments per instrument; missing means 1.</param>
/// <param name="EstimatedCostBps">Pre-trade cost estimate in basis points of notional.</param>
/// <param name="MaxSlippageBps">Execution's limit-price protection (worst fill versus arrival); 0 is none.</param>
/// <param name="Fit">Set on a resolved policy whose targets a computed model set: how it set them.</param>
public sealed record TargetPolicy(
    IReadOnlyDictionary<string, double> Targets,
    double AbsoluteBand,
    double RelativeBand,
    double TotalDriftThreshold,
    RebalanceTarget RebalanceTarget,
    decimal MinTradeNotional,
    IReadOnlyDictionary<string, decimal> LotSizes,
    double EstimatedCostBps,
    IReadOnlySet<string>? NoTrade = null,
    OptimizerPolicy? Optimizer = null,
    IReadOnlyDictionary<string, double>? ExpectedReturns = null,
    HealthFactorBand? Guard = null,
    RiskLimits? Limits = null,
    RiskModelInputs? RiskModel = null,
    IReadOnlyList<HedgeRule>? Hedges = null,
    bool OptimalLotRounding = false,
    TargetModelSpec? Model = null,
    MarginBand? Margin = null,
    double MaxSlippageBps = 0,
    ModelFit? Fit = null)
{
    /// <summary>True when weight rebalancing leaves the instrument alone.</summary>
    public bool IsNoTrade(string instrument) => NoTrade?.Contains(instrument) == true;

    public decimal LotSize(string instrument) => LotSizes.TryGetValue(instrument, out var lot) && lot > 0 ? lot : 1m;

    public double TargetOf(string instrument) => Targets.TryGetValue(instrument, out var w) ? w : 0.0;

    public double CashTarget => 1.0 - Targets.Values.Sum();

    /// <summary><see cref="EstimatedCostBps"/> as a fraction of notional.</summary>
    public decimal CostRate => (decimal)EstimatedCostBps / 10_000m;

    /// <summary>
    /// <see cref="MaxSlippageBps"/> as a fraction of price: how far from its planned price execution may fill a trade,
    /// which the planner keeps in reserve when it spends cash.
    /// </summary>
    public decimal SlippageReserve => (decimal)MaxSlippageBps / 10_000m;
}

/// <summary>
/// How a computed target model set a resolved policy's targets, and from what: the model's weights, the history behind
/// the covariance (days asked for, returns it had; none when the policy gave the covariance), and the expected returns
/// a return-aware model used (the policy's, else the historical means).
/// </summary>
public sealed record ModelFit(TargetModel Model, IReadOnlyDictionary<string, double> Weights, int LookbackDays, int Observations, bool CovarianceGiven, IReadOnlyDictionary<string, double>? ExpectedReturns);

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
    IReadOnlyList<DeltaBand> DeltaBands);

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
