using System.Globalization;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

public class BacktesterTests
{
    private static TargetPolicy Policy(IReadOnlyDictionary<string, double> targets, double band = 0.05, double costBps = 0) =>
        TargetPolicy.Of(targets, TradeRules.Default with { EstimatedCostBps = costBps }, new DriftBands(band));

    [Fact]
    public async Task Buy_and_hold_and_a_daily_calendar_by_hand()
    {
        // A doubles on day 1, B stays; 10,000 split 50/50 on day 0 (50 A, 50 B at 100).
        double[][] closes = [[100, 100], [200, 100], [200, 100]];
        var policy = Policy(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.5 }, costBps: 10);
        var results = await Backtester.RunAsync(["A", "B"], closes, 10_000m,
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
    public async Task On_real_data_bands_track_the_target_closer_than_buy_and_hold_for_less_turnover_than_a_calendar()
    {
        var lines = File.ReadAllLines(Path.Combine(RepoPaths.Root, "data", "eustockmarkets.csv")).Skip(1).ToArray();
        var closes = lines.Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        string[] ids = ["DAX", "SMI", "CAC", "FTSE"];
        var policy = Policy(ids.ToDictionary(id => id, _ => 0.24), band: 0.03, costBps: 10);
        var results = (await Backtester.RunAsync(ids, closes, 1_000_000m,
        [
            new BacktestStrategy("hold", BacktestTrigger.Never, policy),
            new BacktestStrategy("monthly", BacktestTrigger.Calendar, policy, 21),
            new BacktestStrategy("bands", BacktestTrigger.Bands, policy),
        ])).ToDictionary(r => r.Name);

        Assert.Equal(1_860, results["bands"].NetValues.Count);
        Assert.InRange(results["bands"].Rebalances, 2, 200);
        Assert.True(results["bands"].TrackingError < results["hold"].TrackingError / 2, "bands keep the portfolio near its target");
        Assert.True(results["bands"].Turnover < results["monthly"].Turnover, "bands trade less than a monthly calendar");
        Assert.All(results.Values, r => Assert.All(r.NetValues, v => Assert.True(v > 0)));
        Assert.All(results.Values, r => Assert.InRange(r.MaxDrawdown, 0.05, 0.6));
    }

    private static double[][] EuStockCloses() => File.ReadAllLines(Path.Combine(RepoPaths.Root, "data", "eustockmarkets.csv")).Skip(1)
        .Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();

    private static readonly string[] EuStockIds = ["DAX", "SMI", "CAC", "FTSE"];

    [Fact]
    public async Task Historical_market_data_is_the_annualised_sample_covariance_and_mean_of_the_trailing_log_returns()
    {
        // tests/reference/backtest_reference.py (numpy): days 0..250, lookback 250.
        double[] covariance = [0.02179854103904165, 0.0167621953124798, 0.01786811249404273, 0.009676155886643277, 0.0167621953124798, 0.019390932539178098, 0.01754091966873889, 0.010234187122221532, 0.01786811249404273, 0.01754091966873889, 0.02762762922966222, 0.01343824463433632, 0.009676155886643277, 0.010234187122221532, 0.01343824463433632, 0.01668560036955857];
        double[] means = [0.08568118101628582, 0.10682190970500394, 0.07940509433607504, 0.06005110628744625];
        var market = new HistoricalMarketData(EuStockIds, EuStockCloses(), 250, 0.0002);
        var estimate = await market.EstimateCovarianceAsync(EuStockIds, 250, CancellationToken.None);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(means[i], estimate.AnnualMeans[i], 12);
            for (var j = 0; j < 4; j++)
            {
                Assert.Equal(covariance[(i * 4) + j], estimate.AnnualCovariance[i, j], 14);
            }
        }

        // A subset in another order is the same estimator on those columns; the half-spread is the one configured.
        var pair = await market.EstimateCovarianceAsync(["FTSE", "DAX"], 250, CancellationToken.None);
        Assert.Equal(covariance[15], pair.AnnualCovariance[0, 0], 14);
        Assert.Equal(covariance[3], pair.AnnualCovariance[0, 1], 14);
        Assert.Equal(0.0002, (await market.HalfSpreadsAsync(["CAC"], CancellationToken.None))["CAC"]);
    }

    [Fact]
    public async Task A_computed_model_trades_to_targets_estimated_from_the_history_before_the_first_day_only()
    {
        // Inverse volatility on the 250 returns before day 250 (numpy, tests/reference/backtest_reference.py).
        double[] expected = [0.2346316574341269, 0.2487717003200147, 0.2084147792641096, 0.26818186298174873];
        var policy = Policy(EuStockIds.ToDictionary(id => id, _ => 0.24), band: 0.03) .With(new TargetModelSpec(TargetModel.InverseVolatility, 250));
        var closes = EuStockCloses();
        var results = await Backtester.RunAsync(EuStockIds, closes, 100_000_000m,
        [
            new BacktestStrategy("inverse vol", BacktestTrigger.Bands, policy),
            new BacktestStrategy("fixed", BacktestTrigger.Never, Policy(EuStockIds.ToDictionary(id => id, _ => 0.24))),
        ]);

        // Every strategy starts after the warm-up, so all are compared over the same days.
        Assert.All(results, r => Assert.Equal(closes.Length - 250, r.NetValues.Count));
        for (var k = 0; k < 4; k++)
        {
            Assert.Equal(expected[k], results[0].Weights[0][k], 4); // whole units of ~2,000 in 100 million
        }

        Assert.Equal(0.24, results[1].Weights[0][0], 4);
        Assert.InRange(results[0].Rebalances, 1, 300);
    }

