using System.Diagnostics;
using System.Globalization;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Planning.Core;

/// <summary>How a policy's target weights are computed, and from what.</summary>
/// <param name="LookbackDays">Days of history for estimated covariance and mean returns (0 means 250).</param>
/// <param name="Covariance">Annualised covariance of the targets passed in (in the targets' order); null: estimated.</param>
/// <param name="RiskAversion">γ of the mean-variance model.</param>
public sealed record TargetModelSpec(
    TargetModel Model,
    int LookbackDays = 0,
    double[,]? Covariance = null,
    double RiskFreeRate = 0,
    double RiskAversion = 1,
    double TargetReturn = 0,
    double TargetVolatility = 0) : IPolicyPart
{
    public const int DefaultLookbackDays = 250;

    /// <summary>The targets as given.</summary>
    public static TargetModelSpec Fixed { get; } = new(TargetModel.FixedWeights);

    public int Lookback => LookbackDays > 0 ? LookbackDays : DefaultLookbackDays;
}

/// <summary>Annualised covariance and mean log returns of some instruments' daily returns, in their order.</summary>
/// <param name="Observations">Daily returns behind the estimate (zero when not known).</param>
public sealed record CovarianceEstimate(IReadOnlyList<string> Instruments, double[,] AnnualCovariance, double[] AnnualMeans, int Observations = 0)
{
    /// <summary>The estimate restricted to <paramref name="instruments"/> (all of which it covers), in their order.</summary>
    public CovarianceEstimate Restrict(IReadOnlyList<string> instruments)
    {
        var index = Instruments.Select((id, i) => (id, i)).ToDictionary(x => x.id, x => x.i, StringComparer.Ordinal);
        var at = instruments.Select(id => index[id]).ToArray();
        var covariance = new double[at.Length, at.Length];
        for (var i = 0; i < at.Length; i++)
        {
            for (var j = 0; j < at.Length; j++)
            {
                covariance[i, j] = AnnualCovariance[at[i], at[j]];
            }
        }

        return new CovarianceEstimate(instruments.ToArray(), covariance, at.Select(i => AnnualMeans[i]).ToArray(), Observations);
    }
}

/// <summary>
/// What planning needs from the market besides unit marks: estimated covariance and mean returns, and half-spreads.
/// Live, the host asks the risk and pricing services; a backtest answers from the history up to the day it replays.
/// </summary>
public interface IPlanningMarketData
{
    Task<CovarianceEstimate> EstimateCovarianceAsync(IReadOnlyList<string> instruments, int lookbackDays, CancellationToken cancellationToken);

    /// <summary>Half the best bid-ask spread over the mid per instrument; missing means zero.</summary>
    Task<IReadOnlyDictionary<string, double>> HalfSpreadsAsync(IReadOnlyList<string> instruments, CancellationToken cancellationToken);
}

/// <summary>
/// One plan's (or one batch's) market data: each covariance estimate is fetched once and serves every later request it
/// covers (the target model, the risk limits and the optimiser share it, and a batch's plans of one model; a subset is
/// read from the larger matrix). Safe for concurrent plans: concurrent requests share one fetch.
/// </summary>
public sealed class SharedMarketData(IPlanningMarketData inner) : IPlanningMarketData
{
    // Estimates asked for, as the instruments asked and the fetch (shared by concurrent askers: a batch of plans).
    private readonly List<(int Lookback, HashSet<string> Instruments, Task<CovarianceEstimate> Estimate)> _estimates = [];
    private int _fetches;

    /// <summary>Estimates fetched from the inner source (the rest were served from them).</summary>
    public int Fetches => Volatile.Read(ref _fetches);

