using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Events.V1;

namespace RebalanceMesh.Execution;

/// <summary>
/// Runs this replica's share of the accepted plans, many at once (at most <see cref="ExecutionOptions.MaxConcurrentPlans"/>),
/// each under a lease in the <see cref="RunQueue"/>. A plan delivered to this replica starts here at once when there is
/// room; otherwise it waits in the queue, where any replica with room takes it. Every tick the runner renews the leases
/// of the plans it runs (a plan whose lease another replica took — this one stalled past its lease — is stopped here)
/// and takes plans whose lease has ended: those of a replica that died, or that had no room. A plan that fails (an
/// error, not a venue's refusal) is given back to run again shortly; after <see cref="ExecutionOptions.MaxPlanAttempts"/>
/// failures it ends FAILED. On shutdown the running plans stop and are given back at once, for another replica.
/// </summary>
public sealed class PlanRunner(
    RunQueue queue,
    PlanExecutor executor,
    IOptions<ExecutionOptions> options,
    TimeProvider time,
    ILogger<PlanRunner> logger) : BackgroundService
{
    private static readonly Meter Meter = new("RebalanceMesh.Execution.Runner");
    private static readonly Counter<long> Taken = Meter.CreateCounter<long>("rebalancemesh.execution.plans_taken", description: "Plans this replica took from the run queue, by how: delivered (just accepted here), queued (free, or left by a replica whose lease ended), resumed (its own, after a restart).");
    private static readonly UpDownCounter<long> RunningNow = Meter.CreateUpDownCounter<long>("rebalancemesh.execution.plans_running", description: "Plans running on this replica now.");
    private static readonly Counter<long> LeasesLost = Meter.CreateCounter<long>("rebalancemesh.execution.leases_lost", description: "Plans stopped here because another replica took their lease.");
    private static readonly Counter<long> RunFailures = Meter.CreateCounter<long>("rebalancemesh.execution.run_failures", description: "Plan runs that failed with an error (each is run again, up to the attempt limit).");

    private readonly ConcurrentDictionary<string, Running> _running = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _tick = new(1, 1);
    private bool _resumed;
    private readonly CancellationTokenSource _shutdown = new();

    /// <summary>Plans running on this replica now.</summary>
    public int RunningCount => _running.Count;

    private ExecutionOptions Settings => options.Value;

    /// <summary>Completes once no plan runs on this replica (plans started meanwhile are waited for too).</summary>
    public async Task WhenIdleAsync()
    {
        while (_running.Values.Select(r => r.Forgotten.Task).ToArray() is { Length: > 0 } slots)
        {
            await Task.WhenAll(slots);
        }
    }

    private string Me => Settings.ReplicaId;

    /// <summary>
    /// Starts a plan just delivered and accepted, when this replica has room and takes its lease; false leaves it to
    /// the queue (another replica runs it, or it runs here at the next tick).
    /// </summary>
    public async Task<bool> TryStartAsync(PlanApproved plan)
    {
        if (await TryTakeAsync(plan.PlanId) is not { } running)
        {
            return false;
        }

        Start(plan, running, "delivered", parent: default);
        return true;
    }

    /// <summary>One tick: renews the leases of the running plans, then takes free plans while there is room (one tick at a time).</summary>
    public async Task TickAsync()
    {
        await _tick.WaitAsync();
        try
        {
            await RenewAndTakeAsync();
        }
        finally
        {
            _tick.Release();
        }
    }

    private async Task RenewAndTakeAsync()
    {
        if (!_resumed)
        {
            // A replica restarted under its own name takes back the plans it held at once, not after their leases.
            foreach (var planId in await queue.HeldByAsync(Me))
            {
                await TakeQueuedAsync(planId, "resumed");
            }

            _resumed = true;
        }

        var now = time.GetUtcNow();
        foreach (var planId in await queue.RenewAsync(_running.Keys.ToArray(), Me, now + Settings.PlanLease))
        {
            if (_running.TryGetValue(planId, out var lost) && !lost.Task.IsCompleted)
            {
                logger.LogWarning("Plan {PlanId}: another replica holds its lease now; stopping it here", planId);
                LeasesLost.Add(1);
                lost.Lost = true;
                await lost.Stop.CancelAsync();
            }
        }

        foreach (var planId in await queue.DueAsync(now, Settings.MaxConcurrentPlans - _running.Count))
        {
            if (_running.Count >= Settings.MaxConcurrentPlans || _shutdown.IsCancellationRequested)
            {
                break;
            }

            await TakeQueuedAsync(planId, "queued");
        }
    }

    private async Task TakeQueuedAsync(string planId, string how)
    {
        if (await TryTakeAsync(planId) is not { } running)
        {
            return;
        }

        if (await queue.GetApprovedAsync(planId) is not { } approved)
        {
            logger.LogError("Plan {PlanId} is queued without its approved plan; taking it out of the queue", planId);
            Forget(planId, running);
            await queue.ReleaseEndedAsync(planId, Me);
            return;
        }

        _ = ActivityContext.TryParse(approved.TraceParent, null, out var parent);
        Start(approved.Plan, running, how, parent);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Settings.RunScanInterval, time);
        do
        {
            try
            {
                await TickAsync();
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                // Never let one bad moment (Redis away) stop the runner: the next tick tries again.
                logger.LogWarning(ex, "Plan runner tick failed; retrying at the next");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Running plans stop (linked to this) before the loop does, so none starts meanwhile.
        await _shutdown.CancelAsync();
        await base.StopAsync(cancellationToken);

        // The plans stopped here are given back as they stop (see RunAsync), for another replica to take at once.
        await Task.WhenAll(_running.Values.Select(r => r.Task)).WaitAsync(cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
    }

    /// <summary>
    /// Reserves a slot for a plan on this replica and takes its lease; null when there is no room, the plan already runs
    /// here, or its lease is held by another replica.
    /// </summary>
    private async Task<Running?> TryTakeAsync(string planId)
    {
        if (_running.Count >= Settings.MaxConcurrentPlans || _shutdown.IsCancellationRequested)
        {
            return null;
        }

        var running = new Running(CancellationTokenSource.CreateLinkedTokenSource(_shutdown.Token));
        if (!_running.TryAdd(planId, running))
        {
            running.Stop.Dispose();
            return null;
        }

        try
        {
            var now = time.GetUtcNow();
            if (await queue.TryClaimAsync(planId, Me, now, now + Settings.PlanLease))
            {
                return running;
            }
        }
        catch
        {
            Forget(planId, running);
            throw;
        }

        Forget(planId, running);
        return null;
    }

    private void Forget(string planId, Running running)
    {
        _running.TryRemove(new KeyValuePair<string, Running>(planId, running));
        running.Stop.Dispose();
        running.Forgotten.TrySetResult();
    }

    private void Start(PlanApproved plan, Running running, string how, ActivityContext parent)
    {
        Taken.Add(1, new KeyValuePair<string, object?>("how", how));
        RunningNow.Add(1);
        running.Task = Task.Run(() => RunAsync(plan, running, parent), CancellationToken.None);
    }

    private async Task RunAsync(PlanApproved plan, Running running, ActivityContext parent)
    {
        using var activity = parent == default ? null : PlanExecutor.ActivitySource.StartActivity("resume plan", ActivityKind.Consumer, parent);
        activity?.SetTag("execution.plan_id", plan.PlanId);
        try
        {
            await executor.ExecuteAsync(plan, running.Stop.Token);
            await queue.ReleaseEndedAsync(plan.PlanId, Me);
        }
        catch (OperationCanceledException) when (running.Stop.IsCancellationRequested)
        {
            if (!running.Lost)
            {
                logger.LogInformation("Plan {PlanId} stopped on this replica's shutdown; given back to the queue", plan.PlanId);
                await Try(() => queue.ReleaseUnfinishedAsync(plan.PlanId, Me, time.GetUtcNow()));
            }
        }
        catch (Exception ex)
        {
            RunFailures.Add(1);
            var failures = await Try(() => queue.CountFailureAsync(plan.PlanId));
            if (failures >= Settings.MaxPlanAttempts)
            {
                logger.LogError(ex, "Plan {PlanId} failed {Failures} times; it ends FAILED", plan.PlanId, failures);
                await Try(async () =>
                {
                    await executor.FailAsync(plan, $"execution failed {failures} times: {ex.Message}", CancellationToken.None);
                    await queue.ReleaseEndedAsync(plan.PlanId, Me);
                    return 0L;
                });
            }
            else
            {
                logger.LogWarning(ex, "Plan {PlanId} failed (attempt {Failures}); it runs again shortly", plan.PlanId, failures);
                await Try(() => queue.ReleaseUnfinishedAsync(plan.PlanId, Me, time.GetUtcNow() + Settings.RunScanInterval));
            }
        }
        finally
        {
            RunningNow.Add(-1);
            Forget(plan.PlanId, running);
        }
    }

    /// <summary>A queue write after a failure: when it fails too (Redis gone), the lease simply ends and the plan is taken again.</summary>
    private async Task<long> Try(Func<Task<long>> write)
    {
        try
        {
            return await write();
        }
        catch (Exception ex) when (ex is StackExchange.Redis.RedisException or TimeoutException)
        {
            logger.LogWarning(ex, "Run queue write failed; the plan's lease will end and it is taken again");
            return 0;
        }
    }

    private Task Try(Func<Task> write) => Try(async () =>
    {
        await write();
        return 0L;
    });

    public override void Dispose()
    {
        // Cancelled, not disposed (as BackgroundService treats its own token): a host may be stopped again after it was
        // disposed (ASP.NET's test host: dotnet/aspnetcore#40271), and StopAsync then cancels it once more.
        _shutdown.Cancel();
        _tick.Dispose();
        base.Dispose();
    }

    private sealed class Running(CancellationTokenSource stop)
    {
        public CancellationTokenSource Stop { get; } = stop;

        public Task Task { get; set; } = Task.CompletedTask;

        /// <summary>Completes when the plan's slot on this replica is freed.</summary>
        public TaskCompletionSource Forgotten { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Another replica took the plan's lease: it stops here without being given back.</summary>
        public bool Lost { get; set; }
    }
}
