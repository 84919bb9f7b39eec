using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Cli;
using RebalanceMesh.Testing;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// A test class with its own whole mesh: redis-server and the four services as real processes on free loopback ports,
/// started by the same launcher as `rmesh up` before each test and stopped after it.
/// </summary>
public abstract class MeshTest(ITestOutputHelper output) : IAsyncLifetime
{
    protected ITestOutputHelper Output { get; } = output;

    protected string StateDir { get; } = Directory.CreateTempSubdirectory("rmesh-it-").FullName;

    protected MeshState Mesh { get; private set; } = null!;

    /// <summary>Variables added to every service of this class's mesh.</summary>
    protected virtual IReadOnlyDictionary<string, string>? ExtraEnv => null;

    public async Task InitializeAsync()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var log = new StringWriter();
        var options = new LaunchOptions(RepoPaths.Root, StateDir, FreePorts: true, ExtraEnv: ExtraEnv, Configuration: BuildConfiguration.Name);
        Mesh = await MeshLauncher.UpAsync(MeshTopology.Load(Path.Combine(RepoPaths.Root, "tye.yaml")), options, log, cancel.Token);
        Output.WriteLine(log.ToString());
    }

    private readonly List<Grpc.Net.Client.GrpcChannel> _channels = [];

    /// <summary>A planning client on this mesh (its channel is disposed with the mesh).</summary>
    protected RebalanceMesh.Contracts.Planning.V1.PlanningService.PlanningServiceClient PlanningClient()
    {
        var channel = Mesh.PlanningChannel();
        _channels.Add(channel);
        return new RebalanceMesh.Contracts.Planning.V1.PlanningService.PlanningServiceClient(channel.WithDefaultDeadline());
    }

    /// <summary>A channel to an internal service of this mesh, with the mesh credential (disposed with the mesh).</summary>
    protected Grpc.Net.Client.GrpcChannel ServiceChannel(string service)
    {
        var channel = Mesh.ServiceChannel(service);
        _channels.Add(channel);
        return channel;
    }

    /// <summary>The series a service of this mesh exports on its Prometheus endpoint now (names as Prometheus stores them).</summary>
    protected async Task<IReadOnlySet<string>> ScrapeAsync(string service)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var response = await http.GetAsync(Mesh.Service(service).HttpUrl + ServiceDefaultsExtensions.MetricsPath);
        response.EnsureSuccessStatusCode();
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        return (await response.Content.ReadAsStringAsync())
            .Split('\n')
            .Where(line => line.Length > 0 && line[0] != '#')
            .Select(line => line[..line.IndexOfAny(['{', ' '])])
            .ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// Asserts that a service exports these series for Prometheus. The dashboards and alerts in deploy/observability
    /// query only series some mesh test names here (DeployTests checks that).
    /// </summary>
    protected async Task AssertExportedAsync(string service, params string[] series)
    {
        // A gauge of what the monitor measured appears with its next pass (every market event): scraped again for up
        // to 10 s until every series is there.
        var exported = await ScrapeAsync(service);
        for (var attempt = 0; attempt < 50 && !series.All(exported.Contains); attempt++)
        {
            await Task.Delay(200);
            exported = await ScrapeAsync(service);
        }

        foreach (var name in series)
        {
            Assert.True(exported.Contains(name), $"{service} does not export {name}; it exports {string.Join(", ", exported.Where(e => e.StartsWith("rebalancemesh_", StringComparison.Ordinal)).Order())}");
        }
    }

    /// <summary>Creates (or replaces) a portfolio holding only cash, in EUR.</summary>
    protected static Task CashPortfolioAsync(RebalanceMesh.Contracts.Planning.V1.PlanningService.PlanningServiceClient planning, string portfolioId, decimal cash) =>
        planning.UpsertPortfolioAsync(new RebalanceMesh.Contracts.Planning.V1.UpsertPortfolioRequest
        {
            Portfolio = new RebalanceMesh.Contracts.Planning.V1.Portfolio { PortfolioId = portfolioId, BaseCurrency = "EUR", Cash = cash },
            ExpectedVersion = -1,
        }).ResponseAsync;

    /// <summary>
    /// PreviewRebalance, retried while the feed's first ticks have not priced the portfolio yet (FAILED_PRECONDITION:
    /// no market price), for up to ten seconds.
    /// </summary>
    protected static async Task<RebalanceMesh.Contracts.Planning.V1.Plan> PreviewWhenPricedAsync(
        RebalanceMesh.Contracts.Planning.V1.PlanningService.PlanningServiceClient planning, RebalanceMesh.Contracts.Planning.V1.PreviewRebalanceRequest request)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return (await planning.PreviewRebalanceAsync(request)).Plan;
            }
            catch (Grpc.Core.RpcException ex) when (ex.StatusCode == Grpc.Core.StatusCode.FailedPrecondition && attempt < 49)
            {
                await Task.Delay(200);
            }
        }
    }

    /// <summary>Polls GetPlan until the plan leaves APPROVED and EXECUTING, for up to <paramref name="seconds"/>; returns it as last seen.</summary>
    protected static async Task<RebalanceMesh.Contracts.Planning.V1.Plan> WaitForPlanEndAsync(
        RebalanceMesh.Contracts.Planning.V1.PlanningService.PlanningServiceClient planning, RebalanceMesh.Contracts.Planning.V1.Plan submitted, int seconds = 15)
    {
        var plan = submitted;
        for (var attempt = 0; attempt < seconds * 10 && plan.Status is RebalanceMesh.Contracts.Planning.V1.PlanStatus.Approved or RebalanceMesh.Contracts.Planning.V1.PlanStatus.Executing; attempt++)
        {
            await Task.Delay(100);
            plan = (await planning.GetPlanAsync(new RebalanceMesh.Contracts.Planning.V1.GetPlanRequest { PlanId = submitted.PlanId })).Plan;
        }

        return plan;
    }

    public Task DisposeAsync()
    {
        foreach (var channel in _channels)
        {
            channel.Dispose();
        }

        // The services' last log lines go with the test's output (shown when it fails), before the state is removed.
        foreach (var service in Mesh?.Services ?? [])
        {
            // Warnings, errors and anything that is not a structured log line (a crash's stack trace), the last 30.
            var notable = ServiceLogs.ReadAll(service.LogFile).Concat(ServiceLogs.ReadAll(service.ConsoleFile))
                .Where(l => !l.StartsWith('{') || l.Contains("\"LogLevel\":\"Warning\"", StringComparison.Ordinal) || l.Contains("\"LogLevel\":\"Error\"", StringComparison.Ordinal) || l.Contains("\"LogLevel\":\"Critical\"", StringComparison.Ordinal))
                .TakeLast(30);
            Output.WriteLine($"--- {service.Name} log: last warnings and errors ---");
            Output.WriteLine(string.Join(Environment.NewLine, notable));
        }

        MeshLauncher.Down(StateDir, TextWriter.Null);
        Directory.Delete(StateDir, recursive: true);
        return Task.CompletedTask;
    }
}

/// <summary>The build configuration of this test assembly, which is also the one of the service builds it starts.</summary>
public static class BuildConfiguration
{
#if DEBUG
    public const string Name = "Debug";
#else
    public const string Name = "Release";
#endif
}
