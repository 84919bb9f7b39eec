using System.Diagnostics;
using System.Diagnostics.Metrics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client.Configuration;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.CircuitBreaker;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// How one mesh service's calls to another ride out a restart or a brief outage of the callee. Reads — calls with no
/// side effects, listed per service in <see cref="ReadsOf"/> — are retried by the gRPC client's own retry policy on
/// UNAVAILABLE (connection refused, a pod going away), with exponential, jittered backoff, never past the call's deadline
/// (inherited from the call being served, or the 10 s default). Writes are never retried by the channel: they are
/// exactly-once through their idempotency keys and event ids, and their callers decide. Around both, a circuit breaker
/// per callee (<see cref="MeshCircuitBreakers"/>) fails calls at once while the callee keeps failing, instead of letting
/// every caller wait out its retries.
/// </summary>
public static class MeshCallResilience
{
    /// <summary>Attempts of a read in all (the first and up to five retries).</summary>
    public const int ReadAttempts = 6;

    /// <summary>
    /// The first wait before a channel reconnects to a callee that went away. gRPC's default (1 s, growing ×1.6 toward
    /// <see cref="MaxReconnectBackoff"/>'s default of 120 s) leaves a channel waiting out its backoff for seconds after a
    /// restarted callee is back: a callee down for 6 s had its callers failing for 2 s more, and their circuit breaker
    /// opened (ResilienceMeshTests, once in CI).
    /// </summary>
    public static readonly TimeSpan InitialReconnectBackoff = TimeSpan.FromMilliseconds(200);

    /// <summary>The longest wait between a channel's reconnection attempts: a callee back is found within a second.</summary>
    public static readonly TimeSpan MaxReconnectBackoff = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The reads of each service a mesh service calls: answers computed from stored state, changing nothing. Named
    /// against the service's descriptor, so a renamed or removed method fails the host at start, not silently.
    /// </summary>
    public static IReadOnlyList<string> ReadsOf(Google.Protobuf.Reflection.ServiceDescriptor service)
    {
        string[] reads = service.FullName switch
        {
            var name when name == PricingService.Descriptor.FullName => ["GetQuotes", "PriceInstruments", "ListInstruments", "ComputeImpliedVolatilities", "GetVolSurface", "GetPriceHistory"],
            var name when name == RiskService.Descriptor.FullName => ["AssessPortfolio", "EstimateCovariance", "CompareRisk", "StressTest", "CompareRiskBatch"],
            var name when name == PlanningService.Descriptor.FullName => ["GetPortfolio", "GetPlan", "ListPlans", "GetModel", "ListModels", "PreviewRebalance"],
            _ => [],
        };
        foreach (var read in reads)
        {
            _ = service.FindMethodByName(read) ?? throw new InvalidOperationException($"{service.FullName} has no method {read}.");
        }

        return reads;
    }

    /// <summary>
    /// The channel's service config: each read retried on UNAVAILABLE up to <see cref="ReadAttempts"/> attempts, the
    /// n-th retry after a random delay within [0, min(200 ms · 2ⁿ⁻¹, 1 s)] — at most 3.4 s of waiting (1.7 s expected):
    /// long enough to ride out a service's restart (1.3–2 s here), short enough that a callee that stays down costs a
    /// caller a few seconds, not its whole deadline.
    /// </summary>
    public static ServiceConfig RetryReads(Google.Protobuf.Reflection.ServiceDescriptor service)
    {
        var reads = new MethodConfig
        {
            RetryPolicy = new RetryPolicy
            {
                MaxAttempts = ReadAttempts,
                InitialBackoff = TimeSpan.FromMilliseconds(200),
                MaxBackoff = TimeSpan.FromSeconds(1),
                BackoffMultiplier = 2,
                RetryableStatusCodes = { StatusCode.Unavailable },
            },
        };
        foreach (var read in ReadsOf(service))
        {
            reads.Names.Add(new MethodName { Service = service.FullName, Method = read });
        }

        return new ServiceConfig { MethodConfigs = { reads } };
    }
}

