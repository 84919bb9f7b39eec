using System.Collections.Concurrent;
using RebalanceMesh.EventBus;

namespace RebalanceMesh.BuildingBlocks.Tests;

public sealed class DeliveryLanesTests
{
    /// <summary>
    /// While a lane's worker is busy, what arrives waits in the lane; the next delivery takes all of it, in order, up to
    /// the batch size. Deterministic: everything is enqueued before the first delivery is let go.
    /// </summary>
    [Theory]
    [InlineData(64, new[] { 1, 20 })]
    [InlineData(8, new[] { 1, 8, 8, 4 })]
    [InlineData(1, new[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 })]
    public async Task A_lane_delivers_what_it_holds_in_order_up_to_the_batch_size(int maxBatch, int[] batchSizes)
    {
        var delivered = new ConcurrentQueue<int[]>();
        var busy = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var lanes = new DeliveryLanes<int>(1, maxBatch, async (items, ct) =>
        {
            delivered.Enqueue(items.ToArray());
            if (items[0] == 0)
            {
                busy.SetResult();
                await release.Task;
            }
        }, (_, _) => { }, CancellationToken.None);

        await lanes.EnqueueAsync("key", 0, CancellationToken.None);
        await busy.Task.WaitAsync(TimeSpan.FromSeconds(10));
        for (var i = 1; i <= 20; i++)
        {
            await lanes.EnqueueAsync("key", i, CancellationToken.None);
        }

        release.SetResult();
        await lanes.DisposeAsync(); // lets the lane finish what it holds

        Assert.Equal(batchSizes, delivered.Select(b => b.Length));
        Assert.Equal(Enumerable.Range(0, 21), delivered.SelectMany(b => b));
    }

    [Fact]
    public async Task A_failed_batch_is_reported_event_by_event_and_the_lane_goes_on()
    {
        var failed = new ConcurrentQueue<int>();
        var delivered = new ConcurrentQueue<int>();
        var busy = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var lanes = new DeliveryLanes<int>(1, 64, async (items, ct) =>
        {
            if (items[0] == 0)
            {
                busy.SetResult();
                await release.Task;
            }

            if (items.Contains(2))
            {
                throw new InvalidOperationException("bad batch");
            }

            foreach (var item in items)
            {
                delivered.Enqueue(item);
            }
        }, (item, _) => failed.Enqueue(item), CancellationToken.None);

        await lanes.EnqueueAsync("key", 0, CancellationToken.None);
        await busy.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await lanes.EnqueueAsync("key", 1, CancellationToken.None);
        await lanes.EnqueueAsync("key", 2, CancellationToken.None);
        release.SetResult();
        await lanes.DisposeAsync();

        Assert.Equal([0], delivered);
        Assert.Equal([1, 2], failed);
    }
}