    public async Task<CovarianceEstimate> EstimateCovarianceAsync(IReadOnlyList<string> instruments, int lookbackDays, CancellationToken cancellationToken)
    {
        Task<CovarianceEstimate>? shared = null;
        lock (_estimates)
        {
            foreach (var (lookback, asked, estimate) in _estimates)
            {
                if (lookback == lookbackDays && instruments.All(asked.Contains) && !estimate.IsFaulted && !estimate.IsCanceled)
                {
                    shared = estimate;
                    break;
                }
            }

            if (shared is null)
            {
                shared = inner.EstimateCovarianceAsync(instruments, lookbackDays, cancellationToken);
                _fetches++;
                _estimates.Add((lookbackDays, instruments.ToHashSet(StringComparer.Ordinal), shared));
            }
        }

        var fetched = await shared;
        return fetched.Instruments.SequenceEqual(instruments) ? fetched : fetched.Restrict(instruments);
    }

    public Task<IReadOnlyDictionary<string, double>> HalfSpreadsAsync(IReadOnlyList<string> instruments, CancellationToken cancellationToken) =>
        inner.HalfSpreadsAsync(instruments, cancellationToken);
}

/// <summary>What the pipeline decided for one portfolio, stage by stage.</summary>
/// <param name="Snapshot">The portfolio after the guard's legs (as it will be when the rebalancing legs trade).</param>
/// <param name="Marked">That portfolio marked to market.</param>
/// <param name="OptimizerTime">When the optimiser ran and for how long (setting up and solving).</param>
public sealed record ComposedPlan(
    PortfolioSnapshot Snapshot,
    MarkedPortfolio Marked,
    GuardPlan? Guard,
    RebalanceProposal Proposal,
    IReadOnlyList<HedgeLeg> Hedges,
    IReadOnlyList<DriftReason> HedgeReasons,
    OptimizedWeights? Optimized,
    (DateTimeOffset Started, TimeSpan Elapsed)? OptimizerTime,
    MarginPlan? Margin = null)
{
    /// <summary>A loan or the margin ratio is below its emergency level: the plan is the guards' legs alone.</summary>
    public bool Emergency => Guard is { Emergency: true, Acts: true } || Margin is { Emergency: true, Acts: true };

    public IReadOnlyList<GuardLeg> GuardLegs => Guard?.Legs ?? [];

    public IReadOnlyList<MarginLeg> MarginLegs => Margin?.Legs ?? [];

    public bool HasLegs => Proposal.HasTrades || GuardLegs.Count > 0 || Margin?.Acts == true || Hedges.Count > 0;
}

/// <summary>Every rule of a policy measured on a portfolio as it stands (<see cref="PlanComposer.Assess"/>).</summary>
/// <param name="Ripcord">A leverage band's ripcord is pulled.</param>
public sealed record PolicyAssessment(MarkedPortfolio Marked, GuardPlan? Guard, MarginPlan? Margin, DriftEvaluation Bands, IReadOnlyList<DriftReason> HedgeReasons, bool Ripcord)
{
    /// <summary>Every measurement: the guards' first, then the bands and limits, then the hedges.</summary>
    public IReadOnlyList<DriftReason> Reasons => [.. Guard?.Reasons ?? [], .. Margin?.Reasons ?? [], .. Bands.Reasons, .. HedgeReasons];

    /// <summary>A loan below its emergency health factor, the margin ratio below its emergency level, or a ripcord pulled.</summary>
    public bool Emergency => Guard?.Emergency == true || Margin?.Emergency == true || Ripcord;
}

/// <summary>
/// The staged planning pipeline of ARCHITECTURE.md, shared by the live service and the backtest:
/// policy resolution (target model, risk limits) → liquidation guard → trigger evaluation → cost-aware optimiser →
/// plan builder (lots, minimum notionals, cash never negative) → delta hedges beside the legs they hedge.
/// </summary>
public static class PlanComposer
{
    public const string TargetModelRule = "target_model";

