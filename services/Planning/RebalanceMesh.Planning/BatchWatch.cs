using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Planning.V1;

namespace RebalanceMesh.Planning;

/// <summary>
/// A batch's progress as one watcher sees it: every plan's status (from its record, then from the plans as they
/// change), the counts by status, and the plans changed since the last message.
/// </summary>
public sealed class BatchWatch
{
    private readonly string _batchKey;
    private readonly Dictionary<string, BatchPlanState> _plans;
    private readonly Dictionary<string, BatchPlanState> _changed;

    public BatchWatch(BatchRecord record)
    {
        _batchKey = record.BatchKey;
        _plans = record.Plans.ToDictionary(p => p.PlanId, p => p.Clone(), StringComparer.Ordinal);
        _changed = new Dictionary<string, BatchPlanState>(_plans, StringComparer.Ordinal); // the first message lists every plan
    }

    /// <summary>The plans that have not ended.</summary>
    public string[] OpenPlanIds => _plans.Values.Where(p => !p.Status.IsFinal()).Select(p => p.PlanId).ToArray();

    /// <summary>Takes in plans as read or broadcast; those not in the batch, or unchanged, are ignored.</summary>
    public void Apply(IEnumerable<Plan?> plans)
    {
        foreach (var plan in plans)
        {
            if (plan is null || !_plans.TryGetValue(plan.PlanId, out var known) || (known.Status == plan.Status && known.StatusMessage == plan.StatusMessage))
            {
                continue;
            }

            known.Status = plan.Status;
            known.StatusMessage = plan.StatusMessage;
            _changed[plan.PlanId] = known;
        }
    }

    /// <summary>The next message when something changed since the last (the first always), or null.</summary>
    public BatchProgress? Next(DateTimeOffset now)
    {
        if (_changed.Count == 0)
        {
            return null;
        }

        var progress = new BatchProgress
        {
            BatchKey = _batchKey,
            Plans = _plans.Count,
            AsOf = now.ToTimestamp(),
            Approved = Count(PlanStatus.Approved),
            Executing = Count(PlanStatus.Executing),
            Completed = Count(PlanStatus.Completed),
            PartiallyFilled = Count(PlanStatus.PartiallyFilled),
            Failed = Count(PlanStatus.Failed),
            Cancelled = Count(PlanStatus.Cancelled),
            Done = _plans.Values.All(p => p.Status.IsFinal()),
        };
        progress.Changed.AddRange(_changed.Values.OrderBy(p => p.PortfolioId, StringComparer.Ordinal).Select(p => p.Clone()));
        _changed.Clear();
        return progress;
    }

    private int Count(PlanStatus status) => _plans.Values.Count(p => p.Status == status);
}
