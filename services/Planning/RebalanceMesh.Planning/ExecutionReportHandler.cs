using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning;

/// <summary>
/// Applies execution.reports: each fill once (keyed by fill id) to the portfolio's positions and cash and to its
/// plan leg; leg and plan outcomes to their statuses. Duplicates and redeliveries change nothing. Takes a lane's
/// reports at once: the run of reports of one plan is applied in one read and one transaction of the plan and its
/// portfolio, different portfolios' runs at the same time, and the changed plans are announced together.
/// </summary>
public sealed class ExecutionReportHandler(PlanningStore store, ILogger<ExecutionReportHandler> logger) : IEventBatchHandler<ExecutionReport>
{
    public Task HandleAsync(ExecutionReport report, EventContext context, CancellationToken cancellationToken) =>
        HandleBatchAsync([new DeliveredEvent<ExecutionReport>(report, context)], cancellationToken);

    public async Task HandleBatchAsync(IReadOnlyList<DeliveredEvent<ExecutionReport>> events, CancellationToken cancellationToken)
    {
        // Plan reports between liquidations are applied together; a liquidation ends the run, so a portfolio's reports
        // keep their order.
        var run = new List<ExecutionReport>(events.Count);
        foreach (var report in events.Select(e => e.Message))
        {
            if (report.Kind is ReportKind.Liquidation or ReportKind.MarginLiquidation)
            {
                await ApplyPlanReportsAsync(run);
                run.Clear();
                await (report.Kind == ReportKind.Liquidation ? ApplyLiquidationAsync(report) : ApplyMarginLiquidationAsync(report));
            }
            else
            {
                run.Add(report);
            }
        }

        await ApplyPlanReportsAsync(run);
    }

    /// <summary>
    /// Each portfolio's reports in their order, plan by plan (one transaction per run of one plan's reports); different
    /// portfolios at once. Then every plan changed is announced in one publish.
    /// </summary>
    private async Task ApplyPlanReportsAsync(IReadOnlyList<ExecutionReport> reports)
    {
        if (reports.Count == 0)
        {
            return;
        }

        // Announced even when another portfolio's run fails the batch: what was stored is announced.
        var changed = new System.Collections.Concurrent.ConcurrentQueue<Plan>();
        try
        {
            await Task.WhenAll(reports
                .GroupBy(r => r.PortfolioId.Length > 0 ? r.PortfolioId : r.PlanId, StringComparer.Ordinal)
                .Select(async portfolio =>
                {
                    foreach (var run in RunsOfOnePlan(portfolio))
                    {
                        if (await ApplyRunAsync(run) is { } plan)
                        {
                            changed.Enqueue(plan);
                        }
                    }
                }));
        }
        finally
        {
            await store.AnnouncePlansAsync(changed.ToArray());
        }
    }

    /// <summary>Consecutive reports of the same plan, in order.</summary>
    private static IEnumerable<List<ExecutionReport>> RunsOfOnePlan(IEnumerable<ExecutionReport> reports)
    {
        List<ExecutionReport>? run = null;
        foreach (var report in reports)
        {
            if (run is not null && run[0].PlanId != report.PlanId)
            {
                yield return run;
                run = null;
            }

            (run ??= []).Add(report);
        }

        if (run is not null)
        {
            yield return run;
        }
    }

