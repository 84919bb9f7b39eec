using Google.Protobuf.WellKnownTypes;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Grpc.Core;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.Planning.Core;
using RiskHolding = RebalanceMesh.Contracts.Risk.V1.Holding;

namespace RebalanceMesh.Planning;

/// <summary>Unit marks of instruments from pricing, with their kinds.</summary>
public sealed record MarketMarks(IReadOnlyDictionary<string, InstrumentMark> Marks, IReadOnlyDictionary<string, InstrumentKind> Kinds);

/// <summary>Why an instrument has no usable mark.</summary>
public enum MarkProblemKind
{
    Missing,
    Stale,
    Crossed,
}

public sealed record MarkProblem(MarkProblemKind Kind, string Detail);

/// <summary>The marks of one moment, and the instruments without a usable one.</summary>
public sealed record MarketSnapshot(MarketMarks Marks, IReadOnlyDictionary<string, MarkProblem> Unusable)
{
    /// <summary>Why a request over <paramref name="instruments"/> is refused: the first kind of problem among them, naming its instruments.</summary>
    public DomainException RefusalFor(IEnumerable<string> instruments)
    {
        var problems = instruments.Where(Unusable.ContainsKey).Select(i => (Instrument: i, Problem: Unusable[i])).ToArray();
        var missing = problems.Where(p => p.Problem.Kind == MarkProblemKind.Missing).Select(p => $"{p.Instrument} ({p.Problem.Detail})").ToArray();
        if (missing.Length > 0)
        {
            return new DomainException(DomainErrorKind.FailedPrecondition, $"No market price for {string.Join(", ", missing)}.");
        }

        var stale = problems.Where(p => p.Problem.Kind == MarkProblemKind.Stale).Select(p => p.Instrument).ToArray();
        if (stale.Length > 0)
        {
            return new DomainException(DomainErrorKind.FailedPrecondition, $"Prices are stale for {string.Join(", ", stale)}; refusing to plan on old prices.");
        }

        return new DomainException(DomainErrorKind.FailedPrecondition, $"The consolidated book is crossed (best bid above best ask) for {string.Join(", ", problems.Select(p => p.Instrument))}; refusing to plan until the venues agree.");
    }

    /// <summary>Whether every one of <paramref name="instruments"/> has a usable mark.</summary>
    public bool Covers(IEnumerable<string> instruments) => instruments.All(Marks.Marks.ContainsKey);

    /// <summary>The marks, for a request over <paramref name="instruments"/> they cover; else its refusal.</summary>
    public MarketMarks MarksFor(IReadOnlyCollection<string> instruments) => Covers(instruments) ? Marks : throw RefusalFor(instruments);
}

