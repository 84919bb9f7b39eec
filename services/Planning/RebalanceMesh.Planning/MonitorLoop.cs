using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.ServiceDefaults;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>
/// Consumes market.quotes (delivered to one planning replica): appends the event's changed instruments to the monitor's
/// tick stream, once per event, which wakes the monitor of every replica. Evaluation happens there, not here, so the
/// consumer never waits for a pass.
/// </summary>
public sealed class MarketTickRelay(MonitorShards shards, IOptions<MonitorOptions> options) : IEventHandler<QuotesUpdated>
{
    public async Task HandleAsync(QuotesUpdated message, EventContext context, CancellationToken cancellationToken)
    {
        var instruments = message.Prices.Select(p => p.InstrumentId).Where(i => i.Length > 0).ToArray();
        if (instruments.Length > 0)
        {
            await shards.AppendTickAsync(context.EventId, instruments, Activity.Current?.Id ?? string.Empty, options.Value.TicksKept);
        }
    }
}

/// <summary>
/// Runs this replica's monitor: a heartbeat every <see cref="MonitorOptions.HeartbeatInterval"/> (membership and
/// partition moves), and a pass whenever a tick is announced (or at the heartbeat, should an announcement be lost).
/// On shutdown the replica leaves, giving its partitions to the others at once.
/// </summary>
public sealed class MonitorLoop(DriftMonitor monitor, IConnectionMultiplexer redis, IOptions<MonitorOptions> options, TimeProvider time, ILogger<MonitorLoop> logger) : BackgroundService
{
    private readonly WakeSignal _wake = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var subscription = await redis.GetSubscriber().SubscribeAsync(RedisChannel.Literal(MonitorShards.TickChannel));
        subscription.OnMessage(_ => _wake.Set());
        try
        {
            await Task.WhenAll(HeartbeatsAsync(stoppingToken), PassesAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            await subscription.UnsubscribeAsync();
            try
            {
                await monitor.LeaveAsync(CancellationToken.None);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Monitor could not leave cleanly; its partitions go to the others when its membership ends");
            }
        }
    }

    private async Task HeartbeatsAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await monitor.HeartbeatAsync(stoppingToken);
                _wake.Set(); // partitions taken may have ticks waiting
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Monitor heartbeat failed; retrying");
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                // A bug or data no one foresaw must not stop the monitor: said loudly, tried again at the next beat.
                logger.LogError(ex, "Monitor heartbeat failed unexpectedly; retrying");
            }

            await Task.Delay(options.Value.HeartbeatInterval, time, stoppingToken);
        }
    }

    private async Task PassesAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            await _wake.WaitAsync(Timeout.InfiniteTimeSpan, stoppingToken);
            try
            {
                await monitor.ProcessAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException or Grpc.Core.RpcException && !stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "Monitor pass failed; the ticks stay after the cursors and are evaluated at the next pass");
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogError(ex, "Monitor pass failed unexpectedly; the ticks stay after the cursors and are evaluated at the next pass");
            }
        }
    }

    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }
}

