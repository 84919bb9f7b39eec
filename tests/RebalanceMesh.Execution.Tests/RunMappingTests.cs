using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Execution.Core.Runs;

namespace RebalanceMesh.Execution.Tests;

/// <summary>How a delivered plan becomes a run: its block trading mode and the lot each leg is allocated in.</summary>
public class RunMappingTests
{
    [Theory]
    [InlineData("10", 10)]
    [InlineData("0.5", 0.5)]
    [InlineData("0.00000001", 0.00000001)]
    [InlineData(null, 1)] // unset
    [InlineData("0", 1)]
    [InlineData("-5", 1)]
    [InlineData("0.000000001", 1)] // finer than a quantity's 8 decimals: would overflow a block's allocation
    [InlineData("10000000000", 1)] // 10¹⁰: beyond any lot
    [InlineData("not a number", 1)]
    public void A_legs_lot_is_its_lot_size_when_quantities_can_be_counted_in_it_else_one(string? lotSize, double expected)
    {
        var plan = new PlanApproved { PlanId = "p", Legs = { new ApprovedLeg { LegId = "L1", InstrumentId = "X", Side = Side.Buy, Quantity = 10m } } };
        if (lotSize is not null)
        {
            plan.Legs[0].LotSize = new DecimalValue { Value = lotSize };
        }

        Assert.Equal((decimal)expected, RunMapping.ToRun(plan).Legs[0].LotSize);
    }

    [Theory]
    [InlineData(BlockTrading.Unspecified, Core.Blocks.BlockTrading.Alone)]
    [InlineData(BlockTrading.Alone, Core.Blocks.BlockTrading.Alone)]
    [InlineData(BlockTrading.Block, Core.Blocks.BlockTrading.Block)]
    [InlineData(BlockTrading.BlockAndCross, Core.Blocks.BlockTrading.BlockAndCross)]
    [InlineData((BlockTrading)99, Core.Blocks.BlockTrading.Alone)] // a mode this version does not know trades alone
    public void A_plans_block_trading_mode_maps_to_the_runs(BlockTrading wire, Core.Blocks.BlockTrading expected) =>
        Assert.Equal(expected, RunMapping.ToRun(new PlanApproved { PlanId = "p", BlockTrading = wire }).Blocks);
}
