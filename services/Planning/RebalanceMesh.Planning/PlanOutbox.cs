using System.Diagnostics;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>
/// Sends to execution the approved plans a replica stored but did not publish — it stopped between storing a plan and
/// publishing plans.approved, which would otherwise leave the plan approved forever and its portfolio blocked (one plan
/// in flight). Every <see cref="Interval"/> it publishes what has been in the outbox longer than <see cref="Grace"/>
/// (<see cref="PlanSubmitter.PublishOutboxAsync"/>), on every replica; a claim per plan keeps it to one.
/// </summary>
public sealed class PlanOutbox(IServiceScopeFactory scopes, TimeProvider time, ILogger<PlanOutbox> logger) : PeriodicWork(Interval, time, logger)
{
    /// <summary>How often the outbox is read.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    /// <summary>How long a plan stays in the outbox before it counts as not published (a submission publishes within its deadline).</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(30);

    /// <summary>Plans sent per round at most.</summary>
    public const int BatchSize = 100;

    private readonly string _owner = Environment.MachineName + ":" + Environment.ProcessId + ":" + Guid.NewGuid().ToString("N")[..8];

    protected override string Name => "plan outbox";

    protected override async Task RunRoundAsync(CancellationToken cancellationToken)
    {
        using var activity = PlanPipeline.ActivitySource.StartActivity("plan outbox", ActivityKind.Internal, parentContext: default);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var sent = await scope.ServiceProvider.GetRequiredService<PlanSubmitter>().PublishOutboxAsync(_owner, cancellationToken);
            activity?.SetTag("planning.outbox.sent", sent);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Redis or the bus is down: the plans stay in the outbox for the next round.
            activity?.SetStatus(ActivityStatusCode.Error, ex.Message);
            throw;
        }
    }
}