    /// <summary>Applies one plan's run of reports; the plan as stored after (null: unchanged or unknown).</summary>
    private async Task<Plan?> ApplyRunAsync(IReadOnlyList<ExecutionReport> run)
    {
        var planId = run[0].PlanId;
        var fillIds = run.Where(r => r.Kind == ReportKind.Fill && r.Fill is not null).Select(r => r.Fill.FillId).ToArray();
        var repeated = new List<string>();
        var changed = false;
        var stored = await store.ApplyToPlanAsync(planId, run[0].PortfolioId, fillIds, (plan, portfolio, appliedBefore) =>
        {
            repeated.Clear();
            var applied = new List<string>();
            // The run's fills move one domain snapshot, read from the stored portfolio once and written back once.
            PortfolioSnapshot? holdings = null;
            changed = false;
            foreach (var report in run)
            {
                switch (report.Kind)
                {
                    case ReportKind.Fill when report.Fill is { } fill:
                        if (appliedBefore.Contains(fill.FillId) || applied.Contains(fill.FillId))
                        {
                            repeated.Add(fill.FillId);
                            continue;
                        }

                        holdings = ApplyFill(report, fill, plan, holdings ?? portfolio?.ToDomain() ?? throw RebalanceMesh.Domain.DomainException.NotFound($"Portfolio '{plan.PortfolioId}'"));
                        applied.Add(fill.FillId);
                        changed = true;
                        break;
                    case ReportKind.LegDone:
                        changed |= ApplyLegDone(report, plan);
                        break;
                    case ReportKind.PlanDone:
                        changed |= ApplyPlanDone(report, plan);
                        break;
                }
            }

            return new PlanReportChange(changed, holdings is null ? null : portfolio!.WithHoldings(holdings), applied);
        });

        foreach (var fillId in repeated)
        {
            logger.LogInformation("Fill {FillId} of plan {PlanId} was applied before; ignored", fillId, planId);
        }

        foreach (var report in run.Where(r => r.Kind is not (ReportKind.Fill or ReportKind.LegDone or ReportKind.PlanDone) || (r.Kind == ReportKind.Fill && r.Fill is null)))
        {
            logger.LogWarning("Execution report {ReportId} of kind {Kind} carries nothing to apply", report.ReportId, report.Kind);
        }

        if (stored is null)
        {
            logger.LogWarning("Execution reports {ReportIds} name unknown plan {PlanId}; ignored", string.Join(", ", run.Select(r => r.ReportId)), planId);
            return null;
        }

        foreach (var report in run.Where(r => r.Kind == ReportKind.PlanDone))
        {
            logger.LogInformation("Plan {PlanId} finished: {Status} {Message}", report.PlanId, report.PlanStatus, report.Message);
        }

        return changed ? stored : null;
    }

    /// <summary>A leg's end: its status, unless it ended before. Whether the plan changed.</summary>
    private static bool ApplyLegDone(ExecutionReport report, Plan plan)
    {
        var leg = plan.Legs.FirstOrDefault(l => l.LegId == report.LegId);
        if (leg is null || leg.Status is not (LegStatus.Pending or LegStatus.PartiallyFilled))
        {
            return false;
        }

        var before = leg.Status;
        leg.Status = report.LegStatus switch
        {
            ReportedLegStatus.Filled => LegStatus.Filled,
            ReportedLegStatus.PartiallyFilled => LegStatus.PartiallyFilled,
            ReportedLegStatus.Rejected => LegStatus.Rejected,
            ReportedLegStatus.Cancelled => LegStatus.Cancelled,
            _ => leg.Status,
        };
        return leg.Status != before;
    }

    /// <summary>The plan's end, unless it ended before. Whether the plan changed.</summary>
    private static bool ApplyPlanDone(ExecutionReport report, Plan plan)
    {
        if (plan.Status.IsFinal())
        {
            return false;
        }

        plan.Status = report.PlanStatus switch
        {
            ReportedPlanStatus.Completed => PlanStatus.Completed,
            ReportedPlanStatus.PartiallyFilled => PlanStatus.PartiallyFilled,
            ReportedPlanStatus.Cancelled => PlanStatus.Cancelled,
            _ => PlanStatus.Failed,
        };
        plan.StatusMessage = report.Message;
        if (plan.Status == PlanStatus.Cancelled)
        {
            // A cancelled plan leaves no leg pending: a leg not started was cancelled with it (a fill of it reported
            // late still applies).
            foreach (var leg in plan.Legs.Where(l => l.Status == LegStatus.Pending))
            {
                leg.Status = LegStatus.Cancelled;
            }
        }

        return true;
    }