/// <summary>
/// Builds the automatic plans the monitor's passes ask for: the plan requests of the partitions this replica holds,
/// <see cref="MonitorOptions.MaxConcurrentPlans"/> at a time. Each is decided against the portfolio's last plan
/// (<see cref="DriftMonitor.Decide"/>: cooldowns, one plan in flight, pre-emption by an emergency) and submitted under
/// the key "auto-after-{last plan}", so a request worked twice (a replica died after storing the plan) yields one plan.
/// A request whose plan could not be built for want of pricing or risk stays for the next round.
/// </summary>
public sealed class AutoPlanner(DriftMonitor monitor, MonitorShards shards, MonitorBook book, IServiceScopeFactory scopes, RedisBroadcast<PolicyAlert> alerts, IOptions<MonitorOptions> options, TimeProvider time, ILogger<AutoPlanner> logger) : BackgroundService
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly Counter<long> AutoSubmissions = Meter.CreateCounter<long>("rebalancemesh.planning.auto_submissions", description: "Plans the monitor submitted by itself.");
    private static readonly Counter<long> Preemptions = Meter.CreateCounter<long>("rebalancemesh.planning.preemptions", description: "Running rebalances the monitor cancelled for an emergency.");
    private static readonly Counter<long> Requests = Meter.CreateCounter<long>("rebalancemesh.planning.plan_requests", description: "Automatic plan requests worked, by outcome (submitted, none, preempted, retry, refused, unreadable).");

    private readonly SemaphoreSlim _drain = new(1, 1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await monitor.WhenPlansWantedAsync(options.Value.HeartbeatInterval, stoppingToken);
                await DrainAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Automatic planner could not read its requests; retrying");
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogError(ex, "Automatic planner failed unexpectedly; its requests stay and are worked again");
            }
        }
    }

    /// <summary>Works every plan request of the held partitions once; returns how many plans were submitted.</summary>
    public async Task<int> DrainAsync(CancellationToken cancellationToken)
    {
        await _drain.WaitAsync(cancellationToken);
        try
        {
            var work = new List<(int Partition, string PortfolioId, PlanRequest? Request, string Raw)>();
            foreach (var partition in await shards.WithPlanRequestsAsync(monitor.Held.Order().ToArray()))
            {
                work.AddRange((await shards.GetPlanRequestsAsync(partition, int.MaxValue)).Select(r => (partition, r.PortfolioId, r.Request, r.Raw)));
            }

            if (work.Count == 0)
            {
                return 0;
            }

            using var activity = PlanPipeline.ActivitySource.StartActivity("auto plans");
            activity?.SetTag("planning.plan_requests", work.Count);
            var submitted = 0;
            await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.Value.MaxConcurrentPlans), CancellationToken = cancellationToken }, async (item, ct) =>
            {
                var outcome = await WorkAsync(item.PortfolioId, item.Request, ct);
                Requests.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
                if (outcome == "submitted")
                {
                    Interlocked.Increment(ref submitted);
                }

                if (outcome != "retry")
                {
                    await shards.PlanRequestDoneAsync(item.Partition, item.PortfolioId, item.Raw);
                }
            });
            activity?.SetTag("planning.plans_submitted", submitted);
            if (submitted > 0)
            {
                logger.LogInformation("Automatic planner: {Submitted} plans submitted for {Requests} requests", submitted, work.Count);
            }

            return submitted;
        }
        finally
        {
            _drain.Release();
        }
    }

    private async Task<string> WorkAsync(string portfolioId, PlanRequest? request, CancellationToken cancellationToken)
    {
        if (request is null)
        {
            logger.LogError("Automatic plan request for {PortfolioId} cannot be read; dropped (the next evaluation asks again)", portfolioId);
            return "unreadable";
        }

        if (book.Get(portfolioId)?.Policy is not { ExecutionMode: ExecutionMode.Auto } policy)
        {
            return "none"; // no longer monitored, or no longer automatic
        }

        await using var scope = scopes.CreateAsyncScope();
        var store = scope.ServiceProvider.GetRequiredService<PlanningStore>();
        var submitter = scope.ServiceProvider.GetRequiredService<PlanSubmitter>();
        try
        {
            var (recent, _) = await store.ListPlansAsync(portfolioId, 0, 1);
            var last = recent.Count > 0 ? recent[0] : null;
            var now = time.GetUtcNow();
            var current = new DriftMonitor.Evaluated(request.PortfolioVersion, request.Breaches.ToHashSet(StringComparer.Ordinal));
            switch (DriftMonitor.Decide(last, now, policy, request.Breached, request.Emergency, current))
            {
                case DriftMonitor.AutoAction.Preempt:
                    await submitter.CancelAsync(last!, "monitor", "pre-empted: an emergency (loan, margin account or ripcord) goes first", cancellationToken);
                    Preemptions.Add(1);
                    return "preempted";
                case DriftMonitor.AutoAction.None:
                    return "none";
            }

            // Without a breach the calendar is due: a forced plan.
            var plan = await submitter.SubmitAsync(portfolioId, force: !request.Breached, "auto-after-" + (last?.PlanId ?? "none"), cancellationToken);
            AutoSubmissions.Add(1);
            logger.LogInformation("Monitor submitted {PlanId} for {PortfolioId} ({Status}): {Why}", plan.PlanId, portfolioId, plan.Status,
                request.Emergency ? "health factor below the emergency level" : request.Breached ? "policy breached" : "calendar due");
            if (plan.NoActionReason == NoActionReason.Uncurable)
            {
                // Said once: Decide does not plan this breach again until something it depends on changes.
                logger.LogWarning("Portfolio {PortfolioId}'s breach cannot be cured by trading: {Detail}", portfolioId, plan.StatusMessage);
                var alert = new PolicyAlert
                {
                    PortfolioId = portfolioId,
                    Kind = AlertKind.Uncurable,
                    Detail = plan.StatusMessage,
                    RaisedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(now),
                    Automatic = true,
                };
                alert.Reasons.AddRange(plan.Reasons.Where(r => r.Breached));
                await alerts.PublishAsync(alert);
            }

            return "submitted";
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode is Grpc.Core.StatusCode.Unavailable or Grpc.Core.StatusCode.DeadlineExceeded && !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Automatic plan for {PortfolioId} waits: {Detail}", portfolioId, ex.Status.Detail);
            return "retry";
        }
        catch (RebalanceMesh.Domain.DomainException ex)
        {
            logger.LogWarning("Monitor did not submit for {PortfolioId}: {Reason}", portfolioId, ex.Message);
            return "refused";
        }
    }

    public override void Dispose()
    {
        _drain.Dispose();
        base.Dispose();
    }
}

/// <summary>
/// A wake-up that coalesces: any number of <see cref="Set"/> calls before a wait let exactly one wait through. A wait
/// with a timeout runs on the host's <see cref="TimeProvider"/>.
/// </summary>
public sealed class WakeSignal(TimeProvider? time = null) : IDisposable
{
    private readonly SemaphoreSlim _signal = new(0, 1);

    public void Set()
    {
        try
        {
            _signal.Release();
        }
        catch (SemaphoreFullException)
        {
            // already set: the waiter wakes once for all of them
        }
    }

    /// <summary>True when set (and now reset); false after <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            await _signal.WaitAsync(cancellationToken);
            return true;
        }

        using var timer = new CancellationTokenSource(timeout, time ?? TimeProvider.System);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            await _signal.WaitAsync(linked.Token);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    public void Dispose() => _signal.Dispose();
}
