using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning;

/// <summary>
/// Consumes market.quotes: keeps the latest mids, re-marks every portfolio that has a policy and evaluates its
/// bands. Each evaluation is logged with its reasons when it breaches, and the total drift is exported as a gauge.
/// </summary>
public sealed class DriftMonitor(PlanningStore store, ILogger<DriftMonitor> logger) : IEventHandler<QuotesUpdated>
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly ConcurrentDictionary<string, decimal> Mids = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, double> Drift = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, bool> Breached = new(StringComparer.Ordinal);
    private static readonly Counter<long> Evaluations = Meter.CreateCounter<long>("rebalancemesh.planning.evaluations", description: "Policy evaluations by the monitor.");

    static DriftMonitor()
    {
        Meter.CreateObservableGauge("rebalancemesh.planning.total_drift", () =>
            Drift.Select(kv => new Measurement<double>(kv.Value, new KeyValuePair<string, object?>("portfolio_id", kv.Key))),
            description: "Total drift Σ|w − w*| / 2 of each monitored portfolio.");
    }

    public async Task HandleAsync(QuotesUpdated message, EventContext context, CancellationToken cancellationToken)
    {
        foreach (var price in message.Prices)
        {
            if (Contracts.Common.V1.DecimalValue.TryParse(price.Mid, out var mid))
            {
                Mids[price.InstrumentId] = mid;
            }
        }

        foreach (var portfolioId in await store.GetPolicyPortfolioIdsAsync())
        {
            var portfolio = await store.GetPortfolioAsync(portfolioId);
            var policy = await store.GetPolicyAsync(portfolioId);
            if (portfolio is null || policy is null)
            {
                continue;
            }

            var snapshot = portfolio.ToDomain();
            var targetPolicy = policy.ToDomain();
            var needed = snapshot.Holdings.Select(h => h.InstrumentId).Concat(targetPolicy.Targets.Keys).Distinct().ToArray();
            if (!needed.All(Mids.ContainsKey))
            {
                continue;
            }

            var marked = PortfolioMarking.Mark(snapshot, targetPolicy, needed.ToDictionary(i => i, i => Mids[i], StringComparer.Ordinal));
            var evaluation = DriftEvaluator.Evaluate(marked, targetPolicy);
            Evaluations.Add(1);
            Drift[portfolioId] = evaluation.TotalDrift;
            var wasBreached = Breached.TryGetValue(portfolioId, out var before) && before;
            Breached[portfolioId] = evaluation.Breached;
            if (evaluation.Breached && !wasBreached)
            {
                logger.LogWarning("Portfolio {PortfolioId} breached its policy: {Reasons}", portfolioId,
                    string.Join("; ", evaluation.Reasons.Where(r => r.Breached).Select(r => r.Message)));
            }
        }
    }
}
