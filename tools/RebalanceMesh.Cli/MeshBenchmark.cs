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
        var command = new Command("bench-mesh", "Submit-to-last-fill latency of N-leg plans through the whole local mesh (starts and stops its own mesh).")
        {
            plansOption, legsOption, configurationOption,
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

            var result = await RunAsync(repo, plans, legs, configuration, Console.Out, ct);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{result.Milliseconds.Count} plans of {result.Legs} legs, submit to last fill: p50 {result.Percentile(50):F1} ms, p99 {result.Percentile(99):F1} ms, max {result.Milliseconds.Max():F1} ms"));
            return 0;
        });
        return command;
    }

    public static async Task<MeshBenchmarkResult> RunAsync(string repo, int plans, int legs, string configuration, TextWriter log, CancellationToken cancellationToken)
    {
        var instruments = Enumerable.Range(1, legs).Select(i => $"BM{i:D2}").ToArray();
        var env = new Dictionary<string, string> { ["Pricing__Feed"] = "none" };
        for (var i = 0; i < instruments.Length; i++)
        {
            env[$"Pricing__Instruments__{i}"] = instruments[i];
        }

        using var own = await OwnMesh.StartAsync(repo, env, configuration, "rmesh-bench-", log, cancellationToken);
        var mesh = own.State;
        using var pricingChannel = mesh.ServiceChannel("pricing");
        using var planningChannel = mesh.PlanningChannel();
        using var executionChannel = mesh.ServiceChannel("execution");
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var planning = new PlanningService.PlanningServiceClient(planningChannel.WithDefaultDeadline());
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());

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

    private static async Task<GetPlanExecutionResponse> WaitForExecutionAsync(ExecutionService.ExecutionServiceClient execution, string planId, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
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

            await Task.Delay(5, cancellationToken);
        }

        throw new TimeoutException($"Plan {planId} did not complete within 60 s.");
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