/// <summary>
/// The plan pipeline: load portfolio and policy, fresh valuations from pricing, evaluate bands and propose trades
/// (Planning.Core), measure the risk before and after with risk, and assemble the plan.
/// </summary>
public sealed class PlanPipeline(
    PlanningStore store,
    PricingService.PricingServiceClient pricing,
    PriceBatcher prices,
    RiskService.RiskServiceClient risk,
    RiskBatcher riskBatches,
    TimeProvider time,
    ILogger<PlanPipeline> logger)
{
    public static readonly ActivitySource ActivitySource = new("RebalanceMesh.Planning");
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Optimizer");
    private static readonly Histogram<double> OptimizerSeconds = Meter.CreateHistogram<double>("rebalancemesh.planning.optimizer.duration", "s", "Time of one cost-aware optimisation.");
    private static readonly Histogram<long> OptimizerIterations = Meter.CreateHistogram<long>("rebalancemesh.planning.optimizer.iterations", description: "ADMM iterations of one cost-aware optimisation.");

    public async Task<(Portfolio Portfolio, Policy? Policy)> LoadAsync(string portfolioId)
    {
        // Both reads go out together.
        var policy = store.GetPolicyAsync(portfolioId);
        var portfolio = await store.GetPortfolioAsync(portfolioId);
        return (portfolio ?? throw DomainException.NotFound($"Portfolio '{portfolioId}'"), await policy);
    }

    /// <summary>
    /// Values one unit of each instrument through pricing (registered derivatives with their terms, anything else as
    /// spot at its consolidated mid). A missing, stale or crossed price refuses the request: no plan on old prices or
    /// on a book whose venues disagree.
    /// </summary>
    public async Task<MarketMarks> GetMarksAsync(IEnumerable<string> instruments, CancellationToken cancellationToken)
    {
        var snapshot = await GetMarketSnapshotAsync(instruments, cancellationToken);
        if (snapshot.Unusable.Count > 0)
        {
            throw snapshot.RefusalFor(snapshot.Unusable.Keys);
        }

        return snapshot.Marks;
    }

    /// <summary>
    /// The market at one moment for many portfolios: each distinct instrument valued once (through the
    /// <see cref="PriceBatcher"/>, which shares calls between concurrent requests), with those that have no usable price —
    /// missing, stale or crossed — kept apart with why, so one bad instrument refuses only the portfolios that hold it.
    /// </summary>
    public async Task<MarketSnapshot> GetMarketSnapshotAsync(IEnumerable<string> instruments, CancellationToken cancellationToken)
    {
        var wanted = instruments.Distinct(StringComparer.Ordinal).ToArray();
        var marks = new Dictionary<string, InstrumentMark>(wanted.Length, StringComparer.Ordinal);
        var kinds = new Dictionary<string, InstrumentKind>(wanted.Length, StringComparer.Ordinal);
        var unusable = new Dictionary<string, MarkProblem>(StringComparer.Ordinal);
        foreach (var v in await prices.PriceAsync(wanted, cancellationToken))
        {
            if (v.Error.Length > 0)
            {
                unusable[v.InstrumentId] = new MarkProblem(MarkProblemKind.Missing, v.Error);
                continue;
            }

            if (v.Stale || v.Crossed)
            {
                unusable[v.InstrumentId] = new MarkProblem(v.Stale ? MarkProblemKind.Stale : MarkProblemKind.Crossed, string.Empty);
                continue;
            }

            marks[v.InstrumentId] = new InstrumentMark(
                v.Price.ToDecimal(),
                Margined: v.Kind is InstrumentKind.Perpetual or InstrumentKind.Future,
                Multiplier: (decimal)(v.Multiplier > 0 ? v.Multiplier : 1.0),
                DeltaExposure: v.DollarDelta,
                Underlying: v.UnderlyingId.Length > 0 ? v.UnderlyingId : null);
            kinds[v.InstrumentId] = v.Kind;
        }

        foreach (var id in wanted.Where(id => !marks.ContainsKey(id) && !unusable.ContainsKey(id)))
        {
            unusable[id] = new MarkProblem(MarkProblemKind.Missing, "pricing did not value it");
        }

        return new MarketSnapshot(new MarketMarks(marks, kinds), unusable);
    }

    /// <summary>Instruments a portfolio is marked over: those held, pledged to or owed by its loans, its foreign currencies, and those targeted by its policy.</summary>
    public static string[] InstrumentsOf(PortfolioSnapshot snapshot, IEnumerable<string> targeted) =>
        snapshot.Holdings.Select(h => h.InstrumentId).Concat(snapshot.LoanInstruments).Concat(snapshot.ForeignCash.Select(c => c.Currency)).Concat(targeted).Distinct(StringComparer.Ordinal).ToArray();

    /// <summary>Instruments a portfolio is marked over under a policy: also its targets and hedge instruments.</summary>
    public static string[] InstrumentsOf(PortfolioSnapshot snapshot, TargetPolicy? policy) =>
        InstrumentsOf(snapshot, (policy?.Targets.Keys ?? []).Concat(policy?.HedgeRules.Select(h => h.HedgeInstrument) ?? []));

    /// <summary>Marks a portfolio through pricing over its held and targeted instruments.</summary>
    public async Task<(MarkedPortfolio Marked, MarketMarks Marks)> MarkAsync(PortfolioSnapshot snapshot, TargetPolicy? policy, CancellationToken cancellationToken)
    {
        var marks = await GetMarksAsync(InstrumentsOf(snapshot, policy), cancellationToken);
        return (PortfolioMarking.Mark(snapshot, policy, marks.Marks), marks);
    }

    /// <summary>
    /// The policy in domain terms with its target weights set by its model and brought inside its risk limits
    /// (<see cref="PlanComposer.ResolvePolicyAsync"/>), with the market data of the mesh.
    /// </summary>
    public async Task<(TargetPolicy Policy, IReadOnlyList<Contracts.Planning.V1.DriftReason> Reasons)> ResolvePolicyAsync(Policy policy, IPlanningMarketData? market, CancellationToken cancellationToken)
    {
        var (resolved, reasons) = await PlanComposer.ResolvePolicyAsync(policy.ToDomain(), market ?? MarketData(), cancellationToken);
        return (resolved, reasons.Select(r => r.ToWire()).ToArray());
    }

    /// <summary>Covariance and mean returns estimated by risk from market-state history; half-spreads from pricing's quotes.</summary>
    public IPlanningMarketData MarketData() => new MeshMarketData(pricing, risk);

    /// <summary>
    /// Whether a leg protects a loan or a margin account (its purpose is one of the guards), as opposed to rebalancing
    /// and hedge legs. A plan stored before legs carried their purpose counts its loan, top-up and transfer legs.
    /// </summary>
    public static bool Protects(PlanLeg leg) =>
        leg.Purpose is LegPurpose.LiquidationGuard or LegPurpose.MarginGuard
        || (leg.Purpose == LegPurpose.Unspecified && !leg.Kind.IsTrade());

    private static PlanLeg Purpose(PlanLeg leg, LegPurpose purpose)
    {
        leg.Purpose = purpose;
        return leg;
    }

    /// <summary>Why a breach has no trade: what breached, and what stands in the way.</summary>
    private static string Uncurable(DriftEvaluation evaluation) =>
        $"bands breached ({string.Join(", ", evaluation.Reasons.Where(r => r.Breached).Select(r => r.InstrumentId.Length > 0 ? r.InstrumentId : r.Rule).Distinct())}) but no trade cures them: "
        + "no whole number of lots of at least the minimum notional lands inside the band, or cash cannot pay for one";

    /// <summary>Builds the plan that would rebalance the portfolio now; status PREVIEW, or NO_ACTION without trades.</summary>
    public Task<Plan> BuildAsync(string portfolioId, bool force, CancellationToken cancellationToken) =>
        BuildAsync(portfolioId, force, batch: null, cancellationToken);

    /// <summary>
    /// Builds a plan; in a batch (<paramref name="batch"/>) on the batch's market snapshot and shared covariance
    /// estimates, so every plan of the batch sees the same prices and a model's universe is estimated once.
    /// </summary>
    public async Task<Plan> BuildAsync(string portfolioId, bool force, BatchMarket? batch, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("build plan");
        activity?.SetTag("planning.portfolio_id", portfolioId);
        var clock = new StageClock(activity);
        var (portfolio, policy) = await LoadAsync(portfolioId);
        clock.Lap("planning.build.load_ms");
        if (policy is null)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Portfolio '{portfolioId}' has no policy; call SetPolicy first.");
        }

        var snapshot = portfolio.ToDomain();
        var market = batch?.Market ?? new SharedMarketData(MarketData());
        var (targetPolicy, policyReasons) = await ResolvePolicyAsync(policy, market, cancellationToken);
        var instruments = InstrumentsOf(snapshot, targetPolicy);
        var marks = batch is null ? await GetMarksAsync(instruments, cancellationToken) : batch.Snapshot.MarksFor(instruments);
        clock.Lap("planning.build.market_ms");
        var composed = await PlanComposer.ComposeAsync(snapshot, targetPolicy, marks.Marks, force, market, time, cancellationToken);
        clock.Lap("planning.build.compose_ms");
        RecordOptimizer(composed);
        var (proposal, guardLegs, marginLegs, hedgeLegs, emergency) = (composed.Proposal, composed.GuardLegs, composed.MarginLegs, composed.Hedges, composed.Emergency);
        var costRate = targetPolicy.CostRate;
        activity?.SetTag("planning.legs", proposal.Legs.Count);
        activity?.SetTag("planning.hedge_legs", hedgeLegs.Count);
        activity?.SetTag("planning.guard_legs", guardLegs.Count);
        activity?.SetTag("planning.margin_legs", marginLegs.Count);
        activity?.SetTag("planning.total_drift", proposal.Evaluation.TotalDrift);
        activity?.SetTag("planning.covariance_fetches", market.Fetches);

        var collateralLegs = (composed.Margin?.TopUpList.Count ?? 0) + (composed.Margin?.TransferList.Count ?? 0);
        var guardCost = guardLegs.Where(l => l.Action is GuardAction.Sell or GuardAction.Buy).Sum(l => decimal.Round(l.Value * costRate, 8));
        var hasLegs = composed.HasLegs;
        var hedgeCost = hedgeLegs.Sum(l => decimal.Round(l.Quantity * l.Price * l.Multiplier * costRate, 8))
            + marginLegs.Sum(l => decimal.Round(l.Quantity * l.Price * l.Multiplier * costRate, 8));
        var now = time.GetUtcNow().ToTimestamp();
        var plan = new Plan
        {
            PlanId = "plan-" + Guid.NewGuid().ToString("N")[..16],
            PortfolioId = portfolioId,
            PortfolioVersion = portfolio.Version,
            PolicyVersion = policy.Version,
            Status = hasLegs ? PlanStatus.Preview : PlanStatus.NoAction,
            NoActionReason = hasLegs ? NoActionReason.Unspecified : proposal.Evaluation.Breached ? NoActionReason.Uncurable : NoActionReason.InsideBands,
            EstimatedCost = proposal.EstimatedCost + guardCost + hedgeCost,
            Turnover = proposal.Turnover,
            TotalDrift = proposal.Evaluation.TotalDrift,
            NetValue = proposal.NetValue,
            CashBefore = snapshot.Cash,
            CreatedAt = now,
            UpdatedAt = now,
            TraceId = Activity.Current?.TraceId.ToHexString() ?? string.Empty,
            StatusMessage = emergency
                ? $"EMERGENCY: {guardLegs.Count} guard legs and {marginLegs.Count + collateralLegs} margin legs restore the health factor and margin ratio before anything else"
                : hasLegs
                    ? $"{guardLegs.Count} guard legs, {marginLegs.Count + collateralLegs} margin legs, {proposal.Legs.Count} rebalancing legs, {hedgeLegs.Count} hedge legs, turnover {proposal.Turnover:P2}, estimated cost {proposal.EstimatedCost + guardCost + hedgeCost:F2}"
                    : (proposal.Evaluation.Breached ? Uncurable(proposal.Evaluation) : "portfolio is inside its bands"),
        };
        var leading = guardLegs.Count + collateralLegs + marginLegs.Count;
        plan.Legs.AddRange(guardLegs.Select((l, i) => l.ToWire($"G{i + 1}", i + 1, costRate, k => $"G{k + 1}")).Select(l => Purpose(l, LegPurpose.LiquidationGuard)));
        // The margin guard's top-ups go before its closes: cash restores an account before any position is given up.
        // Then collateral moves between venues, then the closes.
        var topUps = composed.Margin?.TopUpList ?? [];
        var transfers = composed.Margin?.TransferList ?? [];
        plan.Legs.AddRange(topUps.Select((t, i) => t.ToWire($"T{i + 1}", guardLegs.Count + i + 1, snapshot.BaseCurrency)).Select(l => Purpose(l, LegPurpose.MarginGuard)));
        plan.Legs.AddRange(transfers.Select((t, i) => t.ToWire($"X{i + 1}", guardLegs.Count + topUps.Count + i + 1, snapshot.BaseCurrency)).Select(l => Purpose(l, LegPurpose.MarginGuard)));
        plan.Legs.AddRange(marginLegs.Select((l, i) => l.ToWire($"M{i + 1}", guardLegs.Count + collateralLegs + i + 1, costRate)).Select(l => Purpose(l, LegPurpose.MarginGuard)));
        // Rebalancing legs keep their order (sells before buys); each hedge follows the last leg on its underlying and
        // names it, so execution sends the hedge in step with that leg's slices.
        var sequence = leading;
        string? lastRebalancing = null;
        foreach (var (rebalancing, index) in PlanComposer.Interleave(proposal.Legs, hedgeLegs, composed.Marked))
        {
            var wire = rebalancing ? proposal.Legs[index].ToWire() : hedgeLegs[index].ToWire($"H{index + 1}", 0, costRate);
            wire.Purpose = rebalancing ? LegPurpose.Rebalance : LegPurpose.Hedge;
            wire.Sequence = ++sequence;
            if (rebalancing)
            {
                lastRebalancing = wire.LegId;
            }
            else if (lastRebalancing is not null)
            {
                wire.HedgesLegId = lastRebalancing;
            }

            plan.Legs.Add(wire);
        }

        foreach (var leg in plan.Legs.Where(l => !l.Kind.IsTrade()))
        {
            leg.CashChange = leg.CashMoved(snapshot.BaseCurrency);
        }

        plan.Reasons.AddRange(policyReasons);

        plan.Reasons.AddRange((composed.Guard?.Reasons ?? []).Select(r => r.ToWire()));
        plan.Reasons.AddRange((composed.Margin?.Reasons ?? []).Select(r => r.ToWire()));
        plan.Reasons.AddRange(proposal.Evaluation.Reasons.Select(r => r.ToWire()));
        plan.Reasons.AddRange(composed.HedgeReasons.Select(r => r.ToWire()));
        if (proposal.Rounding is { } rounding)
        {
            plan.Reasons.Add(new Contracts.Planning.V1.DriftReason
            {
                Rule = "lot_rounding",
                Measured = (double)rounding.Deviation,
                Breached = false,
                Message = string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"whole lots by CP-SAT{(rounding.Optimal ? " (optimal)" : " (best found in the time limit)")}: {rounding.Deviation:N2} of notional from the unrounded plan, {rounding.CashAfter:N2} of cash left"),
            });
        }
        if (composed.Optimized is { } optimized)
        {
            plan.Reasons.Add(optimized.Reason.ToWire());
        }

        clock.Lap("planning.build.legs_ms");
        plan.Risk = proposal.HasTrades
            ? await MeasureRiskAsync(composed.Snapshot, composed.Marked, marks, proposal, cancellationToken)
            : new RiskImpact { UnavailableReason = guardLegs.Count > 0 ? "guard legs only (loan collateral is measured by the risk service's loan figures)" : "no trades" };
        clock.Lap("planning.build.risk_ms");
        return plan;
    }

    /// <summary>The optimiser's time and iterations as metrics, and its run as a span of the plan's trace.</summary>
    private static void RecordOptimizer(ComposedPlan composed)
    {
        if (composed is not { Optimized: { } optimized, OptimizerTime: { } timing })
        {
            return;
        }

        OptimizerSeconds.Record(timing.Elapsed.TotalSeconds);
        OptimizerIterations.Record(optimized.Result.Iterations);
        using var span = ActivitySource.StartActivity("optimize", ActivityKind.Internal, Activity.Current?.Context ?? default, startTime: timing.Started);
        span?.SetTag("planning.optimizer.assets", optimized.Weights.Count);
        span?.SetTag("planning.optimizer.iterations", optimized.Result.Iterations);
        span?.SetTag("planning.optimizer.turnover", optimized.Result.Turnover);
        span?.SetEndTime((timing.Started + timing.Elapsed).UtcDateTime);
    }

    private async Task<RiskImpact> MeasureRiskAsync(PortfolioSnapshot snapshot, MarkedPortfolio marked, MarketMarks marks, RebalanceProposal proposal, CancellationToken cancellationToken)
    {
        // Spot holdings go with the price the plan used; derivatives go by id and risk values them through pricing
        // (options revalued in full under each historical scenario). Each holding keeps its account, and each leg trades
        // in the account it names; targeted instruments not yet held, and accounts a leg opens, start at zero. Cash in
        // other currencies goes in as holdings of the currency; margin collateral counts as cash.
        var request = new CompareRiskRequest
        {
            Cash = marked.Cash + marked.MarginCollateral,
            Settings = new RiskSettings { HorizonDays = 1, ConfidenceLevels = { 0.99 }, Methods = { Contracts.Risk.V1.VarMethod.Historical } },
        };
        var prices = marked.Positions.ToDictionary(p => p.InstrumentId, p => p.Price, StringComparer.Ordinal);
        foreach (var cash in marked.ForeignCash ?? [])
        {
            prices[cash.Currency] = cash.Rate; // foreign cash is held as its currency: exchange-rate risk
        }

        var rows = snapshot.Holdings
            .Concat(snapshot.ForeignCash.Where(c => c.Amount > 0).Select(c => new Core.Holding(c.Currency, c.Amount)))
            .Concat(marked.Positions.Where(p => p.Quantity == 0 && p.Accounts is not { Count: > 0 }).Select(p => new Core.Holding(p.InstrumentId, 0m)))
            .Concat(proposal.Legs.Select(l => new Core.Holding(l.InstrumentId, 0m, Venue: l.Venue)))
            .DistinctBy(h => (h.InstrumentId, h.Venue));
        request.Holdings.AddRange(rows.Select(h =>
        {
            var holding = new RiskHolding { InstrumentId = h.InstrumentId, Quantity = h.Quantity, Venue = h.Venue };
            if (h.EntryPrice is { } entry)
            {
                holding.EntryPrice = entry;
            }

            if (marks.Kinds.GetValueOrDefault(h.InstrumentId, InstrumentKind.Spot) == InstrumentKind.Spot && prices.TryGetValue(h.InstrumentId, out var price))
            {
                holding.Price = price;
            }

            return holding;
        }));
        request.Trades.AddRange(proposal.Legs.Select(l => new TradeDelta
        {
            InstrumentId = l.InstrumentId,
            QuantityChange = l.Side == TradeSide.Buy ? l.Quantity : -l.Quantity,
            Venue = l.Venue,
        }));
        try
        {
            var response = await riskBatches.CompareAsync(request, cancellationToken);
            return new RiskImpact
            {
                VolatilityBefore = response.Before.AnnualVolatility,
                VolatilityAfter = response.After.AnnualVolatility,
                Var99Before = response.Before.Estimates.FirstOrDefault()?.Var ?? 0,
                Var99After = response.After.Estimates.FirstOrDefault()?.Var ?? 0,
                VarianceChange = response.VarianceChange,
            };
        }
        catch (RpcException ex) when (ex.StatusCode is not StatusCode.Cancelled)
        {
            // A plan is still useful without its risk figures; say why they are missing.
            logger.LogWarning("Risk service could not measure the plan for {PortfolioId}: {Status} {Detail}", snapshot.PortfolioId, ex.StatusCode, ex.Status.Detail);
            return new RiskImpact { UnavailableReason = $"risk service: {ex.Status.StatusCode} {ex.Status.Detail}" };
        }
    }
}

/// <summary>What the plans of one batch share: one market snapshot, and covariance estimates fetched once.</summary>
public sealed record BatchMarket(MarketSnapshot Snapshot, SharedMarketData Market);