    /// <summary>
    /// A lending venue liquidated part of a loan: the portfolio's loan loses the seized collateral and the repaid debt,
    /// once per liquidation id. Liquidations are logged as warnings: the guard did not protect the loan.
    /// </summary>
    private async Task ApplyLiquidationAsync(ExecutionReport report)
    {
        if (report.Liquidation is not { } liquidation || liquidation.LiquidationId.Length == 0 || report.PortfolioId.Length == 0
            || !DecimalValue.TryParse(liquidation.SeizedQuantity, out var seized) || seized < 0
            || !DecimalValue.TryParse(liquidation.DebtRepaid, out var repaid) || repaid < 0)
        {
            throw new MalformedEventException($"Liquidation report {report.ReportId} needs a portfolio, a liquidation id and non-negative amounts.");
        }

        Portfolio Apply(Portfolio portfolio)
        {
            var copy = portfolio.Clone();
            var loan = copy.Loans.FirstOrDefault(l => l.LoanId == liquidation.LoanId)
                ?? throw new MalformedEventException($"Portfolio {report.PortfolioId} has no loan {liquidation.LoanId} to liquidate.");
            var collateral = loan.Collateral.FirstOrDefault(c => c.Asset == liquidation.SeizedAsset);
            if (collateral is not null)
            {
                collateral.Quantity = Math.Max(collateral.Quantity.ToDecimal() - seized, 0m);
            }

            var debt = loan.Debt.FirstOrDefault(d => d.Asset == liquidation.DebtAsset);
            if (debt is not null)
            {
                debt.Quantity = Math.Max(debt.Quantity.ToDecimal() - repaid, 0m);
            }

            return copy;
        }

        try
        {
            if (await store.ApplyPortfolioEventAsync(report.PortfolioId, liquidation.LiquidationId, Apply))
            {
                logger.LogWarning("Loan {LoanId} of {PortfolioId} liquidated on {Venue}: {Seized} {Asset} seized, {Repaid} {DebtAsset} repaid; health factor {Before:F4} → {After:F4}",
                    liquidation.LoanId, report.PortfolioId, liquidation.Venue, seized, liquidation.SeizedAsset, repaid, liquidation.DebtAsset, liquidation.HealthFactorBefore, liquidation.HealthFactorAfter);
            }
        }
        catch (RebalanceMesh.Domain.DomainException ex) when (ex.Kind == RebalanceMesh.Domain.DomainErrorKind.NotFound)
        {
            throw new MalformedEventException($"Liquidation report {report.ReportId}: {ex.Message}");
        }
    }

    /// <summary>
    /// A trading venue closed a margined position below its maintenance margin: the position in that venue's account
    /// moves by the closed quantity and the realised profit less the fee settles in the account's collateral, once per
    /// liquidation id. Logged as a warning: the margin guard did not protect the account.
    /// </summary>
    private async Task ApplyMarginLiquidationAsync(ExecutionReport report)
    {
        if (report.MarginLiquidation is not { } liquidation || liquidation.LiquidationId.Length == 0 || report.PortfolioId.Length == 0 || liquidation.InstrumentId.Length == 0
            || !DecimalValue.TryParse(liquidation.ClosedQuantity, out var closed)
            || !DecimalValue.TryParse(liquidation.RealizedPnl, out var realized)
            || !DecimalValue.TryParse(liquidation.Fee, out var fee) || fee < 0)
        {
            throw new MalformedEventException($"Margin liquidation report {report.ReportId} needs a portfolio, a liquidation id, an instrument and amounts.");
        }

        Portfolio Apply(Portfolio portfolio) =>
            portfolio.WithHoldings(PortfolioLedger.ApplyMarginLiquidation(portfolio.ToDomain(), liquidation.Venue, liquidation.InstrumentId, closed, realized, fee));

        try
        {
            if (await store.ApplyPortfolioEventAsync(report.PortfolioId, liquidation.LiquidationId, Apply))
            {
                logger.LogWarning("{Venue} liquidated {Closed} {Instrument} of {PortfolioId} at {Price}: realised {Pnl}, fee {Fee}; margin ratio {Before:F4} → {After:F4}",
                    liquidation.Venue, closed, liquidation.InstrumentId, report.PortfolioId, liquidation.Price.Value, realized, fee, liquidation.RatioBefore, liquidation.RatioAfter);
            }
        }
        catch (RebalanceMesh.Domain.DomainException ex) when (ex.Kind == RebalanceMesh.Domain.DomainErrorKind.NotFound)
        {
            throw new MalformedEventException($"Margin liquidation report {report.ReportId}: {ex.Message}");
        }
    }

