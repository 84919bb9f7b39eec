using System.Collections.Concurrent;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning;

/// <summary>
/// The monitor's cache of resolved policies (target weights set by their model). A computed model's weights come from
/// daily history, so they are resolved once per policy version and UTC day instead of on every quote event; a new
/// policy version or a new day resolves again. Per replica and in memory: losing it costs one risk call.
/// </summary>
public sealed class ModelWeightCache(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, (long Version, DateOnly Day, TargetPolicy Policy)> _entries = new(StringComparer.Ordinal);

    public async Task<TargetPolicy> GetAsync(string portfolioId, Contracts.Planning.V1.Policy policy, Func<Task<TargetPolicy>> resolve)
    {
        var today = DateOnly.FromDateTime(time.GetUtcNow().UtcDateTime);
        if (_entries.TryGetValue(portfolioId, out var entry) && entry.Version == policy.Version && entry.Day == today)
        {
            return entry.Policy;
        }

        var resolved = await resolve();
        _entries[portfolioId] = (policy.Version, today, resolved);
        return resolved;
    }
}
