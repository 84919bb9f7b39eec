using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Cli;

/// <summary>What a monitor benchmark measured.</summary>
/// <param name="TickToDecision">Per breaching tick: from the quotes' ingestion to the last expected breach alert, in ms.</param>
/// <param name="CpuMsPerEvent">Planning CPU (all replicas, user + system) over the ticks, per market event.</param>
/// <param name="MemoryMb">Resident memory of each planning replica after the ticks.</param>
/// <param name="Missing">Expected breach alerts that never came (within the timeout).</param>
public sealed record MonitorBenchmarkResult(int Portfolios, int Replicas, IReadOnlyList<double> TickToDecision, double CpuMsPerEvent, IReadOnlyList<double> MemoryMb, int AlertsPerTick, int Missing, double SetUpSeconds)
{
    public double Percentile(double p) => Percentiles.NearestRank(TickToDecision, p);
}

/// <summary>
/// `rmesh bench-monitor`: its own mesh (Release, loopback, no quote feed; pricing publishes market.quotes every 5 ms),
/// <c>--portfolios</c> portfolios of 10 positions over 50 instruments (each position 9 % of the portfolio, 10 % cash,
/// targets at those weights, absolute bands between 1 % and 3 %: a book at rest), watched by <c>--replicas</c> planning
/// replicas. Each measured tick moves one instrument up 50 % on all three venues through IngestQuotes — every holder
/// breaches its band — and waits for every holder's breach alert on WatchAlerts (tick to decision); the next tick puts
/// it back (unmeasured) before another instrument moves. Reports tick to decision p50/p99, planning CPU per market
/// event and memory per replica. Loopback only, bounded in count and time.
/// </summary>
public static class MonitorBenchmark
{
    private const int InstrumentCount = 50;
    private const int PositionsPerPortfolio = 10;
    private static readonly string[] Venues = ["SIM-A", "SIM-B", "SIM-C"];

