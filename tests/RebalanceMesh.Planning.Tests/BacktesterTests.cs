using System.Globalization;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

public class BacktesterTests
{
    private static TargetPolicy Policy(IReadOnlyDictionary<string, double> targets, double band = 0.05, double costBps = 0) =>
        new(targets, band, 0, 0, RebalanceTarget.Target, 0m, new Dictionary<string, decimal>(), costBps);

    [Fact]
    public void Buy_and_hold_and_a_daily_calendar_by_hand()
    {
        // A doubles on day 1, B stays; 10,000 split 50/50 on day 0 (50 A, 50 B at 100).
        double[][] closes = [[100, 100], [200, 100], [200, 100]];
        var policy = Policy(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.5 }, costBps: 10);
        var results = Backtester.Run(["A", "B"], closes, 10_000m,
            [new BacktestStrategy("hold", BacktestTrigger.Never, policy), new BacktestStrategy("daily", BacktestTrigger.Calendar, policy, CalendarDays: 1)]);

        // Day 0: 5,000 + 10 bp each does not fit in 10,000, so buys scale to 49 + 49 units: 9,800 plus 9.80 of costs,
        // 190.20 of cash left, net value 9,990.20. A doubling adds 49 × 100 = 4,900.
        var hold = results[0];
        Assert.Equal(0, hold.Rebalances);
        Assert.Equal(9_990.2m, hold.NetValues[0]);
        Assert.Equal(14_890.2m, hold.NetValues[1]);
        Assert.Equal(hold.NetValues[1], hold.NetValues[2]);
        Assert.Equal(9.8m, hold.Costs);

        // Daily calendar, day 1: half of 14,890.20 is 7,445.10 → sell 11 A (whole units toward zero: 2,200, cost 2.20);
        // buy B with what cash allows: 25 wanted, 23 affordable (2,300, cost 2.30). Day 2 has nothing worth a unit.
        var daily = results[1];
        Assert.Equal(1, daily.Rebalances);
        Assert.Equal(9.8m + 2.2m + 2.3m, daily.Costs);
        Assert.Equal(14_890.2m - 2.2m - 2.3m, daily.NetValues[1]);
        Assert.Equal((double)((9_800m + 2_200m + 2_300m) / daily.NetValues.Average()), daily.Turnover, 12);
    }

    [Fact]
    public void On_real_data_bands_track_the_target_closer_than_buy_and_hold_for_less_turnover_than_a_calendar()
    {
        var lines = File.ReadAllLines(Path.Combine(RepoPaths.Root, "data", "eustockmarkets.csv")).Skip(1).ToArray();
        var closes = lines.Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        string[] ids = ["DAX", "SMI", "CAC", "FTSE"];
        var policy = Policy(ids.ToDictionary(id => id, _ => 0.24), band: 0.03, costBps: 10);
        var results = Backtester.Run(ids, closes, 1_000_000m,
        [
            new BacktestStrategy("hold", BacktestTrigger.Never, policy),
            new BacktestStrategy("monthly", BacktestTrigger.Calendar, policy, 21),
            new BacktestStrategy("bands", BacktestTrigger.Bands, policy),
        ]).ToDictionary(r => r.Name);

        Assert.Equal(1_860, results["bands"].NetValues.Count);
        Assert.InRange(results["bands"].Rebalances, 2, 200);
        Assert.True(results["bands"].TrackingError < results["hold"].TrackingError / 2, "bands keep the portfolio near its target");
        Assert.True(results["bands"].Turnover < results["monthly"].Turnover, "bands trade less than a monthly calendar");
        Assert.All(results.Values, r => Assert.All(r.NetValues, v => Assert.True(v > 0)));
        Assert.All(results.Values, r => Assert.InRange(r.MaxDrawdown, 0.05, 0.6));
    }
}
