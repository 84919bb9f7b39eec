using Google.Protobuf;
using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Execution;

/// <summary>
/// The transactional outbox every execution report leaves through: each is committed together with the state it
/// reports, in one Redis step — a fill with its order, a leg's or plan's end with the run's journal entry or the plan's
/// state, a liquidation with the venue's account. The committing code publishes at once and removes each report after
/// it was published; this relay publishes what a crash left behind — entries older than
/// <see cref="Grace"/> — every second, so no committed liquidation goes unreported. Delivery is at least once: a
/// report may be published twice (replicas, a crash after publishing), and planning applies each liquidation id once.
/// </summary>
public sealed class ReportOutbox(ExecutionStore store, IEventBus bus, TimeProvider time, ILogger<ReportOutbox> logger) : PeriodicWork(TimeSpan.FromSeconds(1), time, logger)
{
    /// <summary>How long an entry is left to the code that committed it before the relay takes it.</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(2);

    private static readonly Meter Meter = new("RebalanceMesh.Execution.Outbox");
    private static readonly Counter<long> Relayed = Meter.CreateCounter<long>("rebalancemesh.execution.outbox_relayed", description: "Reports the outbox relay published after their committer did not (a crash between commit and publish).");

    /// <summary>Publishes committed reports, in order, and takes them out of the outbox.</summary>
    public async Task PublishAsync(IReadOnlyList<ExecutionReport> reports, CancellationToken cancellationToken)
    {
        if (reports.Count == 0)
        {
            return;
        }

        await bus.PublishAllAsync(Topics.ExecutionReports, reports, cancellationToken);
        await store.RemoveFromOutboxAsync(reports);
    }

    /// <summary>
    /// Publishes at once what the outbox holds of one plan (among its oldest entries): a plan resumed after a crash
    /// reports what its last run committed before anything new, so its reports stay in order.
    /// </summary>
    public async Task RelayPlanAsync(string planId, CancellationToken cancellationToken)
    {
        foreach (var entry in await store.GetOutboxAsync(1_000))
        {
            if (entry.Report.PlanId == planId)
            {
                await RelayAsync(entry, cancellationToken);
            }
        }
    }

    /// <summary>One pass: publishes every entry older than the grace period; returns how many.</summary>
    public async Task<int> RelayAsync(CancellationToken cancellationToken)
    {
        var relayed = 0;
        foreach (var entry in await store.GetOutboxAsync(100))
        {
            if (Time.GetUtcNow() - entry.Report.ReportedAt.ToDateTimeOffset() < Grace)
            {
                continue;
            }

            await RelayAsync(entry, cancellationToken);
            relayed++;
        }

        return relayed;
    }

    /// <summary>Publishes one entry its committer left in the outbox, then takes it out.</summary>
    private async Task RelayAsync(ExecutionStore.OutboxEntry entry, CancellationToken cancellationToken)
    {
        var report = entry.Report;
        using var activity = PlanExecutor.ActivitySource.StartActivity("relay outbox report");
        activity?.SetTag("execution.report_id", report.ReportId);
        await bus.PublishAsync(Topics.ExecutionReports, report, cancellationToken);
        await store.RemoveFromOutboxAsync(entry);
        logger.LogWarning("Relayed report {ReportId} of {PortfolioId} from the outbox (its committer did not publish it)", report.ReportId, report.PortfolioId);
        Relayed.Add(1);
    }

    protected override string Name => "report outbox relay";

    protected override Task RunRoundAsync(CancellationToken cancellationToken) => RelayAsync(cancellationToken);
}