    [Fact]
    public async Task The_guard_keeps_a_loan_out_of_liquidation_that_takes_the_unguarded_one()
    {
        // A falls from 100 to 80. The loan pledges 50 A (half of 10,000) and borrows 70 % of 5,000 = 3,500:
        // health factor 50 × 100 × 0.8 / 3,500 = 1.1429.
        double[][] closes = [[100, 100], [80, 100], [80, 100]];
        var policy = Policy(new Dictionary<string, double> { ["B"] = 0.3 });
        var loan = new BacktestLoan("A", 0.5m, 0.7m, 0.8);
        var results = await Backtester.RunAsync(["A", "B"], closes, 10_000m,
        [
            new BacktestStrategy("unguarded", BacktestTrigger.Never, policy, Loan: loan),
            new BacktestStrategy("guarded", BacktestTrigger.Never, policy.With(new HealthFactorBand(1.6, 1.3, 0, 1.0)), Loan: loan),
        ]);

        // Unguarded: at 80 the health factor is 50 × 80 × 0.8 / 3,500 = 0.9143 < 0.95, so the venue closes the whole
        // debt in one call and seizes 3,500 × 1.05 / 80 = 45.9375 A: 175 lost to the bonus.
        var unguarded = results[0];
        Assert.Equal(1, unguarded.Liquidations);
        Assert.Equal(175m, unguarded.LiquidationPenalty);
        Assert.Equal(50 * 80 * 0.8 / 3_500, unguarded.MinHealthFactor, 12);
        Assert.Equal(0, unguarded.GuardActions);

        // Guarded: day 0 repays 3,500 − 4,000/1.6 = 1,000 from cash (HF 1.6); at 80 the factor is 3,200/2,500 = 1.28
        // < 1.3, so the guard repays 2,500 − 3,200/1.6 = 500 more before it can fall further. No liquidation.
        var guarded = results[1];
        Assert.Equal(0, guarded.Liquidations);
        Assert.Equal(2, guarded.GuardActions);
        Assert.Equal(4_000.0 / 3_500, guarded.MinHealthFactor, 12); // seen on day 0, before the guard first acted

        // Values: loan equity counts. Day 0 both hold 5,000 of A against the debt; the unguarded run then loses the bonus.
        Assert.Equal(10_000m, guarded.NetValues[0]);
        Assert.Equal(10_000m - (50 * 20m), guarded.NetValues[1]);
        Assert.Equal(10_000m - (50 * 20m) - 175m, unguarded.NetValues[1]);
    }

    [Fact]
    public async Task The_optimisers_risk_aversion_trades_turnover_against_tracking_error_along_the_backtest()
    {
        // Risk parity re-estimated daily, ±2 % bands, 10 bp fees and a 5 bp half-spread (15 bp all-in for the plain
        // planner too), over 600 days after warm-up. The more the optimiser is averse to tracking error, the more it
        // trades and the closer it tracks; very averse, it trades like the plain planner.
        var closes = EuStockCloses()[..850];
        var policy = Policy(EuStockIds.ToDictionary(id => id, _ => 0.24), band: 0.02, costBps: 15) .With(new TargetModelSpec(TargetModel.RiskParity, 250));
        var optimizer = new OptimizerPolicy(OptimizerObjective.TrackingError, 1, 10, 1, new Dictionary<string, decimal>(), null, null, new Dictionary<string, (double, double)>(), 0, []);
        double[] aversions = [1, 10, 1000];
        var results = await Backtester.RunAsync(EuStockIds, closes, 10_000_000m,
        [
            new BacktestStrategy("to target", BacktestTrigger.Bands, policy),
            .. aversions.Select(g => new BacktestStrategy($"γ {g}", BacktestTrigger.Bands, policy.With(optimizer with { RiskAversion = g }), HalfSpreadBps: 5)),
        ]);

        var plain = results[0];
        var optimised = results.Skip(1).ToArray();
        var summary = string.Join("; ", results.Select(r => $"{r.Name}: TE {r.TrackingError:P3}, turnover {r.Turnover:F3}"));
        for (var k = 1; k < optimised.Length; k++)
        {
            Assert.True(optimised[k].Turnover > optimised[k - 1].Turnover, summary);
            Assert.True(optimised[k].TrackingError < optimised[k - 1].TrackingError, summary);
        }

        Assert.True(optimised[0].Turnover < plain.Turnover * 0.8, summary);
        Assert.True(optimised[0].Costs < plain.Costs, summary);
        Assert.Equal(plain.TrackingError, optimised[^1].TrackingError, 3);
    }
}
