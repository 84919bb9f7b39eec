using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning;

/// <summary>What one evaluation found: the alert when the portfolio is breached, the plan request when its policy is automatic and may call for one.</summary>
public sealed record MonitorOutcome(string PortfolioId, PolicyAlert? Alert, PlanRequest? Plan);

/// <summary>
/// Evaluates the portfolios a monitor pass touched, on one market snapshot: each policy resolved (a computed model's
/// targets cached per policy version and day), every instrument valued once, then each portfolio through its band
/// screen (<see cref="BandScreen"/>) when it is plain, else through the trigger stage the plan pipeline shares
/// (<see cref="PlanComposer.Assess"/>). What it measures goes to the <see cref="MonitorGauges"/>.
/// </summary>
public sealed class MonitorEvaluator(MonitorBook book, ModelWeightCache models, MonitorGauges gauges, IServiceScopeFactory scopes, TimeProvider time, ILogger<MonitorEvaluator> logger)
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly Counter<long> Evaluations = Meter.CreateCounter<long>("rebalancemesh.planning.evaluations", description: "Policy evaluations by the monitor.");

    /// <summary>
    /// Evaluates portfolios on one market snapshot: each policy's target weights resolved (a computed model's cached per
    /// policy version and day), every instrument they need valued once, then bands, guards and hedges per portfolio.
    /// </summary>
    public async Task<IReadOnlyList<MonitorOutcome>> EvaluateAsync(IEnumerable<MonitoredPortfolio> affected, CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var pipeline = scope.ServiceProvider.GetRequiredService<PlanPipeline>();
        var stages = new StageClock(System.Diagnostics.Activity.Current); // the monitor pass's span
        var resolved = new List<(MonitoredPortfolio Entry, TargetPolicy Policy, string[] Instruments)>();
        foreach (var entry in affected)
        {
            try
            {
                var policy = (await models.GetResolvedAsync(entry.PortfolioId, entry.Policy, () => pipeline.ResolvePolicyAsync(entry.Policy, null, cancellationToken))).Policy;
                resolved.Add((entry, policy, Compiled(entry, policy).Instruments));
            }
            catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded)
            {
                logger.LogWarning("Monitor could not reach risk for {PortfolioId}'s target model: {Detail}", entry.PortfolioId, ex.Status.Detail);
            }
            catch (RebalanceMesh.Domain.DomainException ex)
            {
                // The model cannot size the universe now (no history yet, parameters the market no longer allows): the
                // policy's reads say so (GetPortfolio's computed_targets); the monitor evaluates it again later.
                logger.LogDebug("Portfolio {PortfolioId}'s target model not resolved: {Reason}", entry.PortfolioId, ex.Message);
            }
        }

        if (resolved.Count == 0)
        {
            return [];
        }

        stages.Lap("planning.monitor.resolve_ms");
        MarketSnapshot market;
        try
        {
            market = await pipeline.GetMarketSnapshotAsync(resolved.SelectMany(r => r.Instruments), cancellationToken);
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded)
        {
            // Quotes are transient: the next tick evaluates again; retrying this one would only pile up.
            logger.LogWarning("Monitor could not reach pricing: {Detail}", ex.Status.Detail);
            return [];
        }

        stages.Lap("planning.monitor.price_ms");

        // The snapshot as arrays by the book's instrument numbering, for the band screens.
        var (prices, spot) = Prices(market.Marks);
        var outcomes = new List<MonitorOutcome>(resolved.Count);
        foreach (var (entry, policy, instruments) in resolved)
        {
            if (!market.Covers(instruments))
            {
                logger.LogDebug("Portfolio {PortfolioId} not evaluated: {Reason}", entry.PortfolioId, market.RefusalFor(instruments).Message);
                continue;
            }

            if ((Screened(entry, policy, prices, spot) ?? Evaluate(entry, policy, market.Marks)) is { } outcome)
            {
                outcomes.Add(outcome);
            }
        }

        stages.Lap("planning.monitor.screen_ms");
        return outcomes;
    }

    /// <summary>What the monitor derives from a portfolio under a resolved policy, kept until either changes: the instruments it is marked over and its band screen.</summary>
    private MonitoredPortfolio.Compiled Compiled(MonitoredPortfolio entry, TargetPolicy targetPolicy)
    {
        if (entry.Derived is not { } compiled || !ReferenceEquals(compiled.Policy, targetPolicy))
        {
            compiled = new MonitoredPortfolio.Compiled(targetPolicy, PlanPipeline.InstrumentsOf(entry.Snapshot, targetPolicy), BandScreen.TryCompile(entry.Snapshot, targetPolicy, book.SlotOf));
            entry.Derived = compiled;
        }

        return compiled;
    }

    private (double[] Prices, bool[] Spot) Prices(MarketMarks marks)
    {
        var prices = new double[book.SlotCount + 64];
        Array.Fill(prices, double.NaN);
        var spot = new bool[prices.Length];
        foreach (var (instrument, mark) in marks.Marks)
        {
            var slot = book.SlotOf(instrument);
            if (slot < prices.Length)
            {
                prices[slot] = (double)mark.UnitPrice;
                spot[slot] = !mark.Margined && (mark.Underlying is null || mark.Underlying == instrument);
            }
        }

        return (prices, spot);
    }

    /// <summary>
    /// The fast path: a plain portfolio's bands and loans screened in doubles (<see cref="BandScreen"/>); null when the portfolio
    /// is not plain or the screen cannot decide, and the full evaluation runs.
    /// </summary>
    private MonitorOutcome? Screened(MonitoredPortfolio entry, TargetPolicy targetPolicy, double[] prices, bool[] spot)
    {
        if (Compiled(entry, targetPolicy).Screen is not { } screen || screen.MaxSlot >= prices.Length)
        {
            return null;
        }

        var (verdict, total) = screen.Screen(prices, spot);
        if (verdict == ScreenVerdict.Undecided)
        {
            return null;
        }

        Evaluations.Add(1);
        gauges.Drift(entry.PortfolioId, total);
        for (var i = 0; i < screen.LoanCount; i++)
        {
            if (screen.HealthFactor(i, prices) is { } healthFactor)
            {
                gauges.HealthFactor(entry.PortfolioId, screen.LoanId(i), healthFactor);
            }
        }

        var reasons = verdict == ScreenVerdict.Breached ? screen.BreachedReasons(prices) : [];
        return Decided(entry, total, reasons, emergency: false);
    }

    /// <summary>One portfolio's bands, guards and hedges on the snapshot's marks; null when it cannot be marked.</summary>
    private MonitorOutcome? Evaluate(MonitoredPortfolio entry, TargetPolicy targetPolicy, MarketMarks marks)
    {
        var (portfolioId, snapshot) = (entry.PortfolioId, entry.Snapshot);
        PolicyAssessment assessed;
        try
        {
            assessed = PlanComposer.Assess(snapshot, targetPolicy, marks.Marks, describeAll: false);
        }
        catch (RebalanceMesh.Domain.DomainException ex)
        {
            logger.LogDebug("Portfolio {PortfolioId} not evaluated: {Reason}", portfolioId, ex.Message);
            return null;
        }

        if (assessed.Margin?.Reasons is [var ratio, ..])
        {
            gauges.MarginRatio(portfolioId, ratio.Measured);
        }

        foreach (var reason in assessed.Guard?.Reasons.DistinctBy(r => r.InstrumentId) ?? [])
        {
            gauges.HealthFactor(portfolioId, reason.InstrumentId, reason.Measured);
        }

        Evaluations.Add(1);
        gauges.Drift(portfolioId, assessed.Bands.TotalDrift);
        return Decided(entry, assessed.Bands.TotalDrift, assessed.Reasons.Where(r => r.Breached).ToArray(), assessed.Emergency);
    }

    /// <summary>The outcome of an evaluation: an alert when rules are breached, a plan request when the policy is automatic and may call for one.</summary>
    private MonitorOutcome Decided(MonitoredPortfolio entry, double totalDrift, IReadOnlyList<Core.DriftReason> breached, bool emergency)
    {
        var (portfolioId, policy) = (entry.PortfolioId, entry.Policy);
        PolicyAlert? alert = null;
        if (breached.Count > 0)
        {
            alert = new PolicyAlert
            {
                PortfolioId = portfolioId,
                TotalDrift = totalDrift,
                RaisedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(time.GetUtcNow()),
                Automatic = policy.ExecutionMode == ExecutionMode.Auto,
                Kind = AlertKind.Breach,
            };
            alert.Reasons.AddRange(breached.Select(r => r.ToWire()));
            if (logger.IsEnabled(LogLevel.Debug))
            {
                logger.LogDebug("Portfolio {PortfolioId} breaches its policy: {Reasons}", portfolioId, string.Join("; ", breached.Select(r => r.Message)));
            }
        }

        // Automatic mode: a plan may be due (breached, or a calendar to check); the planner decides against the last plan.
        PlanRequest? request = null;
        if (policy.ExecutionMode == ExecutionMode.Auto && (breached.Count > 0 || policy.CalendarIntervalDays > 0))
        {
            request = new PlanRequest(breached.Count > 0, emergency, entry.Snapshot.Version, AutoPlanner.Evaluated.BreachesOf(breached).Order(StringComparer.Ordinal).ToArray());
        }

        return new MonitorOutcome(portfolioId, alert, request);
    }
}
