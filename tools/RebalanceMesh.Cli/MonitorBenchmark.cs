using System.Collections.Concurrent;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Cli;

/// <summary>What a monitor benchmark measured.</summary>
/// <param name="TickToDecision">Per breaching tick: from the quotes' ingestion to the last expected breach alert, in ms.</param>
/// <param name="CpuMsPerEvent">Planning CPU (all replicas, user + system) over the ticks, per market event.</param>
/// <param name="MemoryMb">Resident memory of each planning replica after the ticks.</param>
/// <param name="Missing">Expected breach alerts that never came (within the timeout).</param>
/// <param name="Split">Portfolios each planning replica evaluates (by the partitions it holds), in replica order.</param>
public sealed record MonitorBenchmarkResult(int Portfolios, int Replicas, IReadOnlyList<double> TickToDecision, double CpuMsPerEvent, IReadOnlyList<double> MemoryMb, int AlertsPerTick, int Missing, double SetUpSeconds, IReadOnlyList<int> Split, StormResult? Storm)
{
    public double Percentile(double p) => Percentiles.NearestRank(TickToDecision, p);
}

/// <summary>What the breach storm measured.</summary>
/// <param name="Planned">Storm portfolios with a plan stored within the time limit.</param>
/// <param name="Seconds">From the shock's ingestion to the last of those plans stored.</param>
/// <param name="Twice">Storm portfolios with more than one plan (each policy's cooldown is an hour: a second plan is a duplicate).</param>
public sealed record StormResult(int Portfolios, int Planned, double Seconds, int Twice)
{
    public double PlansPerSecond => Seconds > 0 ? Planned / Seconds : 0;
}