    /// <summary>
    /// The policy with its target weights set — as given, or computed by its target model from the covariance passed
    /// in or estimated over its targets — and brought inside its risk limits (weights capped, invested share scaled to
    /// the volatility and VaR limits). The reasons record what the model chose and what the limits changed.
    /// </summary>
    public static async Task<(TargetPolicy Policy, IReadOnlyList<DriftReason> Reasons)> ResolvePolicyAsync(
        TargetPolicy policy, IPlanningMarketData market, CancellationToken cancellationToken)
    {
        var spec = policy.ModelSpec;
        var ids = policy.Targets.Keys.ToArray();
        var reasons = new List<DriftReason>();
        CovarianceEstimate? estimate = null;
        async Task<double[,]> CovarianceAsync()
        {
            if (spec.Covariance is { } given)
            {
                return given;
            }

            estimate ??= await market.EstimateCovarianceAsync(ids, spec.Lookback, cancellationToken);
            return estimate.AnnualCovariance;
        }

        if (spec.Model != TargetModel.FixedWeights && ids.Length > 0)
        {
            var budget = policy.Targets.Values.Sum();
            double[] weights;
            ReturnModelInputs? returns = null;
            if (spec.Model == TargetModel.EqualWeight)
            {
                weights = TargetModels.Compute(spec.Model, new double[ids.Length, ids.Length], budget);
            }
            else
            {
                var covariance = await CovarianceAsync();
                if (TargetModels.NeedsReturns(spec.Model))
                {
                    var given = policy.ExpectedReturns ?? new Dictionary<string, double>();
                    var means = ids.All(given.ContainsKey)
                        ? null
                        : (estimate ??= await market.EstimateCovarianceAsync(ids, spec.Lookback, cancellationToken)).AnnualMeans;
                    returns = new ReturnModelInputs(
                        ids.Select((id, i) => given.TryGetValue(id, out var expected) ? expected : means![i]).ToArray(),
                        spec.RiskFreeRate,
                        spec.RiskAversion == 0 ? 1 : spec.RiskAversion,
                        spec.TargetReturn,
                        spec.TargetVolatility);
                }

                try
                {
                    weights = TargetModels.Compute(spec.Model, covariance, budget, returns);
                }
                catch (ArgumentException ex)
                {
                    // The model's own reason stays attached (an InfeasibleModelException names the parameter at fault).
                    throw new DomainException($"Target model {spec.Model} cannot size the universe: {ex.Message}", ex);
                }
            }

            var computed = ids.Select((id, i) => (id, w: weights[i])).ToDictionary(x => x.id, x => x.w, StringComparer.Ordinal);
            policy = (policy with { Targets = computed }).With(
                new ModelFit(spec.Model, computed, spec.Covariance is null ? spec.Lookback : 0, estimate?.Observations ?? 0, spec.Covariance is not null,
                    returns is null ? null : ids.Select((id, i) => (id, r: returns.ExpectedReturns[i])).ToDictionary(x => x.id, x => x.r, StringComparer.Ordinal)));
            reasons.Add(new DriftReason(TargetModelRule, string.Empty, budget, budget, false,
                $"{spec.Model} targets: " + string.Join(", ", ids.Select((id, i) => string.Create(CultureInfo.InvariantCulture, $"{id} {weights[i]:P2}")))));
        }

        if (policy.Part<RiskLimits>() is { } limits && ids.Length > 0)
        {
            // Concentration needs no covariance; volatility and VaR limits do.
            var riskModel = limits.MaxVolatility > 0 || limits.MaxVar99 > 0
                ? new RiskModelInputs(ids, await CovarianceAsync())
                : new RiskModelInputs(ids, new double[ids.Length, ids.Length]);
            var (capped, limitReasons) = RiskLimitRules.ApplyToTargets(policy.Targets, limits, riskModel);
            policy = (policy with { Targets = capped }).With(limits with { Model = riskModel });
            reasons.AddRange(limitReasons);
        }

        return (policy, reasons);
    }

    /// <summary>
    /// The trigger stage the monitor and the plan pipeline share: the portfolio marked, then every rule of the policy
    /// measured on it as it stands — the liquidation guard's health factors, the margin guard's ratio, the bands and
    /// risk limits, the delta hedges. A new rule is measured here once for both.
    /// </summary>
    /// <param name="describeAll">False: only breached band measurements carry their message (the monitor).</param>
    public static PolicyAssessment Assess(PortfolioSnapshot snapshot, TargetPolicy policy, IReadOnlyDictionary<string, InstrumentMark> marks, bool describeAll = true)
    {
        var marked = PortfolioMarking.Mark(snapshot, policy, marks);
        var guard = Guard(snapshot, policy, marks);
        var margin = Margin(marked, snapshot, policy, marks);
        var bands = DriftEvaluator.Evaluate(marked, policy, describeAll);
        var (_, hedgeReasons, ripcord) = Hedges(marked, marks, policy, []);
        return new PolicyAssessment(marked, guard, margin, bands, hedgeReasons, ripcord);
    }

