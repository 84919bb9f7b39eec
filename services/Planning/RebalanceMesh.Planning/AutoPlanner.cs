using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>
/// Builds the automatic plans the monitor's passes ask for: the plan requests of the partitions this replica holds,
/// <see cref="MonitorOptions.MaxConcurrentPlans"/> at a time. Each is decided against the portfolio's last plan
/// (<see cref="Decide"/>: cooldowns, one plan in flight, pre-emption by an emergency) and submitted under
/// the key "auto-after-{last plan}", so a request worked twice (a replica died after storing the plan) yields one plan.
/// A request whose plan could not be built for want of pricing or risk stays for the next round.
/// </summary>
public sealed class AutoPlanner(DriftMonitor monitor, MonitorShards shards, MonitorBook book, IServiceScopeFactory scopes, RedisBroadcast<PolicyAlert> alerts, IOptions<MonitorOptions> options, TimeProvider time, ILogger<AutoPlanner> logger) : BackgroundService
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly Counter<long> AutoSubmissions = Meter.CreateCounter<long>("rebalancemesh.planning.auto_submissions", description: "Plans the monitor submitted by itself.");
    private static readonly Counter<long> Preemptions = Meter.CreateCounter<long>("rebalancemesh.planning.preemptions", description: "Running rebalances the monitor cancelled for an emergency.");
    private static readonly Counter<long> Requests = Meter.CreateCounter<long>("rebalancemesh.planning.plan_requests", description: "Automatic plan requests worked, by outcome (submitted, none, preempted, retry, refused, unreadable).");

    /// <summary>Least time between two automatic plans even without a cooldown, so rounding-bound breaches do not churn.</summary>
    private static readonly TimeSpan MinimumAutoSpacing = TimeSpan.FromSeconds(5);

    private readonly SemaphoreSlim _drain = new(1, 1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        AutoSubmissions.Add(0); // the series exists from the start: an increase over it reads 0, not "no data"
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
            var current = new Evaluated(request.PortfolioVersion, request.Breaches.ToHashSet(StringComparer.Ordinal));
            switch (Decide(last, now, policy, request.Breached, request.Emergency, current))
            {
                case AutoAction.Preempt:
                    await submitter.CancelAsync(last!, "monitor", "pre-empted: an emergency (loan, margin account or ripcord) goes first", cancellationToken);
                    Preemptions.Add(1);
                    return "preempted";
                case AutoAction.None:
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

    /// <summary>What the monitor does for a portfolio in automatic mode after an evaluation.</summary>
    public enum AutoAction
    {
        /// <summary>Nothing now.</summary>
        None,

        /// <summary>Submit a plan.</summary>
        Submit,

        /// <summary>Cancel the running plan (a rebalance) so the emergency's plan can go next.</summary>
        Preempt,
    }

    /// <summary>The portfolio as the monitor just evaluated it: its version and the rules it breaches ("rule:instrument").</summary>
    public sealed record Evaluated(long PortfolioVersion, IReadOnlySet<string> Breaches)
    {
        public static IReadOnlySet<string> BreachesOf(IEnumerable<Contracts.Planning.V1.DriftReason> reasons) =>
            reasons.Where(r => r.Breached).Select(r => r.Rule + ":" + r.InstrumentId).ToHashSet(StringComparer.Ordinal);

        public static IReadOnlySet<string> BreachesOf(IEnumerable<Core.DriftReason> reasons) =>
            reasons.Where(r => r.Breached).Select(r => r.Rule + ":" + r.InstrumentId).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// Automatic mode: submit when the bands are breached or the calendar is due, unless a plan is still executing or
    /// the cooldown since the last plan has not passed (an emergency waits only the minimum spacing). An emergency does
    /// not wait behind a running rebalance either: that plan is pre-empted (cancelled once) and the guard's plan follows
    /// when it has ended; a running plan that protects a loan or margin account is never pre-empted. A breach the last
    /// plan found uncurable is not planned again while nothing it depended on changed — the portfolio, the policy, the
    /// breached rules — unless an emergency or the calendar calls.
    /// </summary>
    public static AutoAction Decide(Contracts.Planning.V1.Plan? last, DateTimeOffset now, Contracts.Planning.V1.Policy policy, bool breached, bool emergency, Evaluated? current = null)
    {
        var sinceLast = last is null ? TimeSpan.MaxValue : now - last.CreatedAt.ToDateTimeOffset();
        var calendarDue = policy.CalendarIntervalDays > 0 && sinceLast >= TimeSpan.FromDays(policy.CalendarIntervalDays);
        if (policy.ExecutionMode != Contracts.Planning.V1.ExecutionMode.Auto || !(breached || calendarDue))
        {
            return AutoAction.None;
        }

        if (!emergency && !calendarDue && current is not null
            && last is { Status: Contracts.Planning.V1.PlanStatus.NoAction, NoActionReason: Contracts.Planning.V1.NoActionReason.Uncurable }
            && last.PortfolioVersion == current.PortfolioVersion && last.PolicyVersion == policy.Version
            && Evaluated.BreachesOf(last.Reasons).SetEquals(current.Breaches))
        {
            return AutoAction.None;
        }

        if (last is not null && !last.Status.IsFinal())
        {
            return emergency && !last.Legs.Any(PlanPipeline.Protects) && last.CancelRequest is null
                ? AutoAction.Preempt
                : AutoAction.None;
        }

        var spacing = emergency ? MinimumAutoSpacing : TimeSpan.FromSeconds(Math.Max(policy.CooldownSeconds, (long)MinimumAutoSpacing.TotalSeconds));
        return sinceLast < spacing ? AutoAction.None : AutoAction.Submit;
    }

    public override void Dispose()
    {
        _drain.Dispose();
        base.Dispose();
    }
}
