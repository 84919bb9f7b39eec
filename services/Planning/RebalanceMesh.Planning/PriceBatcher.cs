using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading.Channels;
using RebalanceMesh.Contracts.Pricing.V1;

namespace RebalanceMesh.Planning;

/// <summary>
/// Values instruments through pricing, coalescing concurrent requests: while one PriceInstruments call is in flight,
/// the requests that arrive wait and go together in the next (no timer: a lone request goes at once, and a request never
/// waits for more than the call before it). A breach storm's plans, built many at a time, then cost one pricing call
/// per round instead of one each. The shared call runs in its own span, linked to the traces of the requests it serves.
/// </summary>
public sealed class PriceBatcher : IAsyncDisposable
{
    /// <summary>Most instruments one PriceInstruments call values (pricing's own limit is 10,000).</summary>
    public const int CallLimit = 2_000;

    private static readonly Meter Meter = new("RebalanceMesh.Planning.Pricing");
    private static readonly Histogram<long> RequestsPerCall = Meter.CreateHistogram<long>("rebalancemesh.planning.price_batch.requests", description: "Valuation requests one shared PriceInstruments call served.");

    private readonly PricingService.PricingServiceClient _pricing;
    private readonly Channel<Request> _queue = Channel.CreateUnbounded<Request>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public PriceBatcher(PricingService.PricingServiceClient pricing)
    {
        _pricing = pricing;
        using (ExecutionContext.SuppressFlow())
        {
            // The loop serves every caller: it must not carry the context (trace, gRPC call, deadline) of the first.
            _loop = Task.Run(LoopAsync);
        }
    }

    /// <summary>The valuation of each instrument asked for (one per instrument; an instrument pricing cannot value carries its error).</summary>
    public async Task<IReadOnlyList<InstrumentValuation>> PriceAsync(IReadOnlyCollection<string> instruments, CancellationToken cancellationToken)
    {
        if (instruments.Count == 0)
        {
            return [];
        }

        var request = new Request(instruments, Activity.Current?.Context ?? default);
        await _queue.Writer.WriteAsync(request, cancellationToken);
        return await request.Answer.Task.WaitAsync(cancellationToken);
    }

    private async Task LoopAsync()
    {
        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token))
            {
                // Everything that arrived while the last call was in flight, up to one call's worth of instruments.
                var batch = new List<Request>();
                var wanted = new HashSet<string>(StringComparer.Ordinal);
                while (reader.TryPeek(out var next) && (batch.Count == 0 || wanted.Count + next.Instruments.Count <= CallLimit) && reader.TryRead(out next))
                {
                    batch.Add(next);
                    wanted.UnionWith(next.Instruments);
                }

                await ServeAsync(batch, wanted);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }

        while (reader.TryRead(out var left))
        {
            left.Answer.TrySetCanceled();
        }
    }

    private async Task ServeAsync(List<Request> batch, HashSet<string> wanted)
    {
        var links = batch.Where(r => r.Caller != default).Take(64).Select(r => new ActivityLink(r.Caller)).ToArray();
        using var activity = PlanPipeline.ActivitySource.StartActivity("price batch", ActivityKind.Internal, parentContext: default, links: links);
        activity?.SetTag("planning.price_batch.requests", batch.Count);
        activity?.SetTag("planning.price_batch.instruments", wanted.Count);
        RequestsPerCall.Record(batch.Count);
        try
        {
            var valued = new Dictionary<string, InstrumentValuation>(wanted.Count, StringComparer.Ordinal);
            foreach (var chunk in wanted.Chunk(CallLimit))
            {
                var request = new PriceInstrumentsRequest();
                request.Items.AddRange(chunk.Select(id => new ValuationItem { InstrumentId = id }));
                var response = await _pricing.PriceInstrumentsAsync(request, cancellationToken: _stop.Token);
                foreach (var valuation in response.Valuations)
                {
                    valued[valuation.InstrumentId] = valuation;
                }
            }

            foreach (var request in batch)
            {
                request.Answer.TrySetResult(request.Instruments.Where(valued.ContainsKey).Select(id => valued[id]).ToArray());
            }
        }
        catch (Exception ex)
        {
            // The call failed for every request it served: each caller sees the failure (a gRPC status, mostly).
            foreach (var request in batch)
            {
                request.Answer.TrySetException(ex);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _queue.Writer.TryComplete();
        await _loop;
        _stop.Dispose();
    }

    private sealed record Request(IReadOnlyCollection<string> Instruments, ActivityContext Caller)
    {
        public TaskCompletionSource<IReadOnlyList<InstrumentValuation>> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
