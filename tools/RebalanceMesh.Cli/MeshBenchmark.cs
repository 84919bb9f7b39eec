using RebalanceMesh.ServiceDefaults;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Net.Client;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;

namespace RebalanceMesh.Cli;

/// <summary>Submit-to-last-fill latencies of plans through the whole mesh, in milliseconds.</summary>
public sealed record MeshBenchmarkResult(int Legs, IReadOnlyList<double> Milliseconds)
{
    public double Percentile(double p) => Percentiles.NearestRank(Milliseconds, p);
}

/// <summary>
/// `rmesh bench-mesh`: starts its own mesh on free loopback ports (a quote-driven market of <c>--legs</c> instruments
/// fed through pricing's IngestQuotes on three venues), then, <c>--plans</c> times, resets a cash portfolio and submits
/// a rebalance into equal weights — one buy leg per instrument — and measures from the submit call to the last fill
/// execution records. Prints p50/p99/max; stops the mesh. Bounded in count and time, loopback only.
/// </summary>
public static class MeshBenchmark
{
    public static Command Create(Option<string?> repoOption, Option<bool> jsonOption)
    {
        var plansOption = new Option<int>("--plans") { Description = "Plans to submit (1 to 500).", DefaultValueFactory = _ => 30 };
        var legsOption = new Option<int>("--legs") { Description = "Legs per plan, one instrument each (1 to 50).", DefaultValueFactory = _ => 20 };
        var configurationOption = new Option<string>("--configuration") { Description = "Build configuration of the services.", DefaultValueFactory = _ => "Release" };
        var portfoliosOption = new Option<int>("--portfolios") { Description = "Portfolios submitting together (1 to 1,000): each submits one plan, all at once, instead of --plans one after another.", DefaultValueFactory = _ => 1 };
        var eventConcurrencyOption = new Option<int>("--event-concurrency") { Description = "EventBus:Concurrency of the services (Dapr's pubsub concurrency; 1 delivers one event at a time).", DefaultValueFactory = _ => 10 };
        var executionReplicasOption = new Option<int>("--execution-replicas") { Description = "Execution replicas sharing the plans (1 to 4), with --portfolios.", DefaultValueFactory = _ => 1 };
        var command = new Command("bench-mesh", "Submit-to-last-fill latency of N-leg plans through the whole local mesh (starts and stops its own mesh).")
        {
            plansOption, legsOption, configurationOption, portfoliosOption, eventConcurrencyOption, executionReplicasOption,
        };
        command.SetAction(async (parse, ct) =>
        {
            var plans = Math.Clamp(parse.GetValue(plansOption), 1, 500);
            var legs = Math.Clamp(parse.GetValue(legsOption), 1, 50);
            var repo = Repo.Root(parse.GetValue(repoOption));
            var configuration = parse.GetValue(configurationOption) ?? "Release";
            if (!await OwnMesh.BuildAsync(repo, configuration, Console.Out, ct))
            {
                return 1;
            }

            var portfolios = Math.Clamp(parse.GetValue(portfoliosOption), 1, 1_000);
            var eventConcurrency = Math.Clamp(parse.GetValue(eventConcurrencyOption), 1, 1_000);
            if (portfolios > 1)
            {
                var replicas = Math.Clamp(parse.GetValue(executionReplicasOption), 1, 4);
                var together = await RunTogetherAsync(repo, portfolios, legs, eventConcurrency, configuration, Console.Out, ct, replicas);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{portfolios} plans of {legs} legs submitted together (event concurrency {eventConcurrency}, {replicas} execution replica(s)): all done in {together.Seconds:F2} s ({portfolios / together.Seconds:F1} plans/s); submit to last fill p50 {together.Plans.Percentile(50):F1} ms, p99 {together.Plans.Percentile(99):F1} ms; orders lost {together.Lost}, duplicated {together.Duplicated}"));
                return together.Lost == 0 && together.Duplicated == 0 ? 0 : 1;
            }

            var result = await RunAsync(repo, plans, legs, configuration, Console.Out, ct, eventConcurrency);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Milliseconds.Count} plans of {result.Legs} legs, submit to last fill: p50 {result.Percentile(50):F1} ms, p99 {result.Percentile(99):F1} ms, max {result.Milliseconds.Max():F1} ms"));
            return 0;
        });
        return command;
    }

    /// <summary>The clients a benchmark calls its own mesh with (the channels are disposed with it).</summary>
    private sealed class MeshClients(MeshState mesh) : IDisposable
    {
        private readonly GrpcChannel _pricing = mesh.ServiceChannel("pricing");
        private readonly GrpcChannel _planning = mesh.PlanningChannel();
        private readonly GrpcChannel _execution = mesh.ServiceChannel("execution");

        public PricingService.PricingServiceClient Pricing => new(_pricing.WithDefaultDeadline());

        public PlanningService.PlanningServiceClient Planning => new(_planning.WithDefaultDeadline());

        public ExecutionService.ExecutionServiceClient Execution => new(_execution.WithDefaultDeadline());

        public void Dispose()
        {
            _pricing.Dispose();
            _planning.Dispose();
            _execution.Dispose();
        }
    }

    /// <summary>The benchmark market's instruments and the services' environment: no feed, those instruments, the event concurrency.</summary>
    private static (string[] Instruments, Dictionary<string, string> Env) Market(int legs, int eventConcurrency)
    {
        var instruments = Enumerable.Range(1, legs).Select(i => $"BM{i:D2}").ToArray();
        var env = new Dictionary<string, string> { ["Pricing__Feed"] = "none", ["EventBus__Concurrency"] = eventConcurrency.ToString(CultureInfo.InvariantCulture) };
        for (var i = 0; i < instruments.Length; i++)
        {
            env[$"Pricing__Instruments__{i}"] = instruments[i];
        }

        return (instruments, env);
    }

    /// <summary>What many plans submitted together did: wall time for all, each plan's submit to last fill, and orders lost or duplicated.</summary>
    public sealed record TogetherResult(double Seconds, MeshBenchmarkResult Plans, int Lost, int Duplicated);

    /// <summary>
    /// <paramref name="portfolios"/> cash portfolios each submit a rebalance into equal weights at the same moment; waits
    /// until execution (<paramref name="executionReplicas"/> replicas sharing the plans) has completed every plan. Lost: a leg whose orders filled less than the leg; duplicated: more, or
    /// a client order id used twice.
    /// </summary>
    public static async Task<TogetherResult> RunTogetherAsync(string repo, int portfolios, int legs, int eventConcurrency, string configuration, TextWriter log, CancellationToken cancellationToken, int executionReplicas = 1)
    {
        var (instruments, env) = Market(legs, eventConcurrency);
        using var own = await OwnMesh.StartAsync(repo, env, configuration, "rmesh-bench-", log, cancellationToken);
        for (var replica = 2; replica <= executionReplicas; replica++)
        {
            await MeshLauncher.StartReplicaAsync(own.StateDir, "execution", $"execution-{replica}", cancellationToken);
            log.WriteLine($"execution-{replica} started");
        }

        using var clients = new MeshClients(own.State);
        var (pricing, planning, execution) = (clients.Pricing, clients.Planning, clients.Execution);
        await QuoteAsync(pricing, instruments, 0, cancellationToken);
        var ids = Enumerable.Range(1, portfolios).Select(i => $"bench-{i:D4}").ToArray();
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (id, ct) =>
        {
            await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = 1_000_000m }, ExpectedVersion = -1 }, cancellationToken: ct);
            var policy = new Policy { PortfolioId = id, AbsoluteBand = 0.01, MinTradeNotional = 10m };
            policy.Targets.AddRange(instruments.Select(i => new TargetWeight { InstrumentId = i, Weight = 0.9 / instruments.Length }));
            await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy }, cancellationToken: ct);
        });

        // Plans are built first (planning's work is not what is measured), then all submitted at once.
        var started = Stopwatch.GetTimestamp();
        var submitted = new (Plan Plan, DateTimeOffset At)[ids.Length];
        await Parallel.ForEachAsync(Enumerable.Range(0, ids.Length), new ParallelOptions { MaxDegreeOfParallelism = 64, CancellationToken = cancellationToken }, async (k, ct) =>
        {
            var at = DateTimeOffset.UtcNow;
            var plan = (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = ids[k], IdempotencyKey = $"together-{k}" }, cancellationToken: ct)).Plan;
            submitted[k] = (plan, at);
        });

        var latencies = new double[ids.Length];
        int lost = 0, duplicated = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, ids.Length), new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = cancellationToken }, async (k, ct) =>
        {
            var (plan, at) = submitted[k];
            var done = await WaitForExecutionAsync(execution, plan.PlanId, ct, TimeSpan.FromMinutes(10), TimeSpan.FromMilliseconds(250));
            latencies[k] = (done.Orders.Where(o => o.FilledQuantity.ToDecimal() > 0).Max(o => o.UpdatedAt.ToDateTimeOffset()) - at).TotalMilliseconds;
            foreach (var leg in plan.Legs)
            {
                var filled = done.Orders.Where(o => o.LegId == leg.LegId).Sum(o => o.FilledQuantity.ToDecimal());
                if (filled < leg.Quantity.ToDecimal())
                {
                    Interlocked.Increment(ref lost);
                }
                else if (filled > leg.Quantity.ToDecimal())
                {
                    Interlocked.Increment(ref duplicated);
                }
            }

            if (done.Orders.Select(o => o.ClientOrderId).Distinct().Count() != done.Orders.Count)
            {
                Interlocked.Increment(ref duplicated);
            }
        });

        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        return new TogetherResult(seconds, new MeshBenchmarkResult(legs, latencies), lost, duplicated);
    }

    public static async Task<MeshBenchmarkResult> RunAsync(string repo, int plans, int legs, string configuration, TextWriter log, CancellationToken cancellationToken, int eventConcurrency = 10)
    {
        var (instruments, env) = Market(legs, eventConcurrency);
        using var own = await OwnMesh.StartAsync(repo, env, configuration, "rmesh-bench-", log, cancellationToken);
        using var clients = new MeshClients(own.State);
        var (pricing, planning, execution) = (clients.Pricing, clients.Planning, clients.Execution);

        var policy = new Policy { PortfolioId = "bench", AbsoluteBand = 0.01, MinTradeNotional = 10m };
        policy.Targets.AddRange(instruments.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.9 / instruments.Length }));
        var latencies = new List<double>();
        for (var run = 0; run < plans; run++)
        {
            // Fresh quotes (the market moves a little), a cash-only portfolio, then the measured submit.
            await QuoteAsync(pricing, instruments, run, cancellationToken);
            await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest
            {
                Portfolio = new Portfolio { PortfolioId = "bench", BaseCurrency = "EUR", Cash = 10_000_000m },
                ExpectedVersion = -1,
            }, cancellationToken: cancellationToken);
            if (run == 0)
            {
                await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy }, cancellationToken: cancellationToken);
            }

            var submittedAt = DateTimeOffset.UtcNow;
            var started = Stopwatch.GetTimestamp();
            var plan = (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "bench", IdempotencyKey = $"bench-{run}-{Guid.NewGuid():N}" }, cancellationToken: cancellationToken)).Plan;
            if (plan.Legs.Count != legs)
            {
                throw new InvalidOperationException($"Plan {plan.PlanId} has {plan.Legs.Count} legs, not {legs} (missing {string.Join(", ", instruments.Except(plan.Legs.Select(l => l.InstrumentId)))}): {plan.StatusMessage}; {string.Join("; ", plan.Reasons.Where(r => r.Breached).Select(r => r.Message).Take(3))}");
            }

            var done = await WaitForExecutionAsync(execution, plan.PlanId, cancellationToken);
            var lastFill = done.Orders.Where(o => o.FilledQuantity.ToDecimal() > 0).Max(o => o.UpdatedAt.ToDateTimeOffset());
            var wall = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            latencies.Add(Math.Min((lastFill - submittedAt).TotalMilliseconds, wall));

            // Not measured: planning has applied every fill of this plan before the next run resets the portfolio (a
            // fill applied after the reset would land in the next run's portfolio and take a leg out of its plan).
            await WaitForPlanningAsync(planning, plan.PlanId, cancellationToken);
        }

        return new MeshBenchmarkResult(legs, latencies);
    }

    /// <summary>Polls until execution completed the plan (every 5 ms, or <paramref name="poll"/>: many waiters poll less so as not to load execution).</summary>
    private static async Task<GetPlanExecutionResponse> WaitForExecutionAsync(ExecutionService.ExecutionServiceClient execution, string planId, CancellationToken cancellationToken, TimeSpan? within = null, TimeSpan? poll = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var state = await execution.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = planId }, cancellationToken: cancellationToken);
                if (state.Status is ExecutionStatus.Completed)
                {
                    return state;
                }

                if (state.Status is ExecutionStatus.PartiallyFilled or ExecutionStatus.Failed or ExecutionStatus.Cancelled)
                {
                    throw new InvalidOperationException($"Plan {planId} ended {state.Status}.");
                }
            }
            catch (Grpc.Core.RpcException ex) when (ex.StatusCode == Grpc.Core.StatusCode.NotFound)
            {
                // not received yet
            }

            await Task.Delay(poll ?? TimeSpan.FromMilliseconds(5), cancellationToken);
        }

        throw new TimeoutException($"Plan {planId} did not complete in time.");
    }

    private static async Task WaitForPlanningAsync(PlanningService.PlanningServiceClient planning, string planId, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 600; attempt++)
        {
            var plan = (await planning.GetPlanAsync(new GetPlanRequest { PlanId = planId }, cancellationToken: cancellationToken)).Plan;
            if (plan.Status is PlanStatus.Completed or PlanStatus.PartiallyFilled or PlanStatus.Failed or PlanStatus.Cancelled)
            {
                return;
            }

            await Task.Delay(10, cancellationToken);
        }

        throw new TimeoutException($"Planning did not see plan {planId} end within 6 s of its last fill.");
    }

    /// <summary>One quote per instrument and venue, deep enough that every leg fills at once.</summary>
    private static async Task QuoteAsync(PricingService.PricingServiceClient pricing, IReadOnlyList<string> instruments, int run, CancellationToken cancellationToken)
    {
        using var ingest = pricing.IngestQuotes(cancellationToken: cancellationToken);
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        for (var i = 0; i < instruments.Count; i++)
        {
            var mid = 100m + i + (0.01m * (run % 7));
            foreach (var venue in new[] { "SIM-A", "SIM-B", "SIM-C" })
            {
                await ingest.RequestStream.WriteAsync(new IngestQuotesRequest
                {
                    Quote = new Quote { Venue = venue, InstrumentId = instruments[i], Bid = mid - 0.02m, Ask = mid + 0.02m, BidSize = 100_000m, AskSize = 100_000m, Timestamp = now },
                }, cancellationToken);
            }
        }

        await ingest.RequestStream.CompleteAsync();
        await ingest.ResponseAsync;
    }
}