    /// <summary>
    /// Runs the pipeline on a portfolio under a resolved policy. The guards go first — the liquidation guard for loans,
    /// then the margin guard for margined contracts: their legs lead the plan and the rest is planned on the portfolio
    /// after them; in an emergency the plan is the guards' legs alone
    /// (no optimisation, no rebalancing, no hedges). The optimiser runs when the policy has one and the bands are
    /// breached (or the rebalance is forced).
    /// </summary>
    public static async Task<ComposedPlan> ComposeAsync(
        PortfolioSnapshot snapshot,
        TargetPolicy policy,
        IReadOnlyDictionary<string, InstrumentMark> marks,
        bool force,
        IPlanningMarketData market,
        TimeProvider time,
        CancellationToken cancellationToken)
    {
        var costRate = policy.CostRate;
        var assessed = Assess(snapshot, policy, marks);
        var (marked, guard, margin) = (assessed.Marked, assessed.Guard, assessed.Margin);
        DriftEvaluation? evaluation = assessed.Bands;
        if (guard?.Acts == true)
        {
            // The rest is planned on the portfolio after the guard's legs.
            snapshot = LiquidationGuard.Apply(snapshot, guard, snapshot.BaseCurrency, costRate);
            marked = PortfolioMarking.Mark(snapshot, policy, marks);
            margin = Margin(marked, snapshot, policy, marks);
            evaluation = null;
        }

        if (margin?.Acts == true)
        {
            snapshot = MarginGuard.Apply(snapshot, margin, costRate);
            marked = PortfolioMarking.Mark(snapshot, policy, marks);
            evaluation = null;
        }

        var emergency = guard is { Emergency: true, Acts: true } || margin is { Emergency: true, Acts: true };

        evaluation ??= DriftEvaluator.Evaluate(marked, policy);
        OptimizedWeights? optimized = null;
        (DateTimeOffset, TimeSpan)? optimizerTime = null;
        if (!emergency && policy.Part<OptimizerPolicy>() is not null && (force || evaluation.Breached))
        {
            var started = time.GetUtcNow();
            var clock = Stopwatch.GetTimestamp();
            optimized = await OptimizeAsync(marked, policy, market, cancellationToken);
            optimizerTime = (started, Stopwatch.GetElapsedTime(clock));
        }

        var proposal = emergency
            ? new RebalanceProposal(evaluation, [], marked.NetValue, 0m, 0, marked.Cash)
            : RebalancePlanner.Propose(marked, policy, force, optimized, evaluation);
        var (hedges, hedgeReasons, _) = emergency ? ([], [], false) : Hedges(marked, marks, policy, proposal.Legs);
        return new ComposedPlan(snapshot, marked, guard, proposal, hedges, hedgeReasons, optimized, optimizerTime, margin);
    }

    /// <summary>The cost-aware optimiser on the marked portfolio: covariance of its universe and half-spreads from the market.</summary>
    public static async Task<OptimizedWeights> OptimizeAsync(MarkedPortfolio marked, TargetPolicy policy, IPlanningMarketData market, CancellationToken cancellationToken)
    {
        var universe = OptimizedRebalance.Universe(marked, policy);
        if (universe.Count == 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, "The optimiser has no spot instrument to trade: target some, or hold some that are not on the no-trade list.");
        }

