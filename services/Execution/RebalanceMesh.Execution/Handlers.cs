using RebalanceMesh.Domain;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;

namespace RebalanceMesh.Execution;

/// <summary>
/// Accepts each approved plan into the run queue and starts it on this replica when there is room; the event is
/// acknowledged once the plan is accepted (it runs even if this replica dies now: another takes its lease). A
/// redelivered plan is accepted once; one that has ended is ignored.
/// </summary>
public sealed class PlanApprovedHandler(RunQueue queue, PlanRunner runner, ILogger<PlanApprovedHandler> logger) : IEventHandler<PlanApproved>
{
    public async Task HandleAsync(PlanApproved message, EventContext context, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(message.PlanId) || message.Legs.Count == 0)
        {
            throw new MalformedEventException("A PlanApproved event needs a plan id and at least one leg.");
        }

        if (Unreadable(message.CashBudget) || message.Legs.Any(l => Unreadable(l.CashChange)))
        {
            throw new MalformedEventException($"Plan {message.PlanId}: cash_budget and every leg's cash_change are decimals when set.");
        }

        var acceptance = await queue.AcceptAsync(message, PlanExecutor.NewExecution(message), System.Diagnostics.Activity.Current?.Id);
        if (acceptance == PlanAcceptance.Ended)
        {
            logger.LogInformation("Plan {PlanId} has ended already; redelivery ignored", message.PlanId);
            return;
        }

        await runner.TryStartAsync(message);
    }

    private static bool Unreadable(DecimalValue? value) => value is not null && !DecimalValue.TryParse(value, out _);
}

/// <summary>
/// Records a client's cancel of a plan (from planning); the plan stops before its next child order, or before its
/// first when it has not started (the cancel may land before the plan does: they travel on different topics).
/// </summary>
public sealed class PlanCancelHandler(ExecutionStore store, PlanExecutor executor, ILogger<PlanCancelHandler> logger) : IEventHandler<PlanCancelRequested>
{
    public async Task HandleAsync(PlanCancelRequested message, EventContext context, CancellationToken cancellationToken)
    {
        var check = new RequestValidator();
        if (!check.RequireIdentifier(message.PlanId, "plan_id") || !check.RequireReason(message.Reason))
        {
            throw new MalformedEventException($"A PlanCancelRequested event needs a plan id and a reason of at most {RequestValidator.MaxReasonLength} characters.");
        }

        var reason = message.Reason.Length > 0 ? message.Reason : "cancelled by " + message.RequestedBy;
        var execution = await store.GetExecutionAsync(message.PlanId);
        if (execution is not null && PlanExecutor.IsFinal(execution.Status))
        {
            logger.LogInformation("Cancel of plan {PlanId} by {Caller} arrived after it ended ({Status})", message.PlanId, message.RequestedBy, execution.Status);
            return;
        }

        await store.RequestCancelAsync(message.PlanId, reason);
        logger.LogWarning("Plan {PlanId} of {PortfolioId} cancelled by {Caller}: {Reason}", message.PlanId, message.PortfolioId, message.RequestedBy, reason);
        if (execution is null)
        {
            await executor.CancelBeforeStartAsync(message, reason, cancellationToken);
        }
    }
}

/// <summary>Records the trading halt; executing plans stop before their next leg.</summary>
public sealed class TradingHaltHandler(ExecutionStore store, ILogger<TradingHaltHandler> logger) : IEventHandler<TradingHaltChanged>
{
    public async Task HandleAsync(TradingHaltChanged message, EventContext context, CancellationToken cancellationToken)
    {
        await store.SetHaltAsync(message.Halted, message.Reason);
        logger.LogWarning("Trading halt {Halted}: {Reason}", message.Halted, message.Reason);
    }
}
