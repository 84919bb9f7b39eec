using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// Execution replicas as in-process hosts on one real Redis, each on its own virtual clock, with the simulated venues
/// and no venue latency; and the DAX market they trade on (SIM-A 99.9/100.1, SIM-B 99.8/100.2, 1,000 a side).
/// </summary>
internal static class ExecutionReplicas
{
    /// <summary>Empties Redis and quotes DAX on two venues, fresh now.</summary>
    public static async Task ResetWithDaxQuotesAsync(RedisServer redis)
    {
        await redis.FlushAsync();
        var market = new MarketStateStore(redis.Connection!, Microsoft.Extensions.Options.Options.Create(new MarketStateOptions()), TimeProvider.System);
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await market.WriteQuotesAsync(
        [
            new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = 99.9m, Ask = 100.1m, BidSize = 1_000m, AskSize = 1_000m, Timestamp = now },
            new Quote { Venue = "SIM-B", InstrumentId = "DAX", Bid = 99.8m, Ask = 100.2m, BidSize = 1_000m, AskSize = 1_000m, Timestamp = now },
        ]);
    }

    /// <summary>A replica named <paramref name="name"/> on <paramref name="clock"/> (the test's quotes stay fresh however far it moves).</summary>
    public static GrpcTestServer<Program> Start(RedisServer redis, string name, FakeTimeProvider clock, IReadOnlyDictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null)
    {
        var all = new Dictionary<string, string?>
        {
            ["Execution:ReplicaId"] = name,
            ["MarketState:VenueStaleAfter"] = "1.00:00:00",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            all[key] = value;
        }

        return new GrpcTestServer<Program>(redis, SimulatedExecution.Settings(all), s =>
        {
            s.AddSingleton<TimeProvider>(clock);
            s.PostConfigure<ExecutionOptions>(o => o.Venues = o.Venues.Select(v => v with { LatencyMs = 0 }).ToList());
            services?.Invoke(s);
        });
    }

    /// <summary>
    /// Waits for a plan to end, moving <paramref name="advance"/> by <paramref name="step"/> (default 1 s) between looks
    /// (its waits and the replicas' ticks are on them); gives up after 400 looks.
    /// </summary>
    public static async Task<PlanExecution> WaitForEndAsync(ExecutionStore store, string planId, IReadOnlyList<FakeTimeProvider>? advance = null, TimeSpan? step = null)
    {
        for (var i = 0; i < 400; i++)
        {
            if (await store.GetExecutionAsync(planId) is { } execution && PlanExecutor.IsFinal(execution.Status))
            {
                return execution;
            }

            foreach (var clock in advance ?? [])
            {
                clock.Advance(step ?? TimeSpan.FromSeconds(1));
            }

            await Task.Delay(25);
        }

        throw new TimeoutException($"Plan {planId} did not end.");
    }
}
