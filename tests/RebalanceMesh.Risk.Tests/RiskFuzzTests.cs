using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Risk.Tests;

/// <summary>
/// Bad input at volume: 10,000 random and mutated requests to each of risk's RPCs, as a mesh caller through the real
/// gRPC stack, over a stored history. None may answer Unknown or Internal; risk stores nothing, so there is nothing
/// for a refused request to change.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class RiskFuzzTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly GrpcTestServer<Program> _server = new(redis, new Dictionary<string, string?>
    {
        ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
        ["Services:planning:Grpc"] = "http://127.0.0.1:1",
    });

    public async Task InitializeAsync()
    {
        await redis.FlushAsync();
        var store = new MarketStateStore(redis.Connection!, Options.Create(new MarketStateOptions()), TimeProvider.System);
        var random = new Random(3);
        foreach (var instrument in new[] { "DAX", "SMI" })
        {
            var level = 100.0;
            await store.UpsertDailyClosesAsync(instrument, Enumerable.Range(0, 300).Select(d => new DailyClose(20_000 + d, level *= Math.Exp((random.NextDouble() - 0.5) * 0.04))).ToArray());
        }
    }

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    [Fact]
    public async Task Ten_thousand_random_and_mutated_requests_per_RPC_never_answer_Unknown_or_Internal()
    {
        var invoker = _server.CreateMeshInvoker();
        Holding[] holdings = [new Holding { InstrumentId = "DAX", Quantity = 10m, Price = 100m }, new Holding { InstrumentId = "SMI", Quantity = 5m, Price = 100m }];
        var settings = new RiskSettings { LookbackDays = 250, ConfidenceLevels = { 0.99 }, Methods = { VarMethod.Historical, VarMethod.Parametric }, MonteCarloScenarios = 1_000, Seed = 1 };
        var loan = new CollateralLoan { LoanId = "L1", Collateral = { new CollateralAsset { InstrumentId = "DAX", Quantity = 5m, LiquidationThreshold = 0.8 } }, Debt = { new DebtAsset { InstrumentId = "EUR", Quantity = 100m } } };
        var outcomes = await new RequestFuzzer(invoker, seed: 11).RunAsync(
            RiskService.Descriptor,
            new Dictionary<string, IMessage>
            {
                ["AssessPortfolio"] = new AssessPortfolioRequest { Holdings = { holdings }, Cash = 100m, Settings = settings, Loans = { loan } },
                ["EstimateCovariance"] = new EstimateCovarianceRequest { InstrumentIds = { "DAX", "SMI" }, Method = CovarianceMethod.Ewma, LookbackDays = 250, EwmaLambda = 0.94, IncludeVolatilityForecasts = true, ForecastHorizonDays = 10 },
                ["CompareRisk"] = new CompareRiskRequest { Holdings = { holdings }, Cash = 100m, Trades = { new TradeDelta { InstrumentId = "DAX", QuantityChange = -2m } }, Settings = settings },
                ["CompareRiskBatch"] = new CompareRiskBatchRequest
                {
                    Items =
                    {
                        new CompareRiskRequest { Holdings = { holdings }, Cash = 100m, Trades = { new TradeDelta { InstrumentId = "DAX", QuantityChange = -2m } }, Settings = settings },
                        new CompareRiskRequest { Holdings = { holdings }, Trades = { new TradeDelta { InstrumentId = "SMI", QuantityChange = 1m } } },
                    },
                },
                ["StressTest"] = new StressTestRequest
                {
                    Holdings = { holdings },
                    Cash = 100m,
                    Scenarios = { new StressScenario { Name = "crash", Shocks = { new PriceShock { RelativeChange = -0.3 } } } },
                    CorrelationBreakdown = 1.0,
                    Confidence = 0.99,
                    WorstWindows = 3,
                    WindowDays = 5,
                    LookbackDays = 250,
                },
            },
            writes: new HashSet<string>(),
            digest: () => Task.FromResult(string.Empty));

        Assert.All(outcomes, o => Assert.True(o.Value.GetValueOrDefault(StatusCode.InvalidArgument) > RequestFuzzer.PerRpc / 20, $"{o.Key}: {string.Join(", ", o.Value)}"));
        Assert.All(outcomes, o => Assert.True(o.Value.GetValueOrDefault(StatusCode.OK) > 0, $"{o.Key}: {string.Join(", ", o.Value)}"));
    }
}
