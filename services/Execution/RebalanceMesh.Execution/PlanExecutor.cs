using Google.Protobuf.WellKnownTypes;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Blocks;
using RebalanceMesh.Execution.Core.Runs;
using RebalanceMesh.MarketState;

namespace RebalanceMesh.Execution;

/// <summary>
/// Runs approved plans: the plan's <see cref="PlanRun"/> (Execution.Core) decides, this host carries out what it asks —
/// reads quotes and venue states, has its child orders journaled and sent (<see cref="VenueOrders"/>), carries out
/// loan legs, top-ups and transfers through the venue gateways, waits, commits and publishes reports — and answers
/// with what happened.
/// Every answer is journaled (exe:run:{plan}) before the host does anything more outside (consecutive reports are
/// journaled together, with the reports in the outbox), so a redelivered plan (after a crash or a
/// restart) replays its journal to the command it was waiting on and carries on; a child sent again is answered from
/// the order journal and the venue's record of its client order id, never filled twice.
/// </summary>
public sealed class PlanExecutor(
    ExecutionStore store,
    VenueOrders orders,
    BlockDesk blocks,
    ReportOutbox outbox,
    TimeProvider time,
    ILogger<PlanExecutor> logger)
{
    public static readonly ActivitySource ActivitySource = new("RebalanceMesh.Execution");
    internal static readonly Meter Meter = new("RebalanceMesh.Execution");
    private static readonly Counter<long> CashCuts = Meter.CreateCounter<long>("rebalancemesh.execution.cash_cuts", description: "Routings cut to what the plan's cash pays for, by instrument.");
    private static readonly Histogram<double> Shortfall = Meter.CreateHistogram<double>("rebalancemesh.execution.shortfall", "bps", "Implementation shortfall per leg versus arrival.");
    private static readonly Counter<long> Replayed = Meter.CreateCounter<long>("rebalancemesh.execution.replayed", description: "Journaled answers replayed into restarted plan runs.");

    public async Task ExecuteAsync(PlanApproved plan, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("execute plan");
        activity?.SetTag("execution.plan_id", plan.PlanId);
        var execution = await store.GetExecutionAsync(plan.PlanId) ?? NewExecution(plan);
        if (IsFinal(execution.Status))
        {
            logger.LogInformation("Plan {PlanId} already executed ({Status}); redelivery ignored", plan.PlanId, execution.Status);
            return;
        }

        execution.Status = ExecutionStatus.Running;
        await store.SaveExecutionAsync(execution);

        var run = new PlanRun(RunMapping.ToRun(plan));
        var journal = await store.GetRunJournalAsync(plan.PlanId);
        activity?.SetTag("execution.replayed", journal.Count);
        if (journal.Count > 0)
        {
            // Resumed: what the last run committed and did not publish goes first, so the plan's reports stay in order.
            await outbox.RelayPlanAsync(plan.PlanId, cancellationToken);
        }

        Replayed.Add(journal.Count);
        var replayed = 0;
        var answered = new List<RunObservation>();
        var reports = new List<ExecutionReport>();
        for (var command = run.Start(); command is not Finished;)
        {
            RunObservation answer;
            if (replayed < journal.Count)
            {
                answer = journal[replayed++];
            }
            else
            {
                answer = await CarryOutAsync(plan, run, command, reports, cancellationToken);
                answered.Add(answer);
            }

            var cuts = run.Legs.Select(l => l.CashCuts).ToArray();
            command = run.Next(answer);
            if (answered.Count > 0 && !(answer is Published && command is Report))
            {
                // Journaled before anything else happens outside: a run of reports (the legs' ends and the plan's, one
                // after another) goes in one commit and one pipelined publish. Reports not yet committed when the host
                // dies were never published: the replayed run makes them again.
                await store.AppendRunJournalAsync(plan.PlanId, answered, reports);
                await outbox.PublishAsync(reports, cancellationToken);
                answered.Clear();
                reports.Clear();
            }

            if (answer is ChildrenDone or Rested or OperationDone)
            {
                RunMapping.Sync(execution, run);
                await store.SaveExecutionAsync(execution);
            }

            for (var i = 0; i < cuts.Length && replayed >= journal.Count; i++)
            {
                if (run.Legs[i].CashCuts > cuts[i])
                {
                    CashCuts.Add(1, new KeyValuePair<string, object?>("instrument", run.Legs[i].Leg.InstrumentId));
                    logger.LogWarning("Plan {PlanId} leg {LegId}: {Reason}", plan.PlanId, run.Legs[i].Leg.LegId, "a routing was cut to what the plan's cash pays for");
                }
            }
        }

        RunMapping.Sync(execution, run);
        execution.Status = run.Status switch
        {
            RunStatus.Completed => ExecutionStatus.Completed,
            RunStatus.PartiallyFilled => ExecutionStatus.PartiallyFilled,
            RunStatus.Cancelled => ExecutionStatus.Cancelled,
            _ => ExecutionStatus.Failed,
        };
        execution.Message = run.Message;
        await store.SaveExecutionAsync(execution);
        logger.LogInformation("Plan {PlanId} executed: {Status} ({Message})", plan.PlanId, execution.Status, run.Message);
    }

    /// <summary>
    /// Carries out one command of a run and says what happened; a Report command's report is added to
    /// <paramref name="reports"/>, committed with the answer into the outbox, then published.
    /// </summary>
    private async Task<RunObservation> CarryOutAsync(PlanApproved plan, PlanRun run, RunCommand command, List<ExecutionReport> reports, CancellationToken cancellationToken)
    {
        switch (command)
        {
            case CheckStop:
                return new StopChecked(await store.GetPendingStopAsync(plan.PlanId));
            case ReadMarkets read:
                return await orders.ReadMarketsAsync(read);

            case ReadVenues venues:
                return new VenuesRead(await orders.VenuesAsync(venues.Account));
            case SendChildren send:
                return await orders.SendChildrenAsync(plan, run, send, reportFills: true, cancellationToken);
            case JoinBlock join:
                return await blocks.JoinAsync(plan, join, cancellationToken);

            case RunOperation operation:
                return await OperateAsync(plan, plan.Legs.First(l => l.LegId == operation.LegId), operation.Quantity, cancellationToken);
            case Wait wait:
                await Task.Delay(wait.Delay, time, cancellationToken);
                return new Waited();
            case Rest rest:
                return await orders.RestAsync(plan, run.Leg(rest.LegId), rest, cancellationToken);
            case Report report:
                reports.Add(RunReport(plan, report.What));
                return new Published();
            default:
                throw new InvalidOperationException($"A plan run asked for {command}, which this host does not carry out.");
        }
    }

    /// <summary>A run's report for execution.reports (trade fills are reported where they are journaled, in <see cref="VenueOrders.SendAsync"/>).</summary>
    private ExecutionReport RunReport(PlanApproved plan, RunReport report)
    {
        switch (report.Kind)
        {
            case RunReportKind.Fill:
                var fill = report.Fill!;
                return PlanReports.New(plan, report.LegId, ReportKind.Fill, time.GetUtcNow(), r => r.Fill = new Fill
                {
                    FillId = fill.FillId,
                    ClientOrderId = fill.ClientOrderId,
                    Venue = fill.Venue,
                    InstrumentId = fill.InstrumentId,
                    Quantity = fill.Quantity,
                    Price = fill.Price,
                    Fee = 0m,
                    FilledAt = time.GetUtcNow().ToTimestamp(),
                });
            case RunReportKind.LegDone:
                if (report.Status is RunStatus.Filled or RunStatus.PartiallyFilled && report.ShortfallBps != 0)
                {
                    Shortfall.Record(report.ShortfallBps, new KeyValuePair<string, object?>("instrument", plan.Legs.First(l => l.LegId == report.LegId).InstrumentId));
                }

                return PlanReports.New(plan, report.LegId, ReportKind.LegDone, time.GetUtcNow(), r =>
                {
                    r.LegStatus = report.Status switch
                    {
                        RunStatus.Filled => ReportedLegStatus.Filled,
                        RunStatus.PartiallyFilled => ReportedLegStatus.PartiallyFilled,
                        RunStatus.Cancelled => ReportedLegStatus.Cancelled,
                        _ => ReportedLegStatus.Rejected,
                    };
                    r.ShortfallBps = report.ShortfallBps;
                    r.ShortfallVsPlanBps = report.ShortfallVsPlanBps;
                    r.Message = report.Message;
                });
            default:
                return PlanReports.New(plan, string.Empty, ReportKind.PlanDone, time.GetUtcNow(), r =>
                {
                    r.PlanStatus = report.Status switch
                    {
                        RunStatus.Completed => ReportedPlanStatus.Completed,
                        RunStatus.PartiallyFilled => ReportedPlanStatus.PartiallyFilled,
                        RunStatus.Cancelled => ReportedPlanStatus.Cancelled,
                        _ => ReportedPlanStatus.Failed,
                    };
                    r.Message = report.Message;
                });
        }
    }

    /// <summary>
    /// A cancel for a plan whose execution has not started (its PlanApproved has not arrived, or never will): the plan is
    /// recorded as cancelled, so a PlanApproved arriving later sends nothing, and its end is reported, so planning's
    /// plan ends too. When the plan started meanwhile, it sees the cancel before its next order instead.
    /// </summary>
    public async Task CancelBeforeStartAsync(PlanCancelRequested cancel, string reason, CancellationToken cancellationToken)
    {
        var report = PlanReports.New(new PlanApproved { PlanId = cancel.PlanId, PortfolioId = cancel.PortfolioId }, string.Empty, ReportKind.PlanDone, time.GetUtcNow(), r =>
        {
            r.PlanStatus = ReportedPlanStatus.Cancelled;
            r.Message = "cancelled before it started: " + reason;
        });
        if (!await store.TryCreateExecutionAsync(new PlanExecution { PlanId = cancel.PlanId, Status = ExecutionStatus.Cancelled, Message = "cancelled before it started: " + reason }, report))
        {
            return;
        }

        await outbox.PublishAsync([report], cancellationToken);
        logger.LogWarning("Plan {PlanId} cancelled before it started: {Reason}", cancel.PlanId, reason);
    }

    /// <summary>
    /// Ends a plan that cannot be run (its runs kept failing with errors): recorded FAILED with why, as far as it got,
    /// and its end reported so planning's plan ends too.
    /// </summary>
    public async Task FailAsync(PlanApproved plan, string reason, CancellationToken cancellationToken)
    {
        var execution = await store.GetExecutionAsync(plan.PlanId) ?? NewExecution(plan);
        if (IsFinal(execution.Status))
        {
            return;
        }

        execution.Status = ExecutionStatus.Failed;
        execution.Message = reason;
        var report = PlanReports.New(plan, string.Empty, ReportKind.PlanDone, time.GetUtcNow(), r =>
        {
            r.PlanStatus = ReportedPlanStatus.Failed;
            r.Message = reason;
        });
        await store.SaveExecutionAsync(execution, report);
        await outbox.PublishAsync([report], cancellationToken);
        logger.LogError("Plan {PlanId} of {PortfolioId} failed: {Reason}", plan.PlanId, plan.PortfolioId, reason);
    }

    /// <summary>A loan leg on its lending venue, a margin top-up or a collateral transfer on its trading venue, once (by plan and leg).</summary>
    private async Task<OperationDone> OperateAsync(PlanApproved plan, ApprovedLeg leg, decimal quantity, CancellationToken cancellationToken)
    {
        using var activity = ActivitySource.StartActivity("execute loan leg");
        activity?.SetTag("execution.leg_id", leg.LegId);
        activity?.SetTag("execution.venue", leg.Venue);
        activity?.SetTag("execution.loan_id", leg.LoanId);
        var kind = leg.Kind switch
        {
            LegKind.MarginTopUp => VenueOperationKind.MarginTopUp,
            LegKind.CollateralTransfer => VenueOperationKind.CollateralTransfer,
            LegKind.SupplyCollateral => VenueOperationKind.SupplyCollateral,
            LegKind.WithdrawCollateral => VenueOperationKind.WithdrawCollateral,
            LegKind.Borrow => VenueOperationKind.Borrow,
            LegKind.Repay => VenueOperationKind.Repay,
            _ => throw new ArgumentOutOfRangeException(nameof(leg), leg.Kind, "Not an operation leg."),
        };
        var operation = new VenueOperation($"{plan.PlanId}:{leg.LegId}", kind, plan.PortfolioId, leg.Venue, leg.InstrumentId, quantity, leg.LoanId, leg.FromVenue);
        var (accepted, done, reason) = orders.Gateway(leg.Venue) is { } gateway
            ? await gateway.ApplyAsync(operation, cancellationToken)
            : new VenueOperationResult(false, 0, VenueOrders.NoGateway(leg.Venue));
        if (!accepted)
        {
            logger.LogError("Plan {PlanId}: leg {LegId} refused: {Reason}", plan.PlanId, leg.LegId, reason);
        }

        return new OperationDone(accepted, done, reason ?? string.Empty);
    }

    /// <summary>A plan's execution state when it is accepted: every leg open, nothing filled.</summary>
    public static PlanExecution NewExecution(PlanApproved plan)
    {
        var execution = new PlanExecution { PlanId = plan.PlanId, Status = ExecutionStatus.Accepted };
        execution.Legs.AddRange(plan.Legs.OrderBy(l => l.Sequence).Select(l => new LegExecution
        {
            LegId = l.LegId,
            InstrumentId = l.InstrumentId,
            Side = l.Side,
            Quantity = l.Quantity,
            FilledQuantity = 0m,
            Fees = 0m,
        }));
        return execution;
    }

    public static bool IsFinal(ExecutionStatus status) =>
        status is ExecutionStatus.Completed or ExecutionStatus.PartiallyFilled or ExecutionStatus.Failed or ExecutionStatus.Cancelled;

}
