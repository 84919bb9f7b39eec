using System.Diagnostics.Metrics;

namespace RebalanceMesh.Planning.Tests;

/// <summary>The coalescing rule both batchers stand on: limits per call, order of answers, failure of a whole call.</summary>
public sealed class CallCoalescerTests
{
    private static readonly Histogram<long> Calls = new Meter("tests").CreateHistogram<long>("tests.coalesced");

    [Fact]
    public async Task Queued_requests_go_in_calls_within_the_request_and_weight_limits_each_answered_in_order()
    {
        var served = new List<int[]>();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var coalescer = new CallCoalescer<int, string>("test", async (batch, _) =>
        {
            lock (served)
            {
                served.Add([.. batch]);
            }

            firstArrived.TrySetResult();
            await release.Task;
            return [.. batch.Select(n => $"answer {n}")];
        }, weight: n => n, maxRequests: 3, maxWeight: 10, Calls);

        var first = coalescer.CallAsync(1, CancellationToken.None);
        await firstArrived.Task;
        // Queued behind the held call: 2, 3, 4 fit (3 requests, weight 9); 5 starts the next; 20 is heavier than a call and goes alone.
        var queued = new[] { 2, 3, 4, 5, 20, 1 }.Select(n => (n, Task: coalescer.CallAsync(n, CancellationToken.None))).ToArray();
        release.SetResult();

        Assert.Equal("answer 1", await first);
        foreach (var (n, task) in queued)
        {
            Assert.Equal($"answer {n}", await task);
        }

        Assert.Equal([[1], [2, 3, 4], [5], [20], [1]], served);
    }

    [Fact]
    public async Task With_two_calls_in_flight_the_second_goes_at_once_and_the_third_takes_what_queued_behind_both()
    {
        var served = new List<int[]>();
        var releases = new List<TaskCompletionSource>();
        var started = new SemaphoreSlim(0);
        await using var coalescer = new CallCoalescer<int, int>("test", async (batch, _) =>
        {
            var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (served)
            {
                served.Add([.. batch]);
                releases.Add(release);
            }

            started.Release();
            await release.Task;
            return [.. batch.Select(n => -n)];
        }, weight: _ => 1, maxRequests: 10, maxWeight: 10, Calls, maxInFlight: 2);

        var first = coalescer.CallAsync(1, CancellationToken.None);
        await started.WaitAsync();
        var second = coalescer.CallAsync(2, CancellationToken.None); // a slot is free: goes alone, at once
        await started.WaitAsync();
        var queued = new[] { 3, 4, 5 }.Select(n => coalescer.CallAsync(n, CancellationToken.None)).ToArray();
        Assert.False(await started.WaitAsync(TimeSpan.FromMilliseconds(100))); // both slots taken: nothing else goes

        lock (served)
        {
            releases[1].SetResult(); // the second ends first: its slot carries everything queued
        }

        Assert.Equal(-2, await second);
        await started.WaitAsync();
        lock (served)
        {
            releases[0].SetResult();
            releases[2].SetResult();
        }

        Assert.Equal(-1, await first);
        Assert.Equal(new[] { -3, -4, -5 }, await Task.WhenAll(queued));
        Assert.Equal([[1], [2], [3, 4, 5]], served);
    }

    [Fact]
    public async Task The_shared_call_runs_in_the_trace_of_its_first_request_so_a_lone_requests_trace_stays_whole()
    {
        using var source = new System.Diagnostics.ActivitySource("tests.coalescer");
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = s => s.Name is "tests.coalescer" or "RebalanceMesh.Planning",
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        System.Diagnostics.ActivityTraceId? servedIn = null;
        await using var coalescer = new CallCoalescer<int, int>("test", (batch, _) =>
        {
            servedIn = System.Diagnostics.Activity.Current?.TraceId;
            return Task.FromResult<IReadOnlyList<int>>([.. batch]);
        }, weight: _ => 1, maxRequests: 10, maxWeight: 10, Calls);

        using (var caller = source.StartActivity("submit"))
        {
            Assert.Equal(1, await coalescer.CallAsync(1, CancellationToken.None));
            Assert.Equal(caller!.TraceId, servedIn);
        }
    }

    [Fact]
    public async Task A_failed_call_fails_every_request_it_carried_and_the_next_call_still_goes()
    {
        var calls = 0;
        await using var coalescer = new CallCoalescer<int, int>("test", (batch, _) =>
            Interlocked.Increment(ref calls) == 1 ? throw new InvalidOperationException("down") : Task.FromResult<IReadOnlyList<int>>([.. batch]),
            weight: _ => 1, maxRequests: 100, maxWeight: 100, Calls);

        var failed = await Assert.ThrowsAsync<InvalidOperationException>(() => coalescer.CallAsync(7, CancellationToken.None));
        Assert.Equal("down", failed.Message);
        Assert.Equal(8, await coalescer.CallAsync(8, CancellationToken.None));
    }

    [Fact]
    public async Task A_serve_that_answers_the_wrong_number_fails_the_call_instead_of_misrouting_answers()
    {
        await using var coalescer = new CallCoalescer<int, int>("test", (_, _) => Task.FromResult<IReadOnlyList<int>>([]), weight: _ => 1, maxRequests: 10, maxWeight: 10, Calls);
        await Assert.ThrowsAsync<InvalidOperationException>(() => coalescer.CallAsync(1, CancellationToken.None));
    }
}