    public static Command Create(Option<string?> repoOption)
    {
        var portfoliosOption = new Option<int>("--portfolios") { Description = "Portfolios watched (10 to 200,000).", DefaultValueFactory = _ => 10_000 };
        var replicasOption = new Option<int>("--replicas") { Description = "Planning replicas (1 to 4).", DefaultValueFactory = _ => 1 };
        var ticksOption = new Option<int>("--ticks") { Description = "Measured ticks, each moving one instrument (1 to 200).", DefaultValueFactory = _ => 20 };
        var configurationOption = new Option<string>("--configuration") { Description = "Build configuration of the services.", DefaultValueFactory = _ => "Release" };
        var command = new Command("bench-monitor", "Tick to decision of the monitor over a book of portfolios (starts and stops its own mesh).")
        {
            portfoliosOption, replicasOption, ticksOption, configurationOption,
        };
        command.SetAction(async (parse, ct) =>
        {
            var repo = Repo.Root(parse.GetValue(repoOption));
            var configuration = parse.GetValue(configurationOption) ?? "Release";
            if (!await OwnMesh.BuildAsync(repo, configuration, Console.Out, ct))
            {
                return 1;
            }

            var result = await RunAsync(repo, Math.Clamp(parse.GetValue(portfoliosOption), 10, 200_000), Math.Clamp(parse.GetValue(replicasOption), 1, 4), Math.Clamp(parse.GetValue(ticksOption), 1, 200), configuration, Console.Out, ct);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Portfolios} portfolios, {result.Replicas} planning replica(s), {result.TickToDecision.Count} ticks of ~{result.AlertsPerTick} breaches each (set up in {result.SetUpSeconds:F1} s): tick to decision p50 {result.Percentile(50):F1} ms, p99 {result.Percentile(99):F1} ms; planning CPU {result.CpuMsPerEvent:F1} ms per market event; planning memory {string.Join(" / ", result.MemoryMb.Select(m => m.ToString("F0", CultureInfo.InvariantCulture)))} MB; alerts missing {result.Missing}"));
            return result.Missing == 0 ? 0 : 1;
        });
        return command;
    }

    public static async Task<MonitorBenchmarkResult> RunAsync(string repo, int portfolios, int replicas, int ticks, string configuration, TextWriter log, CancellationToken cancellationToken)
    {
        var instruments = Enumerable.Range(1, InstrumentCount).Select(i => $"MN{i:D2}").ToArray();
        var env = new Dictionary<string, string> { ["Pricing__Feed"] = "none", ["Pricing__PublishInterval"] = "00:00:00.005" };
        for (var i = 0; i < instruments.Length; i++)
        {
            env[$"Pricing__Instruments__{i}"] = instruments[i];
        }

        using var own = await OwnMesh.StartAsync(repo, env, configuration, "rmesh-bench-monitor-", log, cancellationToken);
        var state = own.State;
        for (var replica = 2; replica <= replicas; replica++)
        {
            state = await MeshLauncher.StartReplicaAsync(own.StateDir, "planning", $"planning-{replica}", cancellationToken);
            log.WriteLine($"planning-{replica} started");
        }

        using var pricingChannel = state.ServiceChannel("pricing");
        using var planningChannel = state.PlanningChannel();
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var planning = new PlanningService.PlanningServiceClient(planningChannel.WithDefaultDeadline());
        var prices = instruments.Select((_, i) => 100m + i).ToArray();
        await QuoteAsync(pricing, instruments, prices, cancellationToken);

        // The book: each portfolio holds 10 of the 50 instruments (a deterministic spread), 9 % each at today's prices.
        var setUp = Stopwatch.GetTimestamp();
        var holders = instruments.ToDictionary(i => i, _ => new ConcurrentBag<string>(), StringComparer.Ordinal);
        var random = new Random(17);
        var books = Enumerable.Range(0, portfolios).Select(k => (Id: $"mon-{k:D6}", Picks: Enumerable.Range(0, InstrumentCount).OrderBy(_ => random.Next()).Take(PositionsPerPortfolio).ToArray(), Band: 0.01 + (0.02 * (k % 5) / 4))).ToArray();
        await Parallel.ForEachAsync(books, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = cancellationToken }, async (book, ct) =>
        {
            var portfolio = new Portfolio { PortfolioId = book.Id, BaseCurrency = "EUR", Cash = 10_000m };
            var policy = new Policy { PortfolioId = book.Id, AbsoluteBand = book.Band, ExecutionMode = ExecutionMode.Manual };
            foreach (var i in book.Picks)
            {
                portfolio.Positions.Add(new Position { InstrumentId = instruments[i], Quantity = decimal.Round(9_000m / prices[i], 8) });
                policy.Targets.Add(new TargetWeight { InstrumentId = instruments[i], Weight = 0.09 });
                holders[instruments[i]].Add(book.Id);
            }

            await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 }, cancellationToken: ct);
            await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy }, cancellationToken: ct);
        });
        var setUpSeconds = Stopwatch.GetElapsedTime(setUp).TotalSeconds;
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{portfolios} portfolios set up in {setUpSeconds:F1} s"));

        // Breach alerts, as a client sees them.
        var alerts = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var call = planning.WatchAlerts(new WatchAlertsRequest(), deadline: DateTime.UtcNow.AddHours(2), cancellationToken: watching.Token);
        var reader = Task.Run(async () =>
        {
            try
            {
                await foreach (var alert in call.ResponseStream.ReadAllAsync(watching.Token))
                {
                    if (alert.Alert.Kind == AlertKind.Breach)
                    {
                        alerts[alert.Alert.PortfolioId] = Stopwatch.GetTimestamp();
                    }
                }
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled)
            {
                // stopped
            }
            catch (OperationCanceledException)
            {
                // stopped
            }
        }, CancellationToken.None);

        // One warm-up round trip of the whole path, then the measured ticks.
        var planningPids = state.Services.Where(s => s.Name.StartsWith("planning", StringComparison.Ordinal)).Select(s => s.Pid).ToArray();
        var latencies = new List<double>();
        var missing = 0;
        var events = 0;
        long cpuBefore = 0;
        for (var tick = -1; tick < ticks; tick++)
        {
            if (tick == 0)
            {
                cpuBefore = planningPids.Sum(CpuTicks);
            }

            var k = (tick + 1) * 7 % InstrumentCount;
            var expected = holders[instruments[k]].ToHashSet(StringComparer.Ordinal);
            alerts.Clear();
            var moved = (decimal[])prices.Clone();
            moved[k] = prices[k] * 1.5m;
            var started = Stopwatch.GetTimestamp();
            await QuoteAsync(pricing, [instruments[k]], [moved[k]], cancellationToken);
            events++;
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!expected.All(alerts.ContainsKey) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(2, cancellationToken);
            }

            var seen = expected.Where(alerts.ContainsKey).ToArray();
            if (tick >= 0)
            {
                missing += expected.Count - seen.Length;
                latencies.Add(seen.Length == 0 ? double.NaN : Stopwatch.GetElapsedTime(started, seen.Max(id => alerts[id])).TotalMilliseconds);
            }

            // Back to rest: the holders' evaluations clear their breach (no alert) before the next instrument moves.
            await QuoteAsync(pricing, [instruments[k]], [prices[k]], cancellationToken);
            events++;
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Max(200, 2 * (latencies.LastOrDefault() is var last && double.IsFinite(last) ? last : 0))), cancellationToken);
        }

        var cpuMs = (planningPids.Sum(CpuTicks) - cpuBefore) * 1000.0 / 100.0 / Math.Max(1, events - 2);
        var memory = planningPids.Select((pid, i) => ProcessSample.Read($"planning-{i + 1}", pid, 0)?.RssMb ?? double.NaN).ToArray();
        await watching.CancelAsync();
        await reader;
        var perTick = (int)Math.Round(holders.Values.Average(h => h.Count));
        return new MonitorBenchmarkResult(portfolios, replicas, latencies, cpuMs, memory, perTick, missing, setUpSeconds);
    }

    /// <summary>A process's user + system CPU so far, in clock ticks (1/100 s), from /proc; 0 when gone.</summary>
    private static long CpuTicks(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Quotes each instrument at its mid on the three venues at once (a move confirmed by every venue).</summary>
    private static async Task QuoteAsync(PricingService.PricingServiceClient pricing, IReadOnlyList<string> instruments, IReadOnlyList<decimal> mids, CancellationToken cancellationToken)
    {
        using var ingest = pricing.IngestQuotes(cancellationToken: cancellationToken);
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        for (var i = 0; i < instruments.Count; i++)
        {
            foreach (var venue in Venues)
            {
                await ingest.RequestStream.WriteAsync(new IngestQuotesRequest
                {
                    Quote = new Quote { Venue = venue, InstrumentId = instruments[i], Bid = mids[i] - 0.02m, Ask = mids[i] + 0.02m, BidSize = 100_000m, AskSize = 100_000m, Timestamp = now },
                }, cancellationToken);
            }
        }

        await ingest.RequestStream.CompleteAsync();
        await ingest.ResponseAsync;
    }
}
