using RebalanceMesh.Domain;

namespace RebalanceMesh.BuildingBlocks.Tests;

public class LendingLiquidationTests
{
    [Fact]
    public void A_healthy_account_is_left_alone()
    {
        LendingCollateral[] collateral = [new("ETH", 10m, 2_000m, 0.8m, 0.05m)];
        Assert.Equal(16_000.0 / 15_000, LendingLiquidation.HealthFactor(collateral, 15_000m), 12);
        Assert.Null(LendingLiquidation.Next(collateral, 15_000m));
        Assert.Null(LendingLiquidation.Next(collateral, 0m));
    }

    [Fact]
    public void Between_0_95_and_1_half_the_debt_is_repaid_and_the_largest_collateral_seized_with_the_bonus()
    {
        // HF = (10 × 1,900 × 0.8 + 1,000 × 1 × 0.9) / 16,000 = 15,200 + 900 = 16,100 / 16,000 → 1.00625: healthy.
        // At ETH 1,850: 14,800 + 900 = 15,700 / 16,000 = 0.98125 → close factor 50 %: repay 8,000, seize
        // 8,000 × 1.05 = 8,400 of ETH (the largest) = 4.5405… ETH.
        LendingCollateral[] collateral = [new("USDC", 1_000m, 1m, 0.9m, 0.04m), new("ETH", 10m, 1_850m, 0.8m, 0.05m)];
        Assert.Equal(0.98125, LendingLiquidation.HealthFactor(collateral, 16_000m), 12);
        var call = LendingLiquidation.Next(collateral, 16_000m)!;
        Assert.Equal(8_000m, call.DebtValueRepaid);
        Assert.Equal("ETH", call.SeizedAsset);
        Assert.Equal(8_400m / 1_850m, call.SeizedQuantity);
    }

    [Fact]
    public void Below_0_95_the_whole_debt_may_be_repaid_but_never_more_than_the_seized_asset_covers()
    {
        // HF = 10 × 1,500 × 0.8 / 14,000 = 0.857: full close of 14,000 would need 14,700 of ETH; only 15,000 exist,
        // so it is covered. At 1,300: 13,000 of ETH cannot cover 14,700, so all of it goes and 13,000 / 1.05 is repaid.
        LendingCollateral[] at1500 = [new("ETH", 10m, 1_500m, 0.8m, 0.05m)];
        var full = LendingLiquidation.Next(at1500, 14_000m)!;
        Assert.Equal(14_000m, full.DebtValueRepaid);
        Assert.Equal(14_700m / 1_500m, full.SeizedQuantity);

        LendingCollateral[] at1300 = [new("ETH", 10m, 1_300m, 0.8m, 0.05m)];
        var capped = LendingLiquidation.Next(at1300, 14_000m)!;
        Assert.Equal(10m, capped.SeizedQuantity);
        Assert.Equal(13_000m / 1.05m, capped.DebtValueRepaid);
    }
}
