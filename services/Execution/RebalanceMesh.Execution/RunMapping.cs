using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Blocks;
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
            LotOf(l))).ToArray(),
        DecimalValue.TryParse(plan.CashBudget, out var budget) ? budget : null,
        plan.MaxSlippageBps,
        new SliceStyle(plan.TwapSlices, TimeSpan.FromSeconds(plan.TwapDurationSeconds), plan.PovRate, TimeSpan.FromSeconds(plan.PovIntervalSeconds), TimeSpan.FromSeconds(plan.MakerWaitSeconds)),
        plan.BlockTrading switch
        {
            Contracts.Common.V1.BlockTrading.Block => Core.Blocks.BlockTrading.Block,
            Contracts.Common.V1.BlockTrading.BlockAndCross => Core.Blocks.BlockTrading.BlockAndCross,
            _ => Core.Blocks.BlockTrading.Alone,
        });

    /// <summary>
    /// A leg's lot: its lot size when it is one a quantity can be counted in (10⁻⁸ to 10⁹: finer than the quantities'
    /// own 8 decimals, or larger, would overflow a block's allocation), else 1.
    /// </summary>
    private static decimal LotOf(ApprovedLeg leg) =>
        DecimalValue.TryParse(leg.LotSize, out var lot) && lot is >= 0.00000001m and <= 1_000_000_000m ? lot : 1m;

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

    /// <summary>A domain side on the wire.</summary>
    public static Side ToWire(this OrderSide side) => side == OrderSide.Buy ? Side.Buy : Side.Sell;

    /// <summary>A block order as the RPCs show it: as recorded, and its outcome once allocated.</summary>
    public static Block ToBlock(BlockOrder order, BlockOutcome? outcome, bool withMembers)
    {
        var block = new Block
        {
            BlockId = order.BlockId,
            InstrumentId = order.InstrumentId,
            LotSize = order.LotSize,
            Allocated = outcome is not null,
            MemberCount = order.Members.Count,
        };
        if (outcome is not null)
        {
            block.Crossed = outcome.Crossed;
            block.CrossPrice = outcome.CrossPrice;
            block.Sides.AddRange(outcome.Sides.Select(s => new BlockSide { Side = s.Side.ToWire(), Quantity = s.Quantity, Filled = s.Filled, AveragePrice = s.AveragePrice, Fees = s.Fees, Message = s.Message }));
        }

        if (withMembers)
        {
            block.Members.AddRange(order.Members.Select((m, i) =>
            {
                var member = new BlockMemberShare
                {
                    PlanId = m.PlanId,
                    PortfolioId = m.PortfolioId,
                    LegId = m.Request.LegId,
                    Side = m.Request.Side.ToWire(),
                    Requested = m.Request.Quantity,
                    PriceCap = m.Request.PriceCap,
                    Cross = m.Request.Cross,
                };
                if (outcome?.Shares[i] is { } share)
                {
                    member.Crossed = share.Crossed;
                    member.Allocated = share.Filled;
                    member.AveragePrice = share.AveragePrice;
                    member.Fee = share.Fee;
                }

                return member;
            }));
        }

        return block;
    }
}
