using Grpc.Core;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Risk.Tests;

public sealed class RiskServiceTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly RiskService.RiskServiceClient _client;

    public RiskServiceTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?> { ["Services:pricing:Grpc"] = "http://127.0.0.1:1" });
        _client = new RiskService.RiskServiceClient(_server.CreateMeshInvoker());
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        // History of the reference data set, written through MarketState as pricing writes it.
        var store = new MarketStateStore(_redis.Connection!, Options.Create(new MarketStateOptions()), TimeProvider.System);
        var returns = RiskReferenceTests.LastReturns(250);
        for (var j = 0; j < returns.Count; j++)
        {
            var level = 1000.0;
            var closes = new List<DailyClose> { new(20_000, level) };
            for (var t = 0; t < returns.Days; t++)
            {
                level *= Math.Exp(returns.Values[t, j]);
                closes.Add(new DailyClose(20_001 + t, level));
            }

            await store.UpsertDailyClosesAsync(returns.Instruments[j], closes);
        }
    }

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Holding Holding(string id, decimal quantity, decimal price) => new() { InstrumentId = id, Quantity = quantity, Price = price };

    [Fact]
    public async Task A_viewer_token_measures_risk_and_no_token_does_not()
    {
        // Two assets' daily returns passed inline: the sample covariance × 252, as for a mesh caller.
        var request = new EstimateCovarianceRequest { InstrumentIds = { "A", "B" }, Returns = new ReturnMatrix { Rows = 3, Values = { 0.01, 0.02, -0.01, 0.0, 0.02, 0.01 } } };
        var viewer = new RiskService.RiskServiceClient(_server.CreateInvoker(TestAuth.Token("viewer")));
        var asViewer = await viewer.EstimateCovarianceAsync(request);
        Assert.Equal((await _client.EstimateCovarianceAsync(request)).Covariance, asViewer.Covariance);

        var anonymous = new RiskService.RiskServiceClient(_server.CreateInvoker());
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => anonymous.EstimateCovarianceAsync(request).ResponseAsync)).StatusCode);
        var wrongKey = new RiskService.RiskServiceClient(_server.CreateInvoker(TestAuth.Token("viewer", key: RebalanceMesh.ServiceDefaults.MeshAuth.NewSecret())));
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => wrongKey.EstimateCovarianceAsync(request).ResponseAsync)).StatusCode);
    }

    [Fact]
    public async Task A_started_host_is_connected_to_Redis_before_its_first_call()
    {
        // Connected lazily, the first burst of calls to a cold service waited on one synchronous connect and starved
        // the thread pool for seconds (the fuzz test's first calls ran past their deadline).
        var redis = _redis.Connection!.GetServer("127.0.0.1", _redis.Port);
        async Task<int> RiskClients() => (await redis.ClientListAsync()).Count(c => c.Name == typeof(Program).Assembly.GetName().Name);
        var before = await RiskClients();

        await using var cold = new GrpcTestServer<Program>(_redis, new Dictionary<string, string?> { ["Services:pricing:Grpc"] = "http://127.0.0.1:1" });
        _ = cold.Server; // started, no call made

        Assert.True(await RiskClients() > before, "the host started without connecting to Redis");
    }

    [Fact]
    public async Task AssessPortfolio_reads_history_from_Redis_and_matches_the_reference()
    {
        // 100k DAX, 200k SMI, 300k CAC, 400k FTSE at a price of 1000 each, plus 50k cash.
        var request = new AssessPortfolioRequest
        {
            Holdings = { Holding("DAX", 100, 1000), Holding("SMI", 200, 1000), Holding("CAC", 300, 1000), Holding("FTSE", 400, 1000) },
            Cash = 50_000m,
            Settings = new RiskSettings { LookbackDays = 250 },
        };
        var response = await _client.AssessPortfolioAsync(request);
        Assert.Equal(250, response.Observations);
        Assert.Equal(0.1677265176718118, response.AnnualVolatility, 1e-11);
        var historical99 = response.Estimates.Single(e => e.Method == VarMethod.Historical && e.Confidence == 0.99);
        Assert.Equal(27770.939573785618, historical99.Var, 1e-6);
        Assert.Equal(31549.674051166334, historical99.Cvar, 1e-6);
        Assert.Equal(4, response.Positions.Count);
    }

    [Fact]
    public async Task CompareRisk_reports_the_variance_change_of_trades()
    {
        var request = new CompareRiskRequest
        {
            Holdings = { Holding("DAX", 500, 1000), Holding("FTSE", 0, 1000) },
            Trades = { new TradeDelta { InstrumentId = "DAX", QuantityChange = -250m }, new TradeDelta { InstrumentId = "FTSE", QuantityChange = 250m } },
            Settings = new RiskSettings { LookbackDays = 250 },
        };
        var response = await _client.CompareRiskAsync(request);
        var before = response.Before.AnnualVolatility * response.Before.NetValue;
        var after = response.After.AnnualVolatility * response.After.NetValue;
        Assert.Equal((after * after) - (before * before), response.VarianceChange, 1e-3);
        Assert.True(response.After.AnnualVolatility < response.Before.AnnualVolatility, "diversifying out of DAX lowers volatility");
        Assert.Equal(0.5 + 0.5, response.Turnover, 12);
        Assert.Equal(0.0, response.LeverageChange, 12); // a switch between two assets keeps gross exposure
        Assert.Equal(2, response.Contributions.Count);
    }

    [Fact]
    public async Task CompareRiskBatch_answers_each_item_as_its_own_CompareRisk_call_and_one_bad_item_fails_alone()
    {
        CompareRiskRequest Switch(string from, string to, decimal quantity) => new()
        {
            Holdings = { Holding(from, 500, 1000), Holding(to, 0, 1000) },
            Trades = { new TradeDelta { InstrumentId = from, QuantityChange = -quantity }, new TradeDelta { InstrumentId = to, QuantityChange = quantity } },
            Settings = new RiskSettings { LookbackDays = 250, ConfidenceLevels = { 0.99 }, Methods = { VarMethod.Historical } },
        };
        var bad = Switch("DAX", "SMI", 100);
        bad.Trades[1].QuantityChange = new DecimalValue { Value = "1e5" };
        var unknown = Switch("DAX", "NOPE", 100); // no history: refused as the single call refuses it
        CompareRiskRequest[] items = [Switch("DAX", "FTSE", 250), bad, Switch("SMI", "CAC", 100), unknown];

        var batch = await _client.CompareRiskBatchAsync(new CompareRiskBatchRequest { Items = { items } });

        Assert.Equal(items.Length, batch.Outcomes.Count);
        Assert.Equal(await _client.CompareRiskAsync(items[0]), batch.Outcomes[0].Comparison);
        Assert.Equal(await _client.CompareRiskAsync(items[2]), batch.Outcomes[2].Comparison);
        Assert.Equal((int)StatusCode.InvalidArgument, batch.Outcomes[1].Error.Code);
        Assert.Contains(batch.Outcomes[1].Error.FieldViolations, v => v.Field == "trades[1].quantity_change");
        var single = await Assert.ThrowsAsync<RpcException>(() => _client.CompareRiskAsync(items[3]).ResponseAsync);
        Assert.Equal((int)single.StatusCode, batch.Outcomes[3].Error.Code);
    }

    [Fact]
    public async Task CompareRiskBatch_refuses_an_empty_or_oversized_batch()
    {
        await RpcAssert.InvalidArgumentAsync(() => _client.CompareRiskBatchAsync(new CompareRiskBatchRequest()).ResponseAsync, "items");
        var item = new CompareRiskRequest { Holdings = { Holding("DAX", 1, 1000) }, Trades = { new TradeDelta { InstrumentId = "DAX", QuantityChange = 1m } } };
        var tooMany = new CompareRiskBatchRequest();
        tooMany.Items.AddRange(Enumerable.Repeat(item, 257));
        await RpcAssert.InvalidArgumentAsync(() => _client.CompareRiskBatchAsync(tooMany).ResponseAsync, "items");
        var tooLarge = new CompareRiskBatchRequest();
        var wide = new CompareRiskRequest { Trades = { Enumerable.Range(0, 2_000).Select(i => new TradeDelta { InstrumentId = $"I{i}", QuantityChange = 1m }) } };
        tooLarge.Items.AddRange(Enumerable.Repeat(wide, 11)); // 22,000 rows, over 20,000
        await RpcAssert.InvalidArgumentAsync(() => _client.CompareRiskBatchAsync(tooLarge).ResponseAsync, "items");
    }

    [Fact]
    public async Task Bad_input_is_InvalidArgument_with_field_violations()
    {
        var request = new AssessPortfolioRequest
        {
            Holdings = { Holding("DAX", 1, 1), new Holding { InstrumentId = "DAX", Quantity = new DecimalValue { Value = "1e5" } } },
            Settings = new RiskSettings { HorizonDays = -1, ConfidenceLevels = { 1.5 }, LookbackDays = 3 },
        };
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.AssessPortfolioAsync(request).ResponseAsync, "holdings[1].instrument_id");
        Assert.Contains("holdings[1].quantity", fields);
        Assert.Contains("settings.horizon_days", fields);
        Assert.Contains("settings.confidence_levels[0]", fields);
        Assert.Contains("settings.lookback_days", fields);

        await RpcAssert.InvalidArgumentAsync(() => _client.AssessPortfolioAsync(new AssessPortfolioRequest()).ResponseAsync, "holdings");
        var both = new AssessPortfolioRequest { PortfolioId = "p-1", Holdings = { Holding("DAX", 1, 1) }, Cash = 5m };
        var bothFields = await RpcAssert.InvalidArgumentAsync(() => _client.AssessPortfolioAsync(both).ResponseAsync, "holdings");
        Assert.Contains("cash", bothFields);
        await RpcAssert.InvalidArgumentAsync(() => _client.AssessPortfolioAsync(new AssessPortfolioRequest { PortfolioId = "bad id!" }).ResponseAsync, "portfolio_id");
        await RpcAssert.InvalidArgumentAsync(() => _client.EstimateCovarianceAsync(new EstimateCovarianceRequest { InstrumentIds = { "A" }, Returns = new ReturnMatrix { Rows = 3, Values = { 1, 2 } } }).ResponseAsync, "returns.values");
    }

    [Fact]
    public async Task AssessPortfolio_reports_every_method_ratios_and_correlation()
    {
        var request = new AssessPortfolioRequest
        {
            Holdings = { Holding("DAX", 100, 1000), Holding("SMI", 200, 1000), Holding("CAC", 300, 1000), Holding("FTSE", 400, 1000) },
            Cash = 50_000m,
            Settings = new RiskSettings
            {
                LookbackDays = 250,
                ConfidenceLevels = { 0.99 },
                Methods = { VarMethod.Historical, VarMethod.Parametric, VarMethod.CornishFisher, VarMethod.MonteCarlo },
                MonteCarloScenarios = 20_000,
                Seed = 5,
                IncludeCorrelation = true,
            },
        };
        var response = await _client.AssessPortfolioAsync(request);
        Assert.Equal(4, response.Estimates.Count);
        Assert.Equal(29596.411750365263, response.Estimates.Single(e => e.Method == VarMethod.CornishFisher).Var, 1e-6);
        Assert.InRange(response.Estimates.Single(e => e.Method == VarMethod.MonteCarlo).Var / 25808.657669564036, 0.95, 1.05);
        Assert.Equal(1.0953453319758346, response.DiversificationRatio, 1e-11);
        Assert.Equal(16, response.Correlation.Count);
        Assert.Equal(1.0, response.Correlation[0], 12);
        Assert.Equal(response.Correlation[1], response.Correlation[4], 12);
    }

    [Fact]
    public async Task Oversized_work_is_refused_before_it_starts()
    {
        var holdings = Enumerable.Range(0, 200).Select(i => Holding("I" + i, 1, 1)).ToArray();
        var request = new AssessPortfolioRequest { Settings = new RiskSettings { Methods = { VarMethod.MonteCarlo }, MonteCarloScenarios = 200_000 } };
        request.Holdings.AddRange(holdings);
        var ex = await RpcAssert.StatusAsync(() => _client.AssessPortfolioAsync(request).ResponseAsync, StatusCode.ResourceExhausted);
        Assert.Contains("budget", ex.Status.Detail);
        await RpcAssert.InvalidArgumentAsync(
            () => _client.AssessPortfolioAsync(new AssessPortfolioRequest { Holdings = { Holding("DAX", 1, 1) }, Settings = new RiskSettings { MonteCarloScenarios = 1_000_000 } }).ResponseAsync,
            "settings.monte_carlo_scenarios");
    }

    [Fact]
    public async Task StressTest_applies_scenarios_correlation_breakdown_and_worst_windows()
    {
        var request = new StressTestRequest
        {
            Holdings = { Holding("DAX", 100, 1000), Holding("SMI", 200, 1000), Holding("CAC", 300, 1000), Holding("FTSE", 400, 1000) },
            Cash = 50_000m,
            Scenarios = { new StressScenario { Name = "crash", Shocks = { new PriceShock { RelativeChange = -0.3 }, new PriceShock { InstrumentId = "SMI", RelativeChange = -0.1 } } } },
            CorrelationBreakdown = 1.0,
            Confidence = 0.99,
            WorstWindows = 3,
            WindowDays = 5,
            LookbackDays = 250,
        };
        var response = await _client.StressTestAsync(request);
        var crash = Assert.Single(response.Scenarios);
        Assert.Equal(-30_000 - 20_000 - 90_000 - 120_000, crash.Pnl, 9);
        Assert.Equal(1_050_000 - 260_000, crash.NetValueAfter, 9);
        // With every correlation at 1 a long-only portfolio's VaR is the sum of standalone VaRs: VaR × diversification ratio.
        Assert.Equal(25808.657669564036, response.VarBeforeBreakdown, 1e-6);
        Assert.Equal(25808.657669564036 * 1.0953453319758346, response.VarAfterBreakdown, 1e-5);
        Assert.Equal(3, response.WorstWindows.Count);
        Assert.True(response.WorstWindows[0].Pnl <= response.WorstWindows[1].Pnl && response.WorstWindows[1].Pnl <= response.WorstWindows[2].Pnl);
        Assert.All(response.WorstWindows, w => Assert.True(w.WindowEnd.ToDateTime() > w.WindowStart.ToDateTime()));

        await RpcAssert.InvalidArgumentAsync(
            () => _client.StressTestAsync(new StressTestRequest { Holdings = { Holding("DAX", 1, 1) }, Scenarios = { new StressScenario { Name = "x", Shocks = { new PriceShock { RelativeChange = -1.5 } } } } }).ResponseAsync,
            "scenarios[0].shocks[0].relative_change");
    }

    [Fact]
    public async Task AssessPortfolio_reports_loan_health_and_distance_to_liquidation()
    {
        var store = new MarketStateStore(_redis.Connection!, Options.Create(new MarketStateOptions()), TimeProvider.System);
        var now = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow);
        await store.WriteQuotesAsync(
        [
            new Quote { Venue = "V", InstrumentId = "DAX", Bid = 999m, Ask = 1001m, Timestamp = now },
            new Quote { Venue = "V", InstrumentId = "USDC", Bid = 0.9999m, Ask = 1.0001m, Timestamp = now },
        ]);
        var request = new AssessPortfolioRequest
        {
            Holdings = { Holding("DAX", 1, 1000) },
            Settings = new RiskSettings { LookbackDays = 250 },
            Loans =
            {
                new CollateralLoan
                {
                    LoanId = "aave-1",
                    Collateral = { new CollateralAsset { InstrumentId = "DAX", Quantity = 100m, LiquidationThreshold = 0.8 } },
                    Debt = { new DebtAsset { InstrumentId = "USDC", Quantity = 40_000m } },
                },
            },
        };
        var loan = Assert.Single((await _client.AssessPortfolioAsync(request)).Loans);
        Assert.Equal(2.0, loan.HealthFactor, 12);         // 100 × 1000 × 0.8 / 40,000
        Assert.Equal(500.0, loan.LiquidationPrice, 9);
        Assert.Equal(0.5, loan.DropToLiquidation, 12);

        // σ of DAX's daily log returns as stored (sample standard deviation, computed here independently).
        var closes = (await store.GetDailyClosesAsync("DAX", 251)).Select(c => c.Close).ToArray();
        var r = closes.Zip(closes.Skip(1), (a, b) => Math.Log(b / a)).ToArray();
        var mean = r.Average();
        var sigma = Math.Sqrt(r.Sum(x => (x - mean) * (x - mean)) / (r.Length - 1));
        Assert.Equal(Math.Log(2.0) / sigma, loan.DistanceToLiquidationSd, 9);

        // The same loan after a 30 % DAX crash: health factor 2 × 0.7 = 1.4, debt unmoved.
        var stress = await _client.StressTestAsync(new StressTestRequest
        {
            Holdings = { Holding("DAX", 1, 1000) },
            Scenarios = { new StressScenario { Name = "dax crash", Shocks = { new PriceShock { InstrumentId = "DAX", RelativeChange = -0.3 } } } },
            Loans = { request.Loans[0] },
        });
        Assert.Equal(1.4, Assert.Single(Assert.Single(stress.Scenarios).Loans).HealthFactor, 12);

        await RpcAssert.InvalidArgumentAsync(
            () => _client.AssessPortfolioAsync(new AssessPortfolioRequest { Holdings = { Holding("DAX", 1, 1) }, Loans = { new CollateralLoan { LoanId = "x", Collateral = { new CollateralAsset { InstrumentId = "DAX", Quantity = 1m, LiquidationThreshold = 1.5 } }, Debt = { new DebtAsset { InstrumentId = "USDC", Quantity = 1m } } } } }).ResponseAsync,
            "loans[0].collateral[0].liquidation_threshold");
    }

    [Fact]
    public async Task Missing_history_is_FailedPrecondition()
    {
        var ex = await RpcAssert.StatusAsync(() => _client.AssessPortfolioAsync(new AssessPortfolioRequest { Holdings = { Holding("NOHISTORY", 1, 10) } }).ResponseAsync, StatusCode.FailedPrecondition);
        Assert.Contains("NOHISTORY", ex.Status.Detail);
    }

    [Fact]
    public async Task EstimateCovariance_from_prices_with_Ledoit_Wolf_and_volatility_forecasts()
    {
        var lines = File.ReadAllLines(Path.Combine(RepoPaths.Root, "data", "eustockmarkets.csv")).Skip(1).TakeLast(251).ToArray();
        var request = new EstimateCovarianceRequest
        {
            InstrumentIds = { "DAX", "SMI", "CAC", "FTSE" },
            Method = CovarianceMethod.LedoitWolf,
            Prices = new ReturnMatrix { Rows = lines.Length },
            IncludeVolatilityForecasts = true,
            ForecastHorizonDays = 10,
        };
        request.Prices.Values.AddRange(lines.SelectMany(l => l.Split(',').Skip(1).Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture))));
        var response = await _client.EstimateCovarianceAsync(request);
        Assert.Equal(250, response.Observations);
        Assert.Equal(0.02208081979299688, response.Shrinkage, 1e-12);          // scikit-learn
        Assert.Equal(0.0230611485826616, response.Covariance[(1 * 4) + 3], 1e-14);
        Assert.Equal(4, response.Forecasts.Count);
        Assert.All(response.Forecasts, f =>
        {
            Assert.Equal(10, f.GarchTermStructure.Count);
            Assert.True(f.GarchAlpha + f.GarchBeta < 1);
            Assert.InRange(f.EwmaAnnualVolatility, 0.03, 0.6);
        });
        await RpcAssert.InvalidArgumentAsync(
            () => _client.EstimateCovarianceAsync(new EstimateCovarianceRequest { InstrumentIds = { "A" }, Prices = new ReturnMatrix { Rows = 3, Values = { 1, -2, 3 } } }).ResponseAsync,
            "prices.values");
    }

    [Fact]
    public async Task EstimateCovariance_from_passed_returns_is_annualised()
    {
        // Two perfectly anti-correlated series with daily variance 1e-4 (sample, ddof 1): ±0.01 alternating.
        var request = new EstimateCovarianceRequest { InstrumentIds = { "X", "Y" }, Returns = new ReturnMatrix { Rows = 4 } };
        request.Returns.Values.AddRange([0.01, -0.01, -0.01, 0.01, 0.01, -0.01, -0.01, 0.01]);
        var response = await _client.EstimateCovarianceAsync(request);
        var expected = 4 * 0.0001 / 3 * 252; // Σ(x − 0)² / (n − 1), annualised
        Assert.Equal(expected, response.Covariance[0], 12);
        Assert.Equal(-1.0, response.Correlation[1], 12);
        Assert.Equal([0.0, 0.0], response.AnnualMeanReturns);

        // Means by hand: X earns 1 % and 3 % on alternate days → mean 2 % a day → 5.04 a year.
        var drifting = new EstimateCovarianceRequest { InstrumentIds = { "X" }, Returns = new ReturnMatrix { Rows = 4, Values = { 0.01, 0.03, 0.01, 0.03 } } };
        Assert.Equal(0.02 * 252, (await _client.EstimateCovarianceAsync(drifting)).AnnualMeanReturns[0], 12);
    }
}
