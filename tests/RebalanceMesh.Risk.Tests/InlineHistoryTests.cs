using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Risk.Tests;

/// <summary>
/// A caller's own series, measured without writing anything into market state: the same reference figures as the
/// stored-history tests (numpy, tests/reference/risk_reference.py), with Redis holding no history at all.
/// </summary>
public sealed class InlineHistoryTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly RiskService.RiskServiceClient _client;

    public InlineHistoryTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?> { ["Services:pricing:Grpc"] = "http://127.0.0.1:1" });
        _client = new RiskService.RiskServiceClient(_server.CreateMeshInvoker());
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Holding Holding(string id, decimal quantity) => new() { InstrumentId = id, Quantity = quantity, Price = 1000m };

    /// <summary>The reference data set's last 250 daily returns, with two extra older rows the lookback leaves out.</summary>
    private static HistoryInput Returns()
    {
        var returns = RiskReferenceTests.LastReturns(250);
        var history = new HistoryInput { Returns = new ReturnMatrix { Rows = returns.Days + 2 } };
        history.InstrumentIds.AddRange(returns.Instruments);
        history.Returns.Values.AddRange(Enumerable.Repeat(0.5, 2 * returns.Count)); // outside the 250-day lookback
        for (var t = 0; t < returns.Days; t++)
        {
            for (var j = 0; j < returns.Count; j++)
            {
                history.Returns.Values.Add(returns.Values[t, j]);
            }
        }

        return history;
    }

    /// <summary>The same returns as prices: 1,000 compounded (log returns are taken back).</summary>
    private static HistoryInput Prices()
    {
        var returns = RiskReferenceTests.LastReturns(250);
        var history = new HistoryInput { Prices = new ReturnMatrix { Rows = returns.Days + 1 } };
        history.InstrumentIds.AddRange(returns.Instruments);
        var levels = Enumerable.Repeat(1000.0, returns.Count).ToArray();
        history.Prices.Values.AddRange(levels);
        for (var t = 0; t < returns.Days; t++)
        {
            for (var j = 0; j < returns.Count; j++)
            {
                levels[j] *= Math.Exp(returns.Values[t, j]);
                history.Prices.Values.Add(levels[j]);
            }
        }

        return history;
    }

    [Fact]
    public async Task AssessPortfolio_measures_inline_returns_or_prices_as_the_reference_does()
    {
        foreach (var history in new[] { Returns(), Prices() })
        {
            var response = await _client.AssessPortfolioAsync(new AssessPortfolioRequest
            {
                Holdings = { Holding("DAX", 100), Holding("SMI", 200), Holding("CAC", 300), Holding("FTSE", 400) },
                Cash = 50_000m,
                Settings = new RiskSettings { LookbackDays = 250 },
                History = history,
            });
            Assert.Equal(250, response.Observations);
            Assert.Equal(0.1677265176718118, response.AnnualVolatility, 1e-11);
            var historical99 = response.Estimates.Single(e => e.Method == VarMethod.Historical && e.Confidence == 0.99);
            Assert.Equal(27770.939573785618, historical99.Var, 1e-6);
            Assert.Equal(31549.674051166334, historical99.Cvar, 1e-6);
        }

        Assert.Empty(await _redis.Connection!.GetServer("127.0.0.1", _redis.Port).KeysAsync(pattern: "mkt:*").ToListAsync());
    }

    [Fact]
    public async Task CompareRisk_and_StressTest_take_the_same_inline_series()
    {
        var compare = await _client.CompareRiskAsync(new CompareRiskRequest
        {
            Holdings = { Holding("DAX", 500), Holding("FTSE", 0) },
            Trades = { new TradeDelta { InstrumentId = "DAX", QuantityChange = -250m }, new TradeDelta { InstrumentId = "FTSE", QuantityChange = 250m } },
            Settings = new RiskSettings { LookbackDays = 250 },
            History = Returns(),
        });
        Assert.Equal(250, compare.Before.Observations);
        Assert.True(compare.After.AnnualVolatility < compare.Before.AnnualVolatility, "diversifying out of DAX lowers volatility");

        var stress = await _client.StressTestAsync(new StressTestRequest
        {
            Holdings = { Holding("DAX", 100), Holding("SMI", 200), Holding("CAC", 300), Holding("FTSE", 400) },
            Cash = 50_000m,
            CorrelationBreakdown = 1.0,
            Confidence = 0.99,
            WorstWindows = 3,
            WindowDays = 5,
            LookbackDays = 250,
            History = Returns(),
        });
        Assert.Equal(25808.657669564036, stress.VarBeforeBreakdown, 1e-6); // as with the same history stored in Redis
        Assert.Equal(3, stress.WorstWindows.Count);
        Assert.All(stress.WorstWindows, w => Assert.Null(w.WindowStart)); // the caller's rows have no dates
    }

    [Fact]
    public async Task An_inline_series_must_cover_every_risk_factor_and_be_well_formed()
    {
        var history = Returns();
        history.InstrumentIds[0] = "OTHER";
        await RpcAssert.InvalidArgumentAsync(() => _client.AssessPortfolioAsync(new AssessPortfolioRequest
        {
            Holdings = { Holding("DAX", 100) },
            History = history,
        }).ResponseAsync, "history.instrument_ids");

        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.StressTestAsync(new StressTestRequest
        {
            Holdings = { Holding("DAX", 100) },
            WorstWindows = 1,
            History = new HistoryInput { InstrumentIds = { "DAX", "DAX" }, Returns = new ReturnMatrix { Rows = 3, Values = { 0.1, double.NaN } }, Prices = new ReturnMatrix { Rows = 3 } },
        }).ResponseAsync, "history.instrument_ids");
        Assert.Contains("history.returns", fields);
        Assert.Contains("history.returns.values", fields);
    }
}
