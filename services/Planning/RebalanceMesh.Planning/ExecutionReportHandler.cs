using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning;

/// <summary>
/// Applies execution.reports: each fill once (keyed by fill id) to the portfolio's positions and cash and to its
/// plan leg; leg and plan outcomes to their statuses. Duplicates and redeliveries change nothing.
/// </summary>
public sealed class ExecutionReportHandler(PlanningStore store, ILogger<ExecutionReportHandler> logger) : IEventHandler<ExecutionReport>
{
    public async Task HandleAsync(ExecutionReport report, EventContext context, CancellationToken cancellationToken)
    {
        if (report.Kind == ReportKind.Liquidation)
        {
            await ApplyLiquidationAsync(report);
            return;
        }

        if (report.Kind == ReportKind.MarginLiquidation)
        {
            await ApplyMarginLiquidationAsync(report);
            return;
        }

        try
        {
            // The plan is read once, where the report is applied to it.
            await ApplyToPlanAsync(report);
        }
        catch (RebalanceMesh.Domain.DomainException ex) when (ex.Kind == RebalanceMesh.Domain.DomainErrorKind.NotFound)
        {
            // Only a report of a plan this mesh does not know is ignored; anything else missing (the plan's portfolio)
            // fails the event as before, to be retried and dead-lettered rather than lost.
            if (await store.GetPlanAsync(report.PlanId) is not null)
            {
                throw;
            }

            logger.LogWarning("Execution report {ReportId} names unknown plan {PlanId}; ignored", report.ReportId, report.PlanId);
        }
    }

    private async Task ApplyToPlanAsync(ExecutionReport report)
    {
        switch (report.Kind)
        {
            case ReportKind.Fill when report.Fill is { } fill:
                await ApplyFillAsync(report, fill);
                break;
            case ReportKind.LegDone:
                await store.UpdatePlanAsync(report.PlanId, plan =>
                {
                    var leg = plan.Legs.FirstOrDefault(l => l.LegId == report.LegId);
                    if (leg is not null && leg.Status is LegStatus.Pending or LegStatus.PartiallyFilled)
                    {
                        leg.Status = report.LegStatus switch
                        {
                            ReportedLegStatus.Filled => LegStatus.Filled,
                            ReportedLegStatus.PartiallyFilled => LegStatus.PartiallyFilled,
                            ReportedLegStatus.Rejected => LegStatus.Rejected,
                            ReportedLegStatus.Cancelled => LegStatus.Cancelled,
                            _ => leg.Status,
                        };
                    }
                });
                break;
            case ReportKind.PlanDone:
                await store.UpdatePlanAsync(report.PlanId, plan =>
                {
                    if (plan.Status.IsFinal())
                    {
                        return;
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
                        // A cancelled plan leaves no leg pending: a leg not started was cancelled with it (a fill of it
                        // reported late still applies).
                        foreach (var leg in plan.Legs.Where(l => l.Status == LegStatus.Pending))
                        {
                            leg.Status = LegStatus.Cancelled;
                        }
                    }
                });
                logger.LogInformation("Plan {PlanId} finished: {Status} {Message}", report.PlanId, report.PlanStatus, report.Message);
                break;
            default:
                logger.LogWarning("Execution report {ReportId} of kind {Kind} carries nothing to apply", report.ReportId, report.Kind);
                break;
        }
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
    /// and realised profit); a fill of a loan leg (repay, supply, withdraw, borrow) moves
    /// cash, holdings, collateral and debt as the leg says. Either is applied once per fill id.
    /// </summary>
    private async Task ApplyFillAsync(ExecutionReport report, Fill fill)
    {
        if (!DecimalValue.TryParse(fill.Quantity, out var quantity) || quantity <= 0
            || !DecimalValue.TryParse(fill.Fee, out var fee) || fee < 0
            || string.IsNullOrEmpty(fill.FillId))
        {
            throw new MalformedEventException($"Fill in report {report.ReportId} has an invalid id, quantity or fee.");
        }

        var price = DecimalValue.TryParse(fill.Price, out var p) ? p : 0m;
        Portfolio Apply(Plan plan, Portfolio portfolio)
        {
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
            try
            {
                var snapshot = portfolio.ToDomain();
                return portfolio.WithHoldings(
                    topUp ? PortfolioLedger.ApplyMarginTopUp(snapshot, account, quantity)
                    : transfer ? PortfolioLedger.ApplyCollateralTransfer(snapshot, leg!.FromVenue, account, quantity)
                    : loanAction is { } action ? PortfolioLedger.ApplyLoanLeg(snapshot, action, leg!.LoanId, fill.InstrumentId, quantity, portfolio.BaseCurrency)
                    : DecimalValue.TryParse(leg?.ContractMultiplier, out var multiplier) ? PortfolioLedger.ApplyMarginedFill(snapshot, fill.InstrumentId, fill.Side.ToDomain(), quantity, price, fee, multiplier, account)
                    : PortfolioLedger.ApplyFill(snapshot, fill.InstrumentId, fill.Side.ToDomain(), quantity, price, fee, account));
            }
            catch (ArgumentException ex)
            {
                throw new MalformedEventException($"Fill in report {report.ReportId} cannot be applied: {ex.Message}");
            }
        }

        var applied = await store.ApplyFillAsync(
            report.PlanId,
            fill.FillId,
            Apply,
            plan =>
            {
                var planLeg = plan.Legs.FirstOrDefault(l => l.LegId == report.LegId);
                if (planLeg is { } leg)
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
            });
        if (!applied)
        {
            logger.LogInformation("Fill {FillId} of plan {PlanId} was applied before; ignored", fill.FillId, report.PlanId);
        }
    }
}
