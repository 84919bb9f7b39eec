using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;

namespace RebalanceMesh.Execution;

/// <summary>Executes each approved plan; a redelivered plan resumes from the journal.</summary>
public sealed class PlanApprovedHandler(PlanExecutor executor) : IEventHandler<PlanApproved>
{
    public Task HandleAsync(PlanApproved message, EventContext context, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(message.PlanId) || message.Legs.Count == 0)
        {
            throw new MalformedEventException("A PlanApproved event needs a plan id and at least one leg.");
        }

        if (Unreadable(message.CashBudget) || message.Legs.Any(l => Unreadable(l.CashChange)))
        {
            throw new MalformedEventException($"Plan {message.PlanId}: cash_budget and every leg's cash_change are decimals when set.");
        }

        return executor.ExecuteAsync(message, cancellationToken);
    }

    private static bool Unreadable(DecimalValue? value) => value is not null && !DecimalValue.TryParse(value, out _);
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