    /// <summary>
    /// A fill of a trade leg moves the position in the leg's account and cash (for a margined contract, its entry price
    /// and realised profit); a fill of a loan leg (repay, supply, withdraw, borrow) moves cash, holdings, collateral and
    /// debt as the leg says. The plan's leg takes the fill's quantity, price and fee. Returns the holdings after.
    /// </summary>
    private static PortfolioSnapshot ApplyFill(ExecutionReport report, Fill fill, Plan plan, PortfolioSnapshot snapshot)
    {
        if (!DecimalValue.TryParse(fill.Quantity, out var quantity) || quantity <= 0
            || !DecimalValue.TryParse(fill.Fee, out var fee) || fee < 0
            || string.IsNullOrEmpty(fill.FillId))
        {
            throw new MalformedEventException($"Fill in report {report.ReportId} has an invalid id, quantity or fee.");
        }

        var price = DecimalValue.TryParse(fill.Price, out var p) ? p : 0m;
        var leg = plan.Legs.FirstOrDefault(l => l.LegId == report.LegId);
        var loanAction = leg?.Kind.ToLoanAction();
        var topUp = leg?.Kind == LegKind.MarginTopUp;
        var transfer = leg?.Kind == LegKind.CollateralTransfer;
        if (loanAction is null && !topUp && !transfer && (price <= 0 || fill.Side is not (Side.Buy or Side.Sell)))
        {
            throw new MalformedEventException($"Trade fill in report {report.ReportId} needs a side and a positive price.");
        }

        // A trade is booked in the account its leg names (the venue holding the units; empty is the default account).
        var account = leg?.Venue ?? string.Empty;
        PortfolioSnapshot after;
        try
        {
            after = topUp ? PortfolioLedger.ApplyMarginTopUp(snapshot, account, quantity)
                : transfer ? PortfolioLedger.ApplyCollateralTransfer(snapshot, leg!.FromVenue, account, quantity)
                : loanAction is { } action ? PortfolioLedger.ApplyLoanLeg(snapshot, action, leg!.LoanId, fill.InstrumentId, quantity, snapshot.BaseCurrency)
                : DecimalValue.TryParse(leg?.ContractMultiplier, out var multiplier) ? PortfolioLedger.ApplyMarginedFill(snapshot, fill.InstrumentId, fill.Side.ToDomain(), quantity, price, fee, multiplier, account)
                : PortfolioLedger.ApplyFill(snapshot, fill.InstrumentId, fill.Side.ToDomain(), quantity, price, fee, account);
        }
        catch (ArgumentException ex)
        {
            throw new MalformedEventException($"Fill in report {report.ReportId} cannot be applied: {ex.Message}");
        }

        if (leg is not null)
        {
            var filledBefore = DecimalValue.TryParse(leg.FilledQuantity, out var f) ? f : 0m;
            var averageBefore = DecimalValue.TryParse(leg.AverageFillPrice, out var a) ? a : 0m;
            if (price > 0)
            {
                leg.AverageFillPrice = PortfolioLedger.Vwap(filledBefore, averageBefore, quantity, price);
            }

            leg.FilledQuantity = filledBefore + quantity;
            leg.Fees = (DecimalValue.TryParse(leg.Fees, out var fees) ? fees : 0m) + fee;
            leg.Status = leg.FilledQuantity.ToDecimal() >= leg.Quantity.ToDecimal() ? LegStatus.Filled : LegStatus.PartiallyFilled;
        }

        if (plan.Status == PlanStatus.Approved)
        {
            plan.Status = PlanStatus.Executing;
        }

        return after;
    }
}
