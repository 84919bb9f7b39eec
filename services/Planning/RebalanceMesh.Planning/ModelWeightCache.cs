using System.Collections.Concurrent;
using RebalanceMesh.Planning.Core;
using WireReason = RebalanceMesh.Contracts.Planning.V1.DriftReason;

namespace RebalanceMesh.Planning;

/// <summary>A policy resolved by its target model: the targets, what the model and the risk limits decided, and when.</summary>
public sealed record ResolvedTargets(TargetPolicy Policy, IReadOnlyList<WireReason> Reasons, DateTimeOffset ComputedAt);

/// <summary>
/// The cache of resolved policies (target weights set by their model) that the monitor and the policy read path share.
/// A computed model's weights come from daily history, so they are resolved once per policy version and UTC day
/// instead of on every quote event; a new policy version or a new day resolves again. Per replica and in memory:
/// losing it costs one risk call.
/// </summary>
public sealed class ModelWeightCache(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, (long Version, DateOnly Day, ResolvedTargets Resolved)> _entries = new(StringComparer.Ordinal);

    public async Task<TargetPolicy> GetAsync(string portfolioId, Contracts.Planning.V1.Policy policy, Func<Task<TargetPolicy>> resolve) =>
        (await GetResolvedAsync(portfolioId, policy, async () => (await resolve(), []))).Policy;

    /// <summary>The policy's resolution for this version and day, resolving it when there is none yet.</summary>
    public async Task<ResolvedTargets> GetResolvedAsync(string portfolioId, Contracts.Planning.V1.Policy policy, Func<Task<(TargetPolicy Policy, IReadOnlyList<WireReason> Reasons)>> resolve)
    {
        var today = Today();
        if (_entries.TryGetValue(portfolioId, out var entry) && entry.Version == policy.Version && entry.Day == today)
        {
            return entry.Resolved;
        }

        var (resolved, reasons) = await resolve();
        return Put(portfolioId, policy.Version, resolved, reasons);
    }

    /// <summary>Records a resolution made elsewhere (SetPolicy resolves the policy it stores).</summary>
    public ResolvedTargets Put(string portfolioId, long version, TargetPolicy resolved, IReadOnlyList<WireReason> reasons)
    {
        var entry = new ResolvedTargets(resolved, reasons, time.GetUtcNow());
        _entries[portfolioId] = (version, Today(), entry);
        return entry;
    }

    private DateOnly Today() => DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
}
