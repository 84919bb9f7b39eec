using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Cli;

/// <summary>What a bounded load on one RPC measured (after its warm-up).</summary>
public sealed record RpcLoadResult(
    string Rpc, int Seconds, int Concurrency, IReadOnlyList<double> Milliseconds, IReadOnlyDictionary<StatusCode, int> Errors,
    IReadOnlyList<ProcessSample> Before, IReadOnlyList<ProcessSample> After)
{
    public int ErrorCount => Errors.Values.Sum();

    public double CallsPerSecond => Milliseconds.Count / (double)Seconds;

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Rpc,-17} {Seconds} s × {Concurrency}: {Milliseconds.Count} calls ({CallsPerSecond:F0}/s), {ErrorCount} errors{(ErrorCount > 0 ? " (" + string.Join(", ", Errors.Select(e => $"{e.Key} {e.Value}")) + ")" : string.Empty)}, " +
        $"p50 {Percentiles.NearestRank(Milliseconds, 50):F1} ms, p99 {Percentiles.NearestRank(Milliseconds, 99):F1} ms, max {(Milliseconds.Count > 0 ? Milliseconds.Max() : 0):F1} ms");
}

/// <summary>What a soak of the whole loop saw.</summary>
/// <param name="Samples">Every service's memory, threads and descriptors at each sampling.</param>
/// <param name="Plans">The plans the monitor submitted, by status at the end.</param>
/// <param name="ErrorLogLines">Error and critical lines in the services' logs.</param>
/// <param name="Stopped">Services that were no longer running at the end.</param>
/// <param name="NotCompleted">Each plan that did not end COMPLETED: its id, status and what it said.</param>
public sealed record SoakResult(TimeSpan Duration, IReadOnlyList<ProcessSample> Samples, IReadOnlyDictionary<PlanStatus, int> Plans, int ErrorLogLines, IReadOnlyList<string> Stopped, IReadOnlyList<string>? NotCompleted = null)
{
    /// <summary>Memory may grow by at most this share after the warm-up (caches fill, the GC settles), plus 16 MB.</summary>
    public const double MaxRssGrowth = 0.25;

    /// <summary>Threads may grow by at most this many after the warm-up (the thread pool adapts to load).</summary>
    public const int MaxThreadGrowth = 8;

    public int PlansTotal => Plans.Values.Sum();

    /// <summary>Per service: the first sample after a quarter of the run (the warm-up) and the last.</summary>
    public IReadOnlyDictionary<string, (ProcessSample Warm, ProcessSample End)> Drift =>
        Samples.GroupBy(s => s.Service).ToDictionary(
            g => g.Key,
            g =>
            {
                var ordered = g.OrderBy(s => s.Seconds).ToArray();
                var warm = ordered.FirstOrDefault(s => s.Seconds >= Duration.TotalSeconds / 4) ?? ordered[0];
                return (warm, ordered[^1]);
            });

    /// <summary>Memory and thread counts stayed within the bounds after the warm-up, for every service.</summary>
    public bool Stable => Drift.Values.All(d => d.End.RssMb <= (d.Warm.RssMb * (1 + MaxRssGrowth)) + 16 && d.End.Threads <= d.Warm.Threads + MaxThreadGrowth);

    /// <summary>Resident memory growth over the second half of the run, MB per minute (least squares).</summary>
    public double RssSlopeMbPerMinute(string service)
    {
        var half = Samples.Where(s => s.Service == service && s.Seconds >= Duration.TotalSeconds / 2).ToArray();
        if (half.Length < 2)
        {
            return 0;
        }

        var meanT = half.Average(s => s.Seconds);
        var meanR = half.Average(s => s.RssMb);
        var covariance = half.Sum(s => (s.Seconds - meanT) * (s.RssMb - meanR));
        var variance = half.Sum(s => (s.Seconds - meanT) * (s.Seconds - meanT));
        return variance == 0 ? 0 : covariance / variance * 60;
    }
}

/// <summary>
/// `rmesh load` and `rmesh soak`: bounded loads on a mesh of their own (free loopback ports, stopped at the end).
/// <c>load</c> drives PreviewRebalance (planning, which calls pricing and risk) and AssessPortfolio (risk) with a number
/// of concurrent callers for a number of seconds each and records throughput, errors, p50/p99 and each service's memory
/// and threads before and after. <c>soak</c> lets the replayed market drive the whole loop — the monitor triggers
/// rebalances of several automatic portfolios, execution fills them, fills flow back — for some minutes, sampling every
/// service's memory, threads and descriptors, and says whether they stayed stable.
/// </summary>
public static class LoadCommands
{
    public static readonly string[] Rpcs = ["PreviewRebalance", "AssessPortfolio"];
    private static readonly string[] Indices = ["DAX", "SMI", "CAC", "FTSE"];

