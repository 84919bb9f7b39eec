using System.Diagnostics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;

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
