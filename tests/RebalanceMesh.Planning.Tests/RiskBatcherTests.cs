extern alias riskhost;

using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;
using RiskProgram = riskhost::Program;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Plans measured at the same time share risk calls: what arrives while a CompareRiskBatch call is in flight goes in the
/// next one, each plan gets exactly its own comparison (the one its own CompareRisk call gives), and an item risk refuses
/// fails alone. Against the real risk service on the in-process test server, whose first call is held until the others
/// have queued.
/// </summary>
public sealed class RiskBatcherTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private static readonly string[] Instruments = ["A", "B", "C", "D"];
    private readonly RedisServer _redis;
    private readonly HeldCalls<CompareRiskBatchRequest> _calls = new();
    private readonly GrpcTestServer<RiskProgram> _risk;

    public RiskBatcherTests(RedisServer redis)
    {
        _redis = redis;
        _risk = new GrpcTestServer<RiskProgram>(redis, new Dictionary<string, string?> { ["Services:pricing:Grpc"] = "http://127.0.0.1:1" }, services =>
        {
            services.AddSingleton(_calls);
            services.Configure<Grpc.AspNetCore.Server.GrpcServiceOptions>(o => o.Interceptors.Add<HeldCalls<CompareRiskBatchRequest>>());
        });
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        var store = new MarketStateStore(_redis.Connection!, Options.Create(new MarketStateOptions()), TimeProvider.System);
        var random = new Random(5);
        foreach (var instrument in Instruments)
        {
            var level = 100.0;
            await store.UpsertDailyClosesAsync(instrument, [.. Enumerable.Range(0, 300).Select(d => new DailyClose(20_000 + d, level *= Math.Exp((random.NextDouble() - 0.5) * 0.04)))]);
        }
    }

    public Task DisposeAsync() => _risk.DisposeAsync().AsTask();

    private static CompareRiskRequest Plan(int k) => new()
    {
        Holdings =
        {
            new Holding { InstrumentId = Instruments[k % 4], Quantity = 100m + k, Price = 100m },
            new Holding { InstrumentId = Instruments[(k + 1) % 4], Quantity = 50m, Price = 100m },
            new Holding { InstrumentId = Instruments[(k + 2) % 4], Quantity = 0m, Price = 100m },
        },
        Cash = 1_000m,
        Trades = { new TradeDelta { InstrumentId = Instruments[k % 4], QuantityChange = -10m }, new TradeDelta { InstrumentId = Instruments[(k + 2) % 4], QuantityChange = 10m } },
        Settings = new RiskSettings { HorizonDays = 1, ConfidenceLevels = { 0.99 }, Methods = { VarMethod.Historical } },
    };

    [Fact]
    public async Task Plans_measured_while_a_call_is_in_flight_share_the_next_call_and_each_gets_its_own_comparison()
    {
        var client = new RiskService.RiskServiceClient(_risk.CreateMeshInvoker());
        await using var batcher = new RiskBatcher(client);

        // The first plan's call is held at risk; twelve more arrive meanwhile, one of them with a trade risk refuses.
        _calls.HoldFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = batcher.CompareAsync(Plan(0), CancellationToken.None);
        await _calls.FirstArrived.Task;
        var plans = Enumerable.Range(1, 12).Select(Plan).ToArray();
        plans[5].Trades[0].QuantityChange = new DecimalValue { Value = "not a number" };
        var rest = plans.Select(p => batcher.CompareAsync(p, CancellationToken.None)).ToArray();
        _calls.HoldFirst.SetResult();

        Assert.Equal(await client.CompareRiskAsync(Plan(0)), await first);
        for (var k = 0; k < plans.Length; k++)
        {
            if (k == 5)
            {
                var refused = await Assert.ThrowsAsync<RpcException>(() => rest[k]);
                Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
                continue;
            }

            Assert.Equal(await client.CompareRiskAsync(plans[k]), await rest[k]);
        }

        // Two calls in all: the held one, then one carrying everything that queued behind it, in order.
        Assert.Equal([1, 12], _calls.Requests.Select(r => r.Items.Count));
        Assert.Equal(plans, _calls.Requests.Last().Items);
    }
}
