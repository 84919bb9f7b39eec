using System.Threading.Channels;

namespace RebalanceMesh.EventBus;

/// <summary>
/// Delivers one subscription's events through a fixed number of concurrent workers (lanes), as Dapr's pubsub.redis
/// delivers a subscription through its <c>concurrency</c> workers. Events with the same ordering key always take the
/// same lane, so they are handled one at a time in arrival order; events without a key are spread over the lanes and
/// may complete in any order. A full lane makes the reader wait (bounded memory).
/// </summary>
public sealed class DeliveryLanes<T> : IAsyncDisposable
{
    private const int LaneCapacity = 64;
    private readonly Channel<T>[] _lanes;
    private readonly Task[] _workers;
    private int _next = -1;

    /// <param name="deliver">Handles one event; an exception is passed to <paramref name="failed"/> and the lane goes on.</param>
    public DeliveryLanes(int count, Func<T, CancellationToken, Task> deliver, Action<T, Exception> failed, CancellationToken cancellationToken)
        : this(count, 1, (items, ct) => deliver(items[0], ct), failed, cancellationToken)
    {
    }

    /// <param name="maxBatch">
    /// Events one delivery takes at most: a worker takes what its lane holds, up to this many, in lane order (so the
    /// events of one key stay in order within a batch and between batches). 1 delivers one at a time.
    /// </param>
    /// <param name="deliverBatch">Handles a batch; an exception is passed to <paramref name="failed"/> for each event of it and the lane goes on.</param>
    public DeliveryLanes(int count, int maxBatch, Func<IReadOnlyList<T>, CancellationToken, Task> deliverBatch, Action<T, Exception> failed, CancellationToken cancellationToken)
    {
        count = Math.Max(count, 1);
        maxBatch = Math.Max(maxBatch, 1);
        _lanes = Enumerable.Range(0, count)
            .Select(_ => Channel.CreateBounded<T>(new BoundedChannelOptions(Math.Max(LaneCapacity, maxBatch)) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait }))
            .ToArray();
        _workers = _lanes.Select(lane => Task.Run(async () =>
        {
            var batch = new List<T>(maxBatch);
            try
            {
                while (await lane.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    batch.Clear();
                    while (batch.Count < maxBatch && lane.Reader.TryRead(out var item))
                    {
                        batch.Add(item);
                    }

                    try
                    {
                        await deliverBatch(batch.ToArray(), cancellationToken).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (!(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
                    {
                        foreach (var item in batch)
                        {
                            failed(item, ex);
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // stopping: what is left in the lane stays unacknowledged and is delivered again
            }
        }, CancellationToken.None)).ToArray();
    }

    public int Count => _lanes.Length;

    /// <summary>The lane an event takes: its key's, or the next one round robin when it has none.</summary>
    public int LaneOf(string? key) => key is null
        ? (int)((uint)Interlocked.Increment(ref _next) % (uint)_lanes.Length)
        : (int)((uint)StringComparer.Ordinal.GetHashCode(key) % (uint)_lanes.Length);

    public ValueTask EnqueueAsync(string? key, T item, CancellationToken cancellationToken) =>
        _lanes[LaneOf(key)].Writer.WriteAsync(item, cancellationToken);

    /// <summary>Lets every lane finish what it holds, then stops the workers.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var lane in _lanes)
        {
            lane.Writer.TryComplete();
        }

        await Task.WhenAll(_workers).ConfigureAwait(false);
    }
}