    public static IEnumerable<Command> Create(Option<string?> repoOption)
    {
        var configurationOption = new Option<string>("--configuration") { Description = "Build configuration of the services.", DefaultValueFactory = _ => "Release" };
        var secondsOption = new Option<int>("--seconds") { Description = "Measured seconds per RPC, after a 3 s warm-up (1 to 600).", DefaultValueFactory = _ => 60 };
        var concurrencyOption = new Option<int>("--concurrency") { Description = "Concurrent callers (1 to 64).", DefaultValueFactory = _ => 8 };
        var rpcOption = new Option<string[]>("--rpc") { Description = "RPCs to load: PreviewRebalance, AssessPortfolio (default both).", AllowMultipleArgumentsPerToken = true };
        var load = new Command("load", "Bounded loopback load on PreviewRebalance and AssessPortfolio (starts and stops its own mesh).")
        {
            secondsOption, concurrencyOption, rpcOption, configurationOption,
        };
        load.SetAction(async (parse, ct) =>
        {
            var repo = Repo.Root(parse.GetValue(repoOption));
            var configuration = parse.GetValue(configurationOption)!;
            if (!await OwnMesh.BuildAsync(repo, configuration, Console.Out, ct))
            {
                return 1;
            }

            var rpcs = parse.GetValue(rpcOption) is { Length: > 0 } chosen ? chosen : Rpcs;
            var results = await LoadAsync(repo, rpcs, parse.GetValue(secondsOption), parse.GetValue(concurrencyOption), configuration, Console.Out, ct);
            foreach (var result in results)
            {
                Console.WriteLine(result.Describe());
                foreach (var after in result.After)
                {
                    var before = result.Before.First(b => b.Service == after.Service);
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {after.Service,-10} RSS {before.RssMb:F0} → {after.RssMb:F0} MB, threads {before.Threads} → {after.Threads}"));
                }
            }

            return results.All(r => r.ErrorCount == 0) ? 0 : 1;
        });

        var minutesOption = new Option<double>("--minutes") { Description = "How long the loop runs (0.5 to 60).", DefaultValueFactory = _ => 5 };
        var portfoliosOption = new Option<int>("--portfolios") { Description = "Automatic portfolios the monitor rebalances (1 to 20).", DefaultValueFactory = _ => 4 };
        var soak = new Command("soak", "The market drives the whole loop for some minutes; memory and thread counts sampled (starts and stops its own mesh).")
        {
            minutesOption, portfoliosOption, configurationOption,
        };
        soak.SetAction(async (parse, ct) =>
        {
            var repo = Repo.Root(parse.GetValue(repoOption));
            var configuration = parse.GetValue(configurationOption)!;
            if (!await OwnMesh.BuildAsync(repo, configuration, Console.Out, ct))
            {
                return 1;
            }

            var duration = TimeSpan.FromMinutes(Math.Clamp(parse.GetValue(minutesOption), 0.5, 60));
            var result = await SoakAsync(repo, duration, parse.GetValue(portfoliosOption), configuration, Console.Out, ct);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{duration.TotalMinutes:F1} min: {result.PlansTotal} automatic plans ({string.Join(", ", result.Plans.Select(p => $"{p.Key} {p.Value}"))}), {result.ErrorLogLines} error log lines, stopped: {(result.Stopped.Count == 0 ? "none" : string.Join(", ", result.Stopped))}"));
            foreach (var (service, (warm, end)) in result.Drift)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {service,-10} RSS {warm.RssMb:F0} → {end.RssMb:F0} MB (second half {result.RssSlopeMbPerMinute(service):+0.0;-0.0} MB/min), threads {warm.Threads} → {end.Threads}, descriptors {warm.OpenFiles} → {end.OpenFiles}"));
            }

            foreach (var plan in result.NotCompleted ?? [])
            {
                Console.WriteLine("  not completed: " + plan);
            }

            Console.WriteLine(result.Stable ? "stable" : $"NOT stable (more than {SoakResult.MaxRssGrowth:P0} + 16 MB memory or {SoakResult.MaxThreadGrowth} threads of growth after the warm-up)");
            var failed = result.Plans.GetValueOrDefault(PlanStatus.Failed);
            return result.Stable && result.ErrorLogLines == 0 && result.Stopped.Count == 0 && failed == 0 ? 0 : 1;
        });
        return [load, soak];
    }

    /// <summary>A mesh of its own, a stored portfolio with a policy, then each RPC under load in turn.</summary>
    public static async Task<IReadOnlyList<RpcLoadResult>> LoadAsync(string repo, IReadOnlyList<string> rpcs, int seconds, int concurrency, string configuration, TextWriter log, CancellationToken cancellationToken)
    {
        var unknown = rpcs.Except(Rpcs).ToArray();
        if (unknown.Length > 0)
        {
            throw new ArgumentException($"Unknown RPC {string.Join(", ", unknown)}; choose from {string.Join(", ", Rpcs)}.");
        }

        seconds = Math.Clamp(seconds, 1, 600);
        concurrency = Math.Clamp(concurrency, 1, 64);
        using var own = await OwnMesh.StartAsync(repo, new Dictionary<string, string>(), configuration, "rmesh-load-", log, cancellationToken);
        var mesh = own.State;
        using var adminChannel = mesh.PlanningChannel();
        using var viewerChannel = mesh.PlanningChannel(MeshAuth.Viewer);
        using var riskChannel = mesh.ServiceChannel("risk");
        var admin = new PlanningService.PlanningServiceClient(adminChannel.WithDefaultDeadline());
        var viewer = new PlanningService.PlanningServiceClient(viewerChannel.WithDefaultDeadline());
        var risk = new RiskService.RiskServiceClient(riskChannel.WithDefaultDeadline());

        var portfolio = new Portfolio { PortfolioId = "load", BaseCurrency = "EUR", Cash = 10_000m };
        portfolio.Positions.AddRange(Indices.Zip([100m, 80m, 120m, 60m], (id, q) => new Position { InstrumentId = id, Quantity = q }));
        await admin.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 }, cancellationToken: cancellationToken);
        var policy = new Policy { PortfolioId = "load", AbsoluteBand = 0.02, MinTradeNotional = 100m };
        policy.Targets.AddRange(Indices.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.24 }));
        await admin.SetPolicyAsync(new SetPolicyRequest { Policy = policy }, cancellationToken: cancellationToken);

        var preview = new PreviewRebalanceRequest { PortfolioId = "load" };
        var assess = new AssessPortfolioRequest
        {
            Holdings = { portfolio.Positions.Select(p => new Holding { InstrumentId = p.InstrumentId, Quantity = p.Quantity }) },
            Cash = portfolio.Cash,
            Settings = new RiskSettings { ConfidenceLevels = { 0.95, 0.99 }, Methods = { VarMethod.Historical, VarMethod.Parametric, VarMethod.CornishFisher } },
        };

        // The feed's first ticks price the market within seconds of the start.
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                await viewer.PreviewRebalanceAsync(preview, cancellationToken: cancellationToken);
                break;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition && attempt < 100)
            {
                await Task.Delay(200, cancellationToken);
            }
        }

        var results = new List<RpcLoadResult>();
        foreach (var rpc in rpcs)
        {
            log.WriteLine($"{rpc}: {seconds} s at concurrency {concurrency} (after a 3 s warm-up) …");
            Func<CancellationToken, Task> call = rpc switch
            {
                "PreviewRebalance" => ct => viewer.PreviewRebalanceAsync(preview, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct).ResponseAsync,
                _ => ct => risk.AssessPortfolioAsync(assess, deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct).ResponseAsync,
            };
            results.Add(await MeasureAsync(mesh, rpc, call, seconds, concurrency, cancellationToken));
        }

        return results;
    }

    private static async Task<RpcLoadResult> MeasureAsync(MeshState mesh, string rpc, Func<CancellationToken, Task> call, int seconds, int concurrency, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var warmupEnd = TimeSpan.FromSeconds(3);
        var end = warmupEnd + TimeSpan.FromSeconds(seconds);
        IReadOnlyList<ProcessSample> before = [];
        var latencies = new List<double>[concurrency];
        var errors = new System.Collections.Concurrent.ConcurrentDictionary<StatusCode, int>();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(w => Task.Run(
            async () =>
            {
                var mine = latencies[w] = new List<double>(100_000);
                while (clock.Elapsed < end)
                {
                    var started = Stopwatch.GetTimestamp();
                    var measured = clock.Elapsed >= warmupEnd;
                    if (w == 0 && measured && before.Count == 0)
                    {
                        before = ProcessSample.ReadAll(mesh, clock.Elapsed.TotalSeconds);
                    }

                    try
                    {
                        await call(cancellationToken);
                        if (measured)
                        {
                            mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                        }
                    }
                    catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
                    {
                        if (measured)
                        {
                            errors.AddOrUpdate(ex.StatusCode, 1, (_, n) => n + 1);
                        }
                    }
                }
            },
            cancellationToken)));
        var after = ProcessSample.ReadAll(mesh, clock.Elapsed.TotalSeconds);
        return new RpcLoadResult(rpc, seconds, concurrency, latencies.SelectMany(l => l).ToArray(), new Dictionary<StatusCode, int>(errors), before.Count > 0 ? before : after, after);
    }

    /// <summary>
    /// A mesh of its own whose replayed market moves ten times faster than the demo's, <paramref name="portfolios"/>
    /// cash portfolios with tight bands in automatic mode (the monitor submits their rebalances by itself), then
    /// sampling every few seconds until <paramref name="duration"/> has passed.
    /// </summary>
    public static async Task<SoakResult> SoakAsync(string repo, TimeSpan duration, int portfolios, string configuration, TextWriter log, CancellationToken cancellationToken)
    {
        portfolios = Math.Clamp(portfolios, 1, 20);
        var env = new Dictionary<string, string> { ["Pricing__Csv__RowsPerSecond"] = "20" };
        using var own = await OwnMesh.StartAsync(repo, env, configuration, "rmesh-soak-", log, cancellationToken);
        var mesh = own.State;
        using var channel = mesh.PlanningChannel();
        var planning = new PlanningService.PlanningServiceClient(channel.WithDefaultDeadline());
        var ids = Enumerable.Range(1, portfolios).Select(i => $"soak-{i}").ToArray();
        double[] weights = [0.40, 0.30, 0.20, 0.08];
        for (var i = 0; i < ids.Length; i++)
        {
            await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = new Portfolio { PortfolioId = ids[i], BaseCurrency = "EUR", Cash = 1_000_000m }, ExpectedVersion = -1 }, cancellationToken: cancellationToken);
            var policy = new Policy { PortfolioId = ids[i], AbsoluteBand = 0.01, MinTradeNotional = 500m, ExecutionMode = ExecutionMode.Auto };
            policy.Targets.AddRange(Indices.Select((id, k) => new TargetWeight { InstrumentId = id, Weight = weights[(k + i) % weights.Length] }));
            await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy }, cancellationToken: cancellationToken);
        }

        var interval = TimeSpan.FromSeconds(Math.Clamp(duration.TotalSeconds / 30, 2, 15));
        log.WriteLine($"soak: {portfolios} automatic portfolios for {duration.TotalMinutes:F1} min, sampling every {interval.TotalSeconds:F0} s …");
        var samples = new List<ProcessSample>();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            samples.AddRange(ProcessSample.ReadAll(mesh, clock.Elapsed.TotalSeconds));
            var remaining = duration - clock.Elapsed;
            if (remaining > TimeSpan.Zero)
            {
                await Task.Delay(interval < remaining ? interval : remaining, cancellationToken);
            }
        }

        samples.AddRange(ProcessSample.ReadAll(mesh, clock.Elapsed.TotalSeconds));
        var plans = new Dictionary<PlanStatus, int>();
        var notCompleted = new List<string>();
        foreach (var id in ids)
        {
            var page = string.Empty;
            do
            {
                var response = await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = id, PageSize = 100, PageToken = page }, cancellationToken: cancellationToken);
                foreach (var plan in response.Plans)
                {
                    plans[plan.Status] = plans.GetValueOrDefault(plan.Status) + 1;
                    if (plan.Status != PlanStatus.Completed)
                    {
                        var legs = string.Join("; ", plan.Legs.Where(l => l.Status != LegStatus.Filled).Select(l => $"{l.LegId} {l.InstrumentId} {l.Status} filled {l.FilledQuantity.Value} of {l.Quantity.Value}"));
                        notCompleted.Add($"{plan.PlanId} {plan.Status} {plan.NoActionReason}: {plan.StatusMessage}{(legs.Length > 0 ? " — " + legs : string.Empty)}");
                    }
                }

                page = response.NextPageToken;
            }
            while (page.Length > 0);
        }

        var errorLines = mesh.Services.Sum(s =>
            ServiceLogs.ReadAll(s.LogFile).Count(l => l.Contains("\"LogLevel\":\"Error\"", StringComparison.Ordinal) || l.Contains("\"LogLevel\":\"Critical\"", StringComparison.Ordinal)));
        var stopped = mesh.Services.Where(s => !MeshLauncher.IsAlive(s.Pid)).Select(s => s.Name).ToArray();
        return new SoakResult(duration, samples, plans, errorLines, stopped, notCompleted);
    }
}