/// <summary>
/// `rmesh bench-monitor`: its own mesh (Release, loopback, no quote feed; pricing publishes market.quotes every 5 ms),
/// <c>--portfolios</c> portfolios of 10 positions over 50 instruments (each position 9 % of the portfolio, 10 % cash,
/// targets at those weights, absolute bands between 1 % and 3 %: a book at rest), watched by <c>--replicas</c> planning
/// replicas. Each measured tick moves one instrument up 50 % on all three venues through IngestQuotes — every holder
/// breaches its band — and waits for every holder's breach alert on WatchAlerts (tick to decision); the next tick puts
/// it back (unmeasured) before another instrument moves. Reports tick to decision p50/p99, planning CPU per market
/// event, memory per replica and how the book is split between replicas (from the partitions each holds). Then the
/// storm: <c>--storm</c> portfolios (all holding MN01, which the measured ticks leave alone) turn automatic with an
/// hour's cooldown, MN01 doubles, and every one of them breaches: the storm's figure is plans stored per second, and
/// none may get two. <c>--kill-during-storm</c> kills the last planning replica once the first plans are stored. Loopback only, bounded in count and time.
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
        var killOption = new Option<bool>("--kill-during-storm") { Description = "Kill the last planning replica (SIGKILL) once the storm's first plans are stored; the others take its portfolios." };
        var stormOption = new Option<int>("--storm") { Description = "Automatic portfolios breached at once after the ticks (0: no storm; at most --portfolios).", DefaultValueFactory = _ => 10_000 };
        var configurationOption = new Option<string>("--configuration") { Description = "Build configuration of the services.", DefaultValueFactory = _ => "Release" };
        var command = new Command("bench-monitor", "Tick to decision of the monitor over a book of portfolios (starts and stops its own mesh).")
        {
            portfoliosOption, replicasOption, ticksOption, stormOption, killOption, configurationOption,
        };
        command.SetAction(async (parse, ct) =>
        {
            var repo = Repo.Root(parse.GetValue(repoOption));
            var configuration = parse.GetValue(configurationOption) ?? "Release";
            if (!await OwnMesh.BuildAsync(repo, configuration, Console.Out, ct))
            {
                return 1;
            }

            var portfolios = Math.Clamp(parse.GetValue(portfoliosOption), 10, 200_000);
            var result = await RunAsync(repo, portfolios, Math.Clamp(parse.GetValue(replicasOption), 1, 4), Math.Clamp(parse.GetValue(ticksOption), 1, 200), Math.Clamp(parse.GetValue(stormOption), 0, portfolios), configuration, Console.Out, ct, parse.GetValue(killOption));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Portfolios} portfolios, {result.Replicas} planning replica(s), {result.TickToDecision.Count} ticks of ~{result.AlertsPerTick} breaches each (set up in {result.SetUpSeconds:F1} s): tick to decision p50 {result.Percentile(50):F1} ms, p99 {result.Percentile(99):F1} ms; planning CPU {result.CpuMsPerEvent:F1} ms per market event; planning memory {string.Join(" / ", result.MemoryMb.Select(m => m.ToString("F0", CultureInfo.InvariantCulture)))} MB; book split {string.Join(" / ", result.Split)}; alerts missing {result.Missing}"));
            if (result.Storm is { } storm)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"storm: {storm.Planned} of {storm.Portfolios} breached automatic portfolios planned in {storm.Seconds:F1} s = {storm.PlansPerSecond:F0} plans stored per second; portfolios with two plans {storm.Twice}"));
            }

            return result.Missing == 0 && result.Storm is null or { Twice: 0 } && result.Storm?.Planned == result.Storm?.Portfolios ? 0 : 1;
        });
        return command;
    }

    /// <param name="killDuringStorm">Kill the last planning replica once the storm's first plans are stored (with two or more replicas).</param>
    public static async Task<MonitorBenchmarkResult> RunAsync(string repo, int portfolios, int replicas, int ticks, int storm, string configuration, TextWriter log, CancellationToken cancellationToken, bool killDuringStorm = false)
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
        await ImportHistoryAsync(pricing, instruments, prices, cancellationToken);

        // The book: each portfolio holds 10 of the 50 instruments (a deterministic spread), 9 % each at today's prices.
        var setUp = Stopwatch.GetTimestamp();
        var holders = instruments.ToDictionary(i => i, _ => new ConcurrentBag<string>(), StringComparer.Ordinal);
        var random = new Random(17);
        // The first --storm portfolios hold MN01 (the storm's instrument), the others any 10.
        var books = Enumerable.Range(0, portfolios).Select(k => (Id: $"mon-{k:D6}", Picks: Picks(random, k < storm), Band: 0.01 + (0.02 * (k % 5) / 4))).ToArray();
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

        // Warm-up round trips of the whole path (the first passes run code the JIT has not optimised yet), then the
        // measured ticks.
        const int WarmUpTicks = 5;
        var planningPids = state.Services.Where(s => s.Name.StartsWith("planning", StringComparison.Ordinal)).Select(s => s.Pid).ToArray();
        var latencies = new List<double>();
        var missing = 0;
        var events = 0;
        long cpuBefore = 0;
        long cpuRefreshing = 0;
        var refreshed = Stopwatch.GetTimestamp();

        // Quotes older than a minute are stale, and a portfolio holding a stale instrument is not evaluated: every 20 s
        // (and after a long set-up) all instruments are quoted again at rest, and the pass over the whole book it causes
        // is let through before the next measured tick (its CPU is not counted).
        async Task FreshAsync(bool always)
        {
            if (!always && Stopwatch.GetElapsedTime(refreshed) < TimeSpan.FromSeconds(20))
            {
                return;
            }

            var cpu = planningPids.Sum(CpuTicks);
            await QuoteAsync(pricing, instruments, prices, cancellationToken);
            await Task.Delay(TimeSpan.FromMilliseconds(1_000 + (portfolios / 50)), cancellationToken);
            cpuRefreshing += planningPids.Sum(CpuTicks) - cpu;
            refreshed = Stopwatch.GetTimestamp();
        }

        await FreshAsync(always: true);
        for (var tick = -WarmUpTicks; tick < ticks; tick++)
        {
            if (tick == 0)
            {
                cpuBefore = planningPids.Sum(CpuTicks);
                cpuRefreshing = 0;
                events = 0;
            }

            await FreshAsync(always: false);

            var k = 1 + ((tick + WarmUpTicks) * 7 % (InstrumentCount - 1)); // never MN01, the storm's
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

        var cpuMs = (planningPids.Sum(CpuTicks) - cpuBefore - cpuRefreshing) * 1000.0 / 100.0 / Math.Max(1, events);
        var memory = planningPids.Select((pid, i) => ProcessSample.Read($"planning-{i + 1}", pid, 0)?.RssMb ?? double.NaN).ToArray();
        await watching.CancelAsync();
        await reader;
        var perTick = (int)Math.Round(holders.Values.Average(h => h.Count));

        // The split: which replica holds each portfolio's partition.
        using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(state.RedisConnection);
        var owners = (await redis.GetDatabase().HashGetAllAsync("pln:monitor:owners")).ToDictionary(e => (int)e.Name, e => e.Value.ToString());
        var replicaNames = Enumerable.Range(1, replicas).Select(r => $"planning-{r}").ToArray();
        var split = replicaNames.Select(name => books.Count(b => owners.GetValueOrDefault(MonitorPartitions.Of(b.Id, MonitorPartitions.Default)) == name)).ToArray();
        var victim = killDuringStorm && planningPids.Length > 1 ? planningPids[^1] : (int?)null;
        var stormResult = storm > 0 ? await StormAsync(planning, pricing, redis.GetDatabase(), books.Take(storm).ToArray(), instruments[0], prices[0], () => FreshAsync(always: true), victim, log, cancellationToken) : null;
        return new MonitorBenchmarkResult(portfolios, replicas, latencies, cpuMs, memory, perTick, missing, setUpSeconds, split, stormResult);
    }

    /// <summary>
    /// A year of daily closes for each instrument (a seeded random walk, 1 % daily volatility, ending yesterday at its
    /// price), so that risk measures each storm plan as it would a real one.
    /// </summary>
    internal static async Task ImportHistoryAsync(PricingService.PricingServiceClient pricing, IReadOnlyList<string> instruments, IReadOnlyList<decimal> prices, CancellationToken cancellationToken)
    {
        var random = new Random(23);
        var yesterday = DateTime.UtcNow.Date.AddDays(-1);
        for (var i = 0; i < instruments.Count; i++)
        {
            var request = new ImportPriceHistoryRequest { InstrumentId = instruments[i] };
            var close = (double)prices[i];
            for (var day = 0; day < 260; day++)
            {
                request.Closes.Add(new DailyClosePoint { Day = Timestamp.FromDateTime(yesterday.AddDays(-day)), Close = decimal.Round((decimal)close, 4) });
                var normal = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
                close *= Math.Exp(-0.01 * normal); // walking back in time
            }

            await pricing.ImportPriceHistoryAsync(request, cancellationToken: cancellationToken);
        }
    }

    /// <summary>Ten of the 50 instruments, MN01 (index 0) among them when <paramref name="storm"/>.</summary>
    private static int[] Picks(Random random, bool storm)
    {
        var picks = Enumerable.Range(storm ? 1 : 0, storm ? InstrumentCount - 1 : InstrumentCount).OrderBy(_ => random.Next()).Take(storm ? PositionsPerPortfolio - 1 : PositionsPerPortfolio);
        return (storm ? picks.Prepend(0) : picks).ToArray();
    }

    /// <summary>
    /// The storm: the portfolios turn automatic (an hour's cooldown), then their shared instrument doubles — each one's
    /// weight in it goes from 9 % to 16.5 %, past every band — and the plans are counted in Redis as they are stored.
    /// </summary>
    private static async Task<StormResult> StormAsync(PlanningService.PlanningServiceClient planning, PricingService.PricingServiceClient pricing, StackExchange.Redis.IDatabase redis,
        IReadOnlyList<(string Id, int[] Picks, double Band)> books, string instrument, decimal price, Func<Task> fresh, int? victim, TextWriter log, CancellationToken cancellationToken)
    {
        await Parallel.ForEachAsync(books, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = cancellationToken }, async (book, ct) =>
        {
            var current = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = book.Id, SkipValuation = true }, cancellationToken: ct)).Policy;
            current.ExecutionMode = ExecutionMode.Auto;
            current.CooldownSeconds = 3_600;
            await planning.SetPolicyAsync(new SetPolicyRequest { Policy = current }, cancellationToken: ct);
        });
        await fresh(); // every price fresh at the shock
        log.WriteLine($"storm: {books.Count} portfolios automatic; {instrument} doubles");
        var started = Stopwatch.GetTimestamp();
        await QuoteAsync(pricing, [instrument], [price * 2m], cancellationToken);
        var limit = TimeSpan.FromSeconds(Math.Max(120, books.Count / 20.0));
        var planned = 0;
        var last = TimeSpan.Zero;
        while (Stopwatch.GetElapsedTime(started) < limit)
        {
            var counts = await PlanCountsAsync(redis, books);
            var now = counts.Count(c => c > 0);
            if (now > planned)
            {
                planned = now;
                last = Stopwatch.GetElapsedTime(started);
            }

            if (victim is { } pid && planned > 0)
            {
                // Mid-storm: the replica dies with its requests in flight; the others take its partitions when its
                // membership ends, and its portfolios' requests with them.
                System.Diagnostics.Process.GetProcessById(pid).Kill();
                log.WriteLine($"storm: killed planning replica pid {pid} after {planned} plans");
                victim = null;
            }

            if (planned == books.Count)
            {
                break;
            }

            await Task.Delay(100, cancellationToken);
        }

        // A moment more for any duplicate to show.
        await Task.Delay(2_000, cancellationToken);
        var twice = (await PlanCountsAsync(redis, books)).Count(c => c > 1);
        return new StormResult(books.Count, planned, last.TotalSeconds, twice);
    }

    /// <summary>Plans stored per portfolio (planning's pln:plans:{portfolio} index), read in pipelined batches.</summary>
    private static async Task<long[]> PlanCountsAsync(StackExchange.Redis.IDatabase redis, IReadOnlyList<(string Id, int[] Picks, double Band)> books)
    {
        var counts = new long[books.Count];
        foreach (var chunk in Enumerable.Range(0, books.Count).Chunk(1_000))
        {
            var reads = chunk.Select(i => redis.SortedSetLengthAsync("pln:plans:" + books[i].Id)).ToArray();
            var lengths = await Task.WhenAll(reads);
            for (var j = 0; j < chunk.Length; j++)
            {
                counts[chunk[j]] = lengths[j];
            }
        }

        return counts;
    }

    /// <summary>A process's user + system CPU so far, in clock ticks (1/100 s), from /proc; 0 when gone.</summary>
    internal static long CpuTicks(int pid)
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
    internal static async Task QuoteAsync(PricingService.PricingServiceClient pricing, IReadOnlyList<string> instruments, IReadOnlyList<decimal> mids, CancellationToken cancellationToken)
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
