using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading.Channels;

namespace RebalanceMesh.Planning;

/// <summary>
/// Coalesces concurrent requests into shared calls: while calls are in flight (at most <c>maxInFlight</c>), the requests
/// that arrive wait and go together in the next (no timer: a lone request goes at once, and a request never waits for
/// more than the calls before it). A breach storm's plans, built many at a time, then cost one call per round instead
/// of one each; a second call in flight keeps the callee busy while the first one's answers travel back. Each
/// shared call runs in its own span, in the trace of the first request it serves and linked to the traces of the
/// others; a failed call fails every request it carried.
/// </summary>
public sealed class CallCoalescer<TRequest, TAnswer> : IAsyncDisposable
{
    private readonly string _spanName;
    private readonly Func<IReadOnlyList<TRequest>, CancellationToken, Task<IReadOnlyList<TAnswer>>> _serve;
    private readonly Func<TRequest, int> _weight;
    private readonly int _maxRequests;
    private readonly int _maxWeight;
    private readonly Histogram<long> _requestsPerCall;
    private readonly SemaphoreSlim _slots;
    private readonly List<Task> _inFlight = []; // the loop's alone
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    /// <param name="spanName">Name of the span of each shared call.</param>
    /// <param name="serve">Makes one shared call: an answer per request, in the order given.</param>
    /// <param name="weight">A request's share of one call's <paramref name="maxWeight"/> (its instruments, its rows).</param>
    /// <param name="maxRequests">Requests one call carries at most.</param>
    /// <param name="maxWeight">Weight one call carries at most; a single heavier request still goes, alone.</param>
    /// <param name="requestsPerCall">Records how many requests each call served.</param>
    /// <param name="maxInFlight">Shared calls in flight at once; the next call is formed when one of them ends.</param>
    public CallCoalescer(
        string spanName,
        Func<IReadOnlyList<TRequest>, CancellationToken, Task<IReadOnlyList<TAnswer>>> serve,
        Func<TRequest, int> weight,
        int maxRequests,
        int maxWeight,
        Histogram<long> requestsPerCall,
        int maxInFlight = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxInFlight, 1);
        (_spanName, _serve, _weight, _maxRequests, _maxWeight, _requestsPerCall) = (spanName, serve, weight, maxRequests, maxWeight, requestsPerCall);
        _slots = new SemaphoreSlim(maxInFlight, maxInFlight);
        using (ExecutionContext.SuppressFlow())
        {
            // The loop serves every caller: it must not carry the context (trace, gRPC call, deadline) of the first.
            _loop = Task.Run(LoopAsync);
        }
    }

    /// <summary>The answer to <paramref name="request"/>, from the next shared call.</summary>
    public async Task<TAnswer> CallAsync(TRequest request, CancellationToken cancellationToken)
    {
        var pending = new Pending(request, Activity.Current?.Context ?? default);
        await _queue.Writer.WriteAsync(pending, cancellationToken);
        return await pending.Answer.Task.WaitAsync(cancellationToken);
    }

    private async Task LoopAsync()
    {
        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token))
            {
                // A call's slot first; then everything that arrived while the calls before were in flight, up to one
                // call's worth.
                await _slots.WaitAsync(_stop.Token);
                var batch = new List<Pending>();
                var carried = 0;
                while (batch.Count < _maxRequests && reader.TryPeek(out var next)
                    && (batch.Count == 0 || carried + _weight(next.Request) <= _maxWeight) && reader.TryRead(out next))
                {
                    batch.Add(next);
                    carried += _weight(next.Request);
                }

                _inFlight.RemoveAll(t => t.IsCompleted);
                _inFlight.Add(ServeInSlotAsync(batch));
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }

        await Task.WhenAll(_inFlight); // each fails or cancels its own requests, never throws

        while (reader.TryRead(out var left))
        {
            left.Answer.TrySetCanceled();
        }
    }

    private async Task ServeInSlotAsync(List<Pending> batch)
    {
        try
        {
            await ServeAsync(batch);
        }
        finally
        {
            _slots.Release();
        }
    }

    private async Task ServeAsync(List<Pending> batch)
    {
        // The call belongs to the trace of the first request it serves (a lone request's trace stays whole: the submit
        // of one plan shows its pricing and risk calls), and links the traces of the others.
        var parent = batch[0].Caller;
        var links = batch.Skip(1).Where(r => r.Caller != default).Take(64).Select(r => new ActivityLink(r.Caller)).ToArray();
        using var activity = PlanPipeline.ActivitySource.StartActivity(_spanName, ActivityKind.Internal, parentContext: parent, links: links);
        activity?.SetTag("planning.batch.requests", batch.Count);
        _requestsPerCall.Record(batch.Count);
        try
        {
            var answers = await _serve(batch.ConvertAll(p => p.Request), _stop.Token);
            if (answers.Count != batch.Count)
            {
                throw new InvalidOperationException($"{_spanName}: {answers.Count} answers to {batch.Count} requests.");
            }

            for (var i = 0; i < batch.Count; i++)
            {
                batch[i].Answer.TrySetResult(answers[i]);
            }
        }
        catch (Exception ex)
        {
            // The call failed for every request it served: each caller sees the failure (a gRPC status, mostly).
            foreach (var pending in batch)
            {
                pending.Answer.TrySetException(ex);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _queue.Writer.TryComplete();
        await _loop;

        _stop.Dispose();
        _slots.Dispose();
    }

    private sealed record Pending(TRequest Request, ActivityContext Caller)
    {
        public TaskCompletionSource<TAnswer> Answer { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