        var lookback = policy.ModelSpec.Lookback;
        var estimate = await market.EstimateCovarianceAsync(universe, lookback, cancellationToken);
        var halfSpreads = await market.HalfSpreadsAsync(universe, cancellationToken);
        return OptimizedRebalance.Choose(marked, policy, new OptimizerMarket(universe, estimate.AnnualCovariance, halfSpreads));
    }

    /// <summary>The liquidation guard's plan for the portfolio's loans, when the policy has a health-factor band.</summary>
    public static GuardPlan? Guard(PortfolioSnapshot snapshot, TargetPolicy policy, IReadOnlyDictionary<string, InstrumentMark> marks) =>
        policy.Part<HealthFactorBand>() is { } band && snapshot.LoanList.Count > 0
            ? LiquidationGuard.Plan(snapshot, marks.ToDictionary(kv => kv.Key, kv => kv.Value.UnitPrice, StringComparer.Ordinal), snapshot.BaseCurrency, band, policy.CostRate)
            : null;

    /// <summary>
    /// The order rebalancing legs and hedges execute in: each hedge right after the last rebalancing leg on its
    /// underlying, so net delta leaves its tolerance for one leg at most while the plan executes; hedges of
    /// underlyings no leg trades go first (they correct delta that is already out of tolerance). Returns, in execution
    /// order, each leg as (true, index into <paramref name="legs"/>) or (false, index into <paramref name="hedges"/>).
    /// </summary>
    public static IReadOnlyList<(bool Rebalancing, int Index)> Interleave(IReadOnlyList<PlannedLeg> legs, IReadOnlyList<HedgeLeg> hedges, MarkedPortfolio marked)
    {
        var underlyingOf = marked.Positions.ToDictionary(p => p.InstrumentId, p => p.UnderlyingId, StringComparer.Ordinal);
        string Underlying(PlannedLeg leg) => underlyingOf.GetValueOrDefault(leg.InstrumentId, leg.InstrumentId);
        var lastLeg = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < legs.Count; i++)
        {
            lastLeg[Underlying(legs[i])] = i;
        }

        var order = new List<(bool, int)>();
        order.AddRange(hedges.Select((h, k) => (h, k)).Where(x => !lastLeg.ContainsKey(x.h.Underlying)).Select(x => (false, x.k)));
        for (var i = 0; i < legs.Count; i++)
        {
            order.Add((true, i));
            order.AddRange(hedges.Select((h, k) => (h, k)).Where(x => lastLeg.TryGetValue(x.h.Underlying, out var last) && last == i).Select(x => (false, x.k)));
        }

        return order;
    }

    /// <summary>The margin guard's plan for the portfolio's margined contracts, when the policy has a margin band.</summary>
    public static MarginPlan? Margin(MarkedPortfolio marked, PortfolioSnapshot snapshot, TargetPolicy policy, IReadOnlyDictionary<string, InstrumentMark> marks) =>
        policy.Part<MarginBand>() is { } band ? MarginGuard.Plan(marked, snapshot.Holdings, marks, band, policy.CostRate, snapshot.MarginAccountList, snapshot.Cash) : null;

    /// <summary>
    /// The policy's delta hedges, measured on the portfolio after <paramref name="legs"/> (each leg moves delta by its
    /// signed quantity × the instrument's delta per unit, on its underlying).
    /// </summary>
    public static (IReadOnlyList<HedgeLeg> Legs, IReadOnlyList<DriftReason> Reasons, bool Ripcord) Hedges(
        MarkedPortfolio marked, IReadOnlyDictionary<string, InstrumentMark> marks, TargetPolicy policy, IReadOnlyList<PlannedLeg> legs)
    {
        if (policy.HedgeRules is not { Count: > 0 } rules)
        {
            return ([], [], false);
        }

        var positions = marked.Positions.ToDictionary(p => p.InstrumentId, StringComparer.Ordinal);
        var moves = legs
            .GroupBy(l => positions.TryGetValue(l.InstrumentId, out var p) ? p.UnderlyingId : l.InstrumentId, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Sum(l => (double)(l.Side == TradeSide.Buy ? l.Quantity : -l.Quantity) * marks[l.InstrumentId].DeltaExposure), StringComparer.Ordinal);
        return DeltaHedger.Plan(marked, marks, rules, moves);
    }
}
