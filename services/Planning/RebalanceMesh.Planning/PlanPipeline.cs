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

/// <summary>
/// The plan pipeline: load portfolio and policy, fresh valuations from pricing, evaluate bands and propose trades
/// (Planning.Core), measure the risk before and after with risk, and assemble the plan.
/// </summary>
public sealed class PlanPipeline(
    PlanningStore store,
    PricingService.PricingServiceClient pricing,
    RiskService.RiskServiceClient risk,
    TimeProvider time,
    ILogger<PlanPipeline> logger)
{
    public static readonly ActivitySource ActivitySource = new("RebalanceMesh.Planning");
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Optimizer");
    private static readonly Histogram<double> OptimizerSeconds = Meter.CreateHistogram<double>("rebalancemesh.planning.optimizer.duration", "s", "Time of one cost-aware optimisation.");
    private static readonly Histogram<long> OptimizerIterations = Meter.CreateHistogram<long>("rebalancemesh.planning.optimizer.iterations", description: "ADMM iterations of one cost-aware optimisation.");

    public async Task<(Portfolio Portfolio, Policy? Policy)> LoadAsync(string portfolioId)
    {
        var portfolio = await store.GetPortfolioAsync(portfolioId) ?? throw DomainException.NotFound($"Portfolio '{portfolioId}'");
        return (portfolio, await store.GetPolicyAsync(portfolioId));
    }

    /// <summary>
    /// Values one unit of each instrument through pricing (registered derivatives with their terms, anything else as
    /// spot at its consolidated mid). A missing or stale price refuses the request: no plan on old prices.
    /// </summary>
    public async Task<MarketMarks> GetMarksAsync(IEnumerable<string> instruments, CancellationToken cancellationToken)
    {
        var request = new PriceInstrumentsRequest();
        request.Items.AddRange(instruments.Distinct(StringComparer.Ordinal).Select(id => new ValuationItem { InstrumentId = id }));
        if (request.Items.Count == 0)
        {
            return new MarketMarks(new Dictionary<string, InstrumentMark>(), new Dictionary<string, InstrumentKind>());
        }

        var response = await pricing.PriceInstrumentsAsync(request, cancellationToken: cancellationToken);
        var missing = response.Valuations.Where(v => v.Error.Length > 0).Select(v => $"{v.InstrumentId} ({v.Error})").ToArray();
        if (missing.Length > 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"No market price for {string.Join(", ", missing)}.");
        }

        var stale = response.Valuations.Where(v => v.Stale).Select(v => v.InstrumentId).ToArray();
        if (stale.Length > 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Prices are stale for {string.Join(", ", stale)}; refusing to plan on old prices.");
        }

        var marks = response.Valuations.ToDictionary(
            v => v.InstrumentId,
            v => new InstrumentMark(
                v.Price.ToDecimal(),
                Margined: v.Kind is InstrumentKind.Perpetual or InstrumentKind.Future,
                Multiplier: (decimal)(v.Multiplier > 0 ? v.Multiplier : 1.0),
                DeltaExposure: v.DollarDelta,
                Underlying: v.UnderlyingId.Length > 0 ? v.UnderlyingId : null),
            StringComparer.Ordinal);
        return new MarketMarks(marks, response.Valuations.ToDictionary(v => v.InstrumentId, v => v.Kind, StringComparer.Ordinal));
    }

    /// <summary>Instruments a portfolio is marked over: those held, pledged to its loans, and targeted by its policy.</summary>
    public static string[] InstrumentsOf(PortfolioSnapshot snapshot, IEnumerable<string> targeted) =>
        snapshot.Holdings.Select(h => h.InstrumentId).Concat(snapshot.CollateralInstruments).Concat(targeted).Distinct(StringComparer.Ordinal).ToArray();

    /// <summary>Marks a portfolio through pricing over its held and targeted instruments.</summary>
    public async Task<(MarkedPortfolio Marked, MarketMarks Marks)> MarkAsync(PortfolioSnapshot snapshot, TargetPolicy? policy, CancellationToken cancellationToken)
    {
        var marks = await GetMarksAsync(InstrumentsOf(snapshot, (policy?.Targets.Keys ?? []).Concat(policy?.Hedges?.Select(h => h.HedgeInstrument) ?? [])), cancellationToken);
        return (PortfolioMarking.Mark(snapshot, policy, marks.Marks), marks);
    }

    /// <summary>
    /// The policy in domain terms with its target weights set — as given, or computed by its target model from the
    /// covariance passed in or estimated by risk over the universe — and brought inside its risk limits (weights capped,
    /// invested share scaled to the volatility and VaR limits). The reasons record what the model chose and what the
    /// limits changed.
    /// </summary>
    public async Task<(TargetPolicy Policy, IReadOnlyList<Contracts.Planning.V1.DriftReason> Reasons)> ResolvePolicyAsync(Policy policy, CancellationToken cancellationToken)
    {
        var domain = policy.ToDomain();
        var model = policy.TargetModel switch
        {
            Contracts.Planning.V1.TargetModel.EqualWeight => Core.TargetModel.EqualWeight,
            Contracts.Planning.V1.TargetModel.InverseVolatility => Core.TargetModel.InverseVolatility,
            Contracts.Planning.V1.TargetModel.RiskParity => Core.TargetModel.RiskParity,
            Contracts.Planning.V1.TargetModel.MinimumVariance => Core.TargetModel.MinimumVariance,
            Contracts.Planning.V1.TargetModel.MaximumSharpe => Core.TargetModel.MaximumSharpe,
            Contracts.Planning.V1.TargetModel.MeanVariance => Core.TargetModel.MeanVariance,
            Contracts.Planning.V1.TargetModel.EfficientReturn => Core.TargetModel.EfficientReturn,
            Contracts.Planning.V1.TargetModel.EfficientRisk => Core.TargetModel.EfficientRisk,
            _ => Core.TargetModel.FixedWeights,
        };
        var ids = policy.Targets.Select(t => t.InstrumentId).ToArray();
        var parameters = policy.ModelParameters ?? new ModelParameters();
        var reasons = new List<Contracts.Planning.V1.DriftReason>();

        // Covariance as passed in, else estimated by risk (with historical mean returns), fetched at most once.
        double[,]? covariance = null;
        double[]? means = null;
        async Task<double[,]> CovarianceAsync()
        {
            if (covariance is not null)
            {
                return covariance;
            }

            if (parameters.Covariance.Count > 0)
            {
                covariance = new double[ids.Length, ids.Length];
                for (var i = 0; i < ids.Length; i++)
                {
                    for (var j = 0; j < ids.Length; j++)
                    {
                        covariance[i, j] = parameters.Covariance[(i * ids.Length) + j];
                    }
                }
            }
            else
            {
                (covariance, means) = await EstimateAsync(ids, policy.ModelLookbackDays, cancellationToken);
            }

            return covariance;
        }

        if (model != Core.TargetModel.FixedWeights)
        {
            var budget = policy.Targets.Sum(t => t.Weight);
            double[] weights;
            if (model == Core.TargetModel.EqualWeight)
            {
                weights = TargetModels.Compute(model, new double[ids.Length, ids.Length], budget);
            }
            else
            {
                var modelCovariance = await CovarianceAsync();
                var needsReturns = TargetModels.NeedsReturns(model);
                if (needsReturns && means is null && ids.Any(id => !policy.ExpectedReturns.ContainsKey(id)))
                {
                    means = (await EstimateAsync(ids, policy.ModelLookbackDays, cancellationToken)).AnnualMeans;
                }

                var returns = needsReturns
                    ? new ReturnModelInputs(
                        ids.Select((id, i) => policy.ExpectedReturns.TryGetValue(id, out var expected) ? expected : means![i]).ToArray(),
                        parameters.RiskFreeRate,
                        parameters.RiskAversion == 0 ? 1 : parameters.RiskAversion,
                        parameters.TargetReturn,
                        parameters.TargetVolatility)
                    : null;
                try
                {
                    weights = TargetModels.Compute(model, modelCovariance, budget, returns);
                }
                catch (ArgumentException ex)
                {
                    throw new DomainException(DomainErrorKind.FailedPrecondition, $"Target model {policy.TargetModel} cannot size the universe: {ex.Message}");
                }
            }

            domain = domain with { Targets = ids.Select((id, i) => (id, w: weights[i])).ToDictionary(x => x.id, x => x.w, StringComparer.Ordinal) };
            reasons.Add(new Contracts.Planning.V1.DriftReason
            {
                Rule = "target_model",
                Measured = budget,
                Threshold = budget,
                Breached = false,
                Message = $"{policy.TargetModel} targets: " + string.Join(", ", ids.Select((id, i) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{id} {weights[i]:P2}"))),
            });
        }

        if (domain.Limits is { } limits && ids.Length > 0)
        {
            // Concentration needs no covariance; volatility and VaR limits do.
            var riskModel = limits.MaxVolatility > 0 || limits.MaxVar99 > 0 ? new RiskModelInputs(ids, await CovarianceAsync()) : new RiskModelInputs(ids, new double[ids.Length, ids.Length]);
            var (capped, limitReasons) = RiskLimitRules.ApplyToTargets(domain.Targets, limits, riskModel);
            domain = domain with { Targets = capped, RiskModel = riskModel };
            reasons.AddRange(limitReasons.Select(r => r.ToWire()));
        }

        return (domain, reasons);
    }

    /// <summary>
    /// Annualised sample covariance and mean log return of the instruments' daily returns, estimated by risk from
    /// market-state history (lookback 0 means 250 days).
    /// </summary>
    public async Task<(double[,] Covariance, double[] AnnualMeans)> EstimateAsync(IReadOnlyList<string> ids, int lookbackDays, CancellationToken cancellationToken)
    {
        var request = new EstimateCovarianceRequest { Method = CovarianceMethod.Sample, LookbackDays = lookbackDays == 0 ? 250 : lookbackDays };
        request.InstrumentIds.AddRange(ids);
        var estimate = await risk.EstimateCovarianceAsync(request, cancellationToken: cancellationToken);
        var covariance = new double[ids.Count, ids.Count];
        for (var i = 0; i < ids.Count; i++)
        {
            for (var j = 0; j < ids.Count; j++)
            {
                covariance[i, j] = estimate.Covariance[(i * ids.Count) + j];
            }
        }

        return (covariance, estimate.AnnualMeanReturns.ToArray());
    }

    /// <summary>
    /// Runs the policy's cost-aware optimiser on the marked portfolio: covariance of the universe from risk, half-spreads
    /// from pricing's consolidated quotes.
    /// </summary>
    public async Task<OptimizedWeights> OptimizeAsync(MarkedPortfolio marked, TargetPolicy policy, int lookbackDays, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("optimize");
        var universe = OptimizedRebalance.Universe(marked, policy);
        activity?.SetTag("planning.optimizer.assets", universe.Count);
        if (universe.Count == 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, "The optimiser has no spot instrument to trade: target some, or hold some that are not on the no-trade list.");
        }

        var (covariance, _) = await EstimateAsync(universe, lookbackDays, cancellationToken);
        var quotes = new GetQuotesRequest();
        quotes.InstrumentIds.AddRange(universe);
        var prices = (await pricing.GetQuotesAsync(quotes, cancellationToken: cancellationToken)).Prices;
        var halfSpreads = prices
            .Where(p => p.Mid.ToDecimal() > 0 && p.Ask.ToDecimal() >= p.Bid.ToDecimal())
            .ToDictionary(p => p.InstrumentId, p => (double)((p.Ask.ToDecimal() - p.Bid.ToDecimal()) / 2 / p.Mid.ToDecimal()), StringComparer.Ordinal);
        var started = Stopwatch.GetTimestamp();
        var optimized = OptimizedRebalance.Choose(marked, policy, new OptimizerMarket(universe, covariance, halfSpreads));
        OptimizerSeconds.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        OptimizerIterations.Record(optimized.Result.Iterations);
        activity?.SetTag("planning.optimizer.iterations", optimized.Result.Iterations);
        activity?.SetTag("planning.optimizer.turnover", optimized.Result.Turnover);
        return optimized;
    }

    /// <summary>Builds the plan that would rebalance the portfolio now; status PREVIEW, or NO_ACTION without trades.</summary>
    public async Task<Plan> BuildAsync(string portfolioId, bool force, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("build plan");
        activity?.SetTag("planning.portfolio_id", portfolioId);
        var (portfolio, policy) = await LoadAsync(portfolioId);
        if (policy is null)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Portfolio '{portfolioId}' has no policy; call SetPolicy first.");
        }

        var snapshot = portfolio.ToDomain();
        var (targetPolicy, policyReasons) = await ResolvePolicyAsync(policy, cancellationToken);
        var (marked, marks) = await MarkAsync(snapshot, targetPolicy, cancellationToken);

        // The liquidation guard first: its legs lead the plan, and the rest is planned on the portfolio after them.
        // In an emergency the plan is the guard's legs alone (no optimisation, no rebalancing).
        var costRate = (decimal)policy.EstimatedCostBps / 10_000m;
        var guard = GuardOf(snapshot, targetPolicy, marks, costRate);
        var emergency = guard is { Emergency: true, Acts: true };
        if (guard?.Acts == true)
        {
            snapshot = LiquidationGuard.Apply(snapshot, guard, portfolio.BaseCurrency, costRate);
            marked = PortfolioMarking.Mark(snapshot, targetPolicy, marks.Marks);
        }

        var evaluation = DriftEvaluator.Evaluate(marked, targetPolicy);
        var optimized = !emergency && targetPolicy.Optimizer is not null && (force || evaluation.Breached)
            ? await OptimizeAsync(marked, targetPolicy, policy.ModelLookbackDays, cancellationToken)
            : null;
        var proposal = emergency
            ? new RebalanceProposal(evaluation, [], marked.NetValue, 0m, 0, marked.Cash)
            : RebalancePlanner.Propose(marked, targetPolicy, force, optimized, evaluation);
        var guardLegs = guard?.Legs ?? [];
        var (hedgeLegs, hedgeReasons, _) = emergency ? ([], [], false) : HedgesOf(marked, marks, targetPolicy, proposal.Legs);
        activity?.SetTag("planning.legs", proposal.Legs.Count);
        activity?.SetTag("planning.hedge_legs", hedgeLegs.Count);
        activity?.SetTag("planning.guard_legs", guardLegs.Count);
        activity?.SetTag("planning.total_drift", proposal.Evaluation.TotalDrift);

        var guardCost = guardLegs.Where(l => l.Action is GuardAction.Sell or GuardAction.Buy).Sum(l => decimal.Round(l.Value * costRate, 8));
        var hasLegs = proposal.HasTrades || guardLegs.Count > 0 || hedgeLegs.Count > 0;
        var hedgeCost = hedgeLegs.Sum(l => decimal.Round(l.Quantity * l.Price * l.Multiplier * costRate, 8));
        var now = time.GetUtcNow().ToTimestamp();
        var plan = new Plan
        {
            PlanId = "plan-" + Guid.NewGuid().ToString("N")[..16],
            PortfolioId = portfolioId,
            PortfolioVersion = portfolio.Version,
            Status = hasLegs ? PlanStatus.Preview : PlanStatus.NoAction,
            EstimatedCost = proposal.EstimatedCost + guardCost + hedgeCost,
            Turnover = proposal.Turnover,
            NetValue = proposal.NetValue,
            CreatedAt = now,
            UpdatedAt = now,
            TraceId = Activity.Current?.TraceId.ToHexString() ?? string.Empty,
            StatusMessage = emergency
                ? $"EMERGENCY: {guardLegs.Count} guard legs restore the health factor before anything else"
                : hasLegs
                    ? $"{guardLegs.Count} guard legs, {proposal.Legs.Count} rebalancing legs, {hedgeLegs.Count} hedge legs, turnover {proposal.Turnover:P2}, estimated cost {proposal.EstimatedCost + guardCost + hedgeCost:F2}"
                    : (proposal.Evaluation.Breached ? "bands breached but no trade survives lot and minimum-notional rounding" : "portfolio is inside its bands"),
        };
        plan.Legs.AddRange(guardLegs.Select((l, i) => l.ToWire($"G{i + 1}", i + 1, costRate)));
        plan.Legs.AddRange(proposal.Legs.Select(l => l.ToWire()).Select(l =>
        {
            l.Sequence += guardLegs.Count;
            return l;
        }));
        plan.Legs.AddRange(hedgeLegs.Select((l, i) => l.ToWire($"H{i + 1}", guardLegs.Count + proposal.Legs.Count + i + 1, costRate)));
        plan.Reasons.AddRange(policyReasons);

        plan.Reasons.AddRange((guard?.Reasons ?? []).Select(r => r.ToWire()));
        plan.Reasons.AddRange(proposal.Evaluation.Reasons.Select(r => r.ToWire()));
        plan.Reasons.AddRange(hedgeReasons.Select(r => r.ToWire()));
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
        if (optimized is not null)
        {
            plan.Reasons.Add(optimized.Reason.ToWire());
        }

        plan.Risk = proposal.HasTrades
            ? await MeasureRiskAsync(snapshot, marked, marks, proposal, cancellationToken)
            : new RiskImpact { UnavailableReason = guardLegs.Count > 0 ? "guard legs only (loan collateral is measured by the risk service's loan figures)" : "no trades" };
        return plan;
    }

    /// <summary>
    /// The policy's delta hedges, measured on the portfolio after <paramref name="legs"/> (each leg moves delta by its
    /// signed quantity × the instrument's delta per unit, on its underlying).
    /// </summary>
    public static (IReadOnlyList<HedgeLeg> Legs, IReadOnlyList<Core.DriftReason> Reasons, bool Ripcord) HedgesOf(MarkedPortfolio marked, MarketMarks marks, TargetPolicy policy, IReadOnlyList<PlannedLeg> legs)
    {
        if (policy.Hedges is not { Count: > 0 } rules)
        {
            return ([], [], false);
        }

        var positions = marked.Positions.ToDictionary(p => p.InstrumentId, StringComparer.Ordinal);
        var moves = legs
            .GroupBy(l => positions.TryGetValue(l.InstrumentId, out var p) ? p.UnderlyingId : l.InstrumentId, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Sum(l => (double)(l.Side == TradeSide.Buy ? l.Quantity : -l.Quantity) * marks.Marks[l.InstrumentId].DeltaExposure), StringComparer.Ordinal);
        return DeltaHedger.Plan(marked, marks.Marks, rules, moves);
    }

    /// <summary>The liquidation guard's plan for the portfolio's loans, when the policy has a health-factor band.</summary>
    public static GuardPlan? GuardOf(PortfolioSnapshot snapshot, TargetPolicy policy, MarketMarks marks, decimal costRate) =>
        policy.Guard is { } band && snapshot.LoanList.Count > 0
            ? LiquidationGuard.Plan(snapshot, marks.Marks.ToDictionary(kv => kv.Key, kv => kv.Value.UnitPrice, StringComparer.Ordinal), snapshot.BaseCurrency, band, costRate)
            : null;

    private async Task<RiskImpact> MeasureRiskAsync(PortfolioSnapshot snapshot, MarkedPortfolio marked, MarketMarks marks, RebalanceProposal proposal, CancellationToken cancellationToken)
    {
        // Spot holdings go with the price the plan used; derivatives go by id and risk values them through pricing
        // (options revalued in full under each historical scenario). Each holding keeps its account, and a leg trades
        // in the account that holds the instrument.
        var held = snapshot.Holdings.ToDictionary(h => h.InstrumentId, StringComparer.Ordinal);
        var request = new CompareRiskRequest
        {
            Cash = marked.Cash,
            Settings = new RiskSettings { HorizonDays = 1, ConfidenceLevels = { 0.99 }, Methods = { Contracts.Risk.V1.VarMethod.Historical } },
        };
        request.Holdings.AddRange(marked.Positions.Select(p =>
        {
            var holding = new RiskHolding { InstrumentId = p.InstrumentId, Quantity = p.Quantity, Venue = held.GetValueOrDefault(p.InstrumentId)?.Venue ?? string.Empty };
            if (held.GetValueOrDefault(p.InstrumentId)?.EntryPrice is { } entry)
            {
                holding.EntryPrice = entry;
            }

            if (marks.Kinds.GetValueOrDefault(p.InstrumentId, InstrumentKind.Spot) == InstrumentKind.Spot)
            {
                holding.Price = p.Price;
            }

            return holding;
        }));
        request.Trades.AddRange(proposal.Legs.Select(l => new TradeDelta
        {
            InstrumentId = l.InstrumentId,
            QuantityChange = l.Side == TradeSide.Buy ? l.Quantity : -l.Quantity,
            Venue = held.GetValueOrDefault(l.InstrumentId)?.Venue ?? string.Empty,
        }));
        try
        {
            var response = await risk.CompareRiskAsync(request, cancellationToken: cancellationToken);
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
            logger.LogWarning(ex, "Risk service could not measure the plan");
            return new RiskImpact { UnavailableReason = $"risk service: {ex.Status.StatusCode} {ex.Status.Detail}" };
        }
    }
}
