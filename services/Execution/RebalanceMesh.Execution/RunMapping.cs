using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Runs;

namespace RebalanceMesh.Execution;

/// <summary>Between plans.approved and the domain's <see cref="RunPlan"/>, and from a run's progress to the execution state the RPCs read.</summary>
public static class RunMapping
{
    public static RunPlan ToRun(PlanApproved plan) => new(
        plan.PlanId,
        plan.PortfolioId,
        plan.Legs.Select(l => new RunLeg(
            l.LegId,
            l.Sequence,
            l.Kind switch
            {
                LegKind.Repay => LegAction.Repay,
                LegKind.SupplyCollateral => LegAction.SupplyCollateral,
                LegKind.WithdrawCollateral => LegAction.WithdrawCollateral,
                LegKind.Borrow => LegAction.Borrow,
                LegKind.MarginTopUp => LegAction.MarginTopUp,
                LegKind.CollateralTransfer => LegAction.CollateralTransfer,
                _ => LegAction.Trade,
            },
            l.InstrumentId,
            l.Side == Side.Buy ? OrderSide.Buy : OrderSide.Sell,
            l.Quantity.ToDecimal(),
            DecimalValue.TryParse(l.ReferencePrice, out var reference) ? reference : 0m,
            l.Venue,
            l.Margined,
            l.HedgesLegId,
            l.FundedByLegId,
            DecimalValue.TryParse(l.CashChange, out var change) ? change : 0m,
            l.LoanId,
            l.FromVenue,
            DecimalValue.TryParse(l.LotSize, out var lot) && lot > 0 ? lot : 1m)).ToArray(),
        DecimalValue.TryParse(plan.CashBudget, out var budget) ? budget : null,
        plan.MaxSlippageBps,
        new SliceStyle(plan.TwapSlices, TimeSpan.FromSeconds(plan.TwapDurationSeconds), plan.PovRate, TimeSpan.FromSeconds(plan.PovIntervalSeconds), TimeSpan.FromSeconds(plan.MakerWaitSeconds)),
        plan.BlockTrading switch
        {
            BlockTrading.Block => Core.Blocks.BlockTrading.Block,
            BlockTrading.BlockAndCross => Core.Blocks.BlockTrading.BlockAndCross,
            _ => Core.Blocks.BlockTrading.Alone,
        });

    /// <summary>Copies each leg's progress into the execution state (legs in the state's order).</summary>
    public static void Sync(PlanExecution execution, PlanRun run)
    {
        foreach (var state in execution.Legs)
        {
            var progress = run.Leg(state.LegId);
            state.Quantity = progress.Quantity;
            state.FilledQuantity = progress.Filled;
            state.Fees = progress.Fees;
            if (progress.Filled > 0)
            {
                state.AveragePrice = progress.AveragePrice;
            }

            if (progress.ArrivalPrice is { } arrival)
            {
                state.ArrivalPrice = arrival;
            }

            state.ShortfallBps = progress.ShortfallBps;
            state.ShortfallVsPlanBps = progress.ShortfallVsPlanBps;
        }
    }
}