/// <summary>
/// A circuit breaker per callee, shared by every client of it in this process: when at least half of the calls to it
/// in 10 s (5 calls at least) end UNAVAILABLE — after their retries, a few seconds each — it opens for 5 s, failing
/// calls at once with UNAVAILABLE; then one trial call decides whether it closes. So a callee that stays down costs
/// its callers a trial's retries every few seconds, not every call's. Only UNAVAILABLE counts: an answer such as INVALID_ARGUMENT
/// or NOT_FOUND is the callee working. Transitions are logged and counted
/// (<c>rebalancemesh.client.circuit_transitions</c> by callee and state).
/// </summary>
public sealed class MeshCircuitBreakers(TimeProvider time, ILoggerFactory loggers)
{
    public static readonly TimeSpan BreakDuration = TimeSpan.FromSeconds(5);

    public static readonly TimeSpan SamplingDuration = TimeSpan.FromSeconds(10);

    public const int MinimumThroughput = 5;

    private static readonly Meter Meter = new(MeshTelemetry.Prefix + ".Client");
    private static readonly Counter<long> Transitions = Meter.CreateCounter<long>("rebalancemesh.client.circuit_transitions", description: "Circuit breaker transitions of mesh clients, by callee and state (open, half_open, closed).");

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, ResiliencePipeline> _pipelines = new(StringComparer.Ordinal);
    private readonly ILogger _logger = loggers.CreateLogger<MeshCircuitBreakers>();

    /// <summary>The interceptor that puts calls to <paramref name="callee"/> behind its breaker.</summary>
    public Interceptor For(string callee) => new CircuitBreakerInterceptor(callee, _pipelines.GetOrAdd(callee, Build));

    private ResiliencePipeline Build(string callee)
    {
        ValueTask Transition(string state, LogLevel level)
        {
            Transitions.Add(1, new KeyValuePair<string, object?>("callee", callee), new KeyValuePair<string, object?>("state", state));
            Activity.Current?.AddEvent(new ActivityEvent($"circuit to {callee} {state}"));
            _logger.Log(level, "Circuit to {Callee} is {State}", callee, state);
            return ValueTask.CompletedTask;
        }

        return new ResiliencePipelineBuilder { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions
            {
                FailureRatio = 0.5,
                MinimumThroughput = MinimumThroughput,
                SamplingDuration = SamplingDuration,
                BreakDuration = BreakDuration,
                ShouldHandle = new PredicateBuilder().Handle<RpcException>(ex => ex.StatusCode == StatusCode.Unavailable),
                OnOpened = _ => Transition("open", LogLevel.Warning),
                OnHalfOpened = _ => Transition("half_open", LogLevel.Information),
                OnClosed = _ => Transition("closed", LogLevel.Information),
            })
            .Build();
    }

    /// <summary>Unary calls go through the breaker; streams (long-lived by nature) pass through.</summary>
    private sealed class CircuitBreakerInterceptor(string callee, ResiliencePipeline pipeline) : Interceptor
    {
        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
            TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            AsyncUnaryCall<TResponse>? inner = null;
            var response = CallAsync();
            return new AsyncUnaryCall<TResponse>(
                response,
                HeadersAsync(),
                () => inner?.GetStatus() ?? Open().Status,
                () => inner?.GetTrailers() ?? [],
                () => inner?.Dispose());

            async Task<TResponse> CallAsync()
            {
                try
                {
                    return await pipeline.ExecuteAsync(
                        async _ =>
                        {
                            inner = continuation(request, context);
                            return await inner.ResponseAsync.ConfigureAwait(false);
                        },
                        context.Options.CancellationToken).ConfigureAwait(false);
                }
                catch (BrokenCircuitException)
                {
                    throw Open();
                }
            }

            // The callee's headers once the call was made; a call the open circuit refused has none (it fails as the
            // response does).
            async Task<Metadata> HeadersAsync()
            {
                try
                {
                    await response.ConfigureAwait(false);
                }
                catch (RpcException) when (inner is not null)
                {
                }

                return await inner!.ResponseHeadersAsync.ConfigureAwait(false);
            }
        }

        private RpcException Open() =>
            new(new Status(StatusCode.Unavailable, $"{callee} is failing: its circuit is open for {BreakDuration.TotalSeconds:0} s"));
    }
}
