using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Cli;
using System.Diagnostics;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.Client.Balancer;
using Grpc.Net.Client.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// Risk scales by starting more replicas and nothing else: two risk processes on one Redis behind one client with
/// round-robin balancing both serve, and when one dies the client carries on with the other.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class RiskReplicasTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("rmesh-replicas-").FullName;
    private readonly List<(Process Process, int Port, string SpanFile)> _replicas = [];

    public async Task InitializeAsync()
    {
        var store = new MarketStateStore(redis.Connection!, Options.Create(new MarketStateOptions()), TimeProvider.System);
        var random = new Random(1);
        foreach (var instrument in new[] { "A", "B" })
        {
            var level = 100.0;
            await store.UpsertDailyClosesAsync(instrument, Enumerable.Range(0, 300).Select(d => new DailyClose(20_000 + d, level *= Math.Exp((random.NextDouble() - 0.5) * 0.04))).ToArray());
        }

        for (var i = 0; i < 2; i++)
        {
            _replicas.Add(await StartReplicaAsync(i));
        }
    }

    public Task DisposeAsync()
    {
        foreach (var (process, _, _) in _replicas)
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(5_000);
            }

            process.Dispose();
        }

        Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }

    private async Task<(Process, int, string)> StartReplicaAsync(int index)
    {
        var grpc = RedisServer.FreePort();
        var http = RedisServer.FreePort();
        var dll = Path.Combine(RepoPaths.Root, "services", "Risk", "RebalanceMesh.Risk", "bin", BuildConfiguration.Name, "net10.0", "RebalanceMesh.Risk.dll");
        var spanFile = Path.Combine(_directory, $"risk-{index}.jsonl");
        var start = new ProcessStartInfo("dotnet", [dll]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (key, value) in MeshLauncher.ServiceEnvironment(grpc, http, redis.ConnectionString, spanFile, $"risk-{index}"))
        {
            start.Environment[key] = value;
        }

        start.Environment["Auth__MeshToken"] = TestAuth.MeshToken; // risk accepts only mesh callers
        start.Environment["Services__pricing__Grpc"] = "http://127.0.0.1:1"; // only derivatives need pricing; these holdings are spot
        var process = Process.Start(start)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { output.Enqueue(e.Data); } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { output.Enqueue(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        for (var attempt = 0; attempt < 600 && !process.HasExited; attempt++)
        {
            try
            {
                if ((await probe.GetAsync($"http://127.0.0.1:{http}/health/ready")).IsSuccessStatusCode)
                {
                    return (process, grpc, spanFile);
                }
            }
            catch (HttpRequestException)
            {
                // not up yet
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"risk replica {index} did not become ready (exited: {process.HasExited}):{Environment.NewLine}{string.Join(Environment.NewLine, output.TakeLast(20))}");
    }

    private GrpcChannel RoundRobinChannel()
    {
        var services = new ServiceCollection();
        services.AddSingleton<ResolverFactory>(new StaticResolverFactory(_ => _replicas.Select(r => new BalancerAddress("127.0.0.1", r.Port)).ToArray()));
        return GrpcChannel.ForAddress("static:///risk", new GrpcChannelOptions
        {
            Credentials = ChannelCredentials.Create(ChannelCredentials.Insecure, MeshAuth.ClientCredentials(null, TestAuth.MeshToken)),
            UnsafeUseInsecureChannelCallCredentials = true,
            ServiceProvider = services.BuildServiceProvider(),
            ServiceConfig = new ServiceConfig
            {
                LoadBalancingConfigs = { new RoundRobinConfig() },
                MethodConfigs =
                {
                    new MethodConfig
                    {
                        Names = { MethodName.Default },
                        RetryPolicy = new RetryPolicy
                        {
                            MaxAttempts = 4,
                            InitialBackoff = TimeSpan.FromMilliseconds(100),
                            MaxBackoff = TimeSpan.FromSeconds(1),
                            BackoffMultiplier = 2,
                            RetryableStatusCodes = { StatusCode.Unavailable },
                        },
                    },
                },
            },
        });
    }

    private static int ServedCalls(string spanFile) =>
        !File.Exists(spanFile) ? 0 : File.ReadLines(spanFile).Count(l => l.Contains("RiskService/AssessPortfolio", StringComparison.Ordinal) && l.Contains("\"kind\":\"Server\"", StringComparison.Ordinal));

    [Fact]
    public async Task Two_replicas_share_the_load_and_one_survives_the_other()
    {
        using var channel = RoundRobinChannel();
        var client = new RiskService.RiskServiceClient(channel.WithDefaultDeadline());
        var request = new AssessPortfolioRequest
        {
            Holdings =
            {
                new Holding { InstrumentId = "A", Quantity = 10m, Price = 100m },
                new Holding { InstrumentId = "B", Quantity = 5m, Price = 100m },
            },
        };

        var first = await client.AssessPortfolioAsync(request, deadline: DateTime.UtcNow.AddSeconds(10));
        for (var i = 0; i < 39; i++)
        {
            var again = await client.AssessPortfolioAsync(request, deadline: DateTime.UtcNow.AddSeconds(10));
            Assert.Equal(first.AnnualVolatility, again.AnnualVolatility); // stateless: every replica answers the same
        }

        await Task.Delay(300); // spans are written as calls end
        var served = _replicas.Select(r => ServedCalls(r.SpanFile)).ToArray();
        Assert.Equal(40, served.Sum());
        Assert.All(served, count => Assert.True(count >= 10, $"replica load split {string.Join("/", served)}"));

        _replicas[0].Process.Kill(entireProcessTree: true);
        await _replicas[0].Process.WaitForExitAsync();
        for (var i = 0; i < 10; i++)
        {
            var survivor = await client.AssessPortfolioAsync(request, deadline: DateTime.UtcNow.AddSeconds(10));
            Assert.Equal(first.AnnualVolatility, survivor.AnnualVolatility);
        }
    }
}
