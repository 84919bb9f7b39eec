using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

public class ModelWeightCacheTests
{
    private static TargetPolicy Resolved(double weight) =>
        TargetPolicy.Of(new Dictionary<string, double> { ["A"] = weight }, TradeRules.Default, new DriftBands(0.05));

    [Fact]
    public async Task Weights_are_resolved_once_per_policy_version_and_day()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 25, 9, 0, 0, TimeSpan.Zero));
        var cache = new ModelWeightCache(time);
        var calls = 0;
        Task<TargetPolicy> Resolve()
        {
            calls++;
            return Task.FromResult(Resolved(calls / 10.0));
        }

        var policy = new Contracts.Planning.V1.Policy { PortfolioId = "p", Version = 3 };
        Assert.Equal(0.1, (await cache.GetAsync("p", policy, Resolve)).TargetOf("A"));
        time.Advance(TimeSpan.FromHours(14)); // 23:00, same day
        Assert.Equal(0.1, (await cache.GetAsync("p", policy, Resolve)).TargetOf("A"));
        Assert.Equal(1, calls);

        policy.Version = 4; // a changed policy resolves again
        Assert.Equal(0.2, (await cache.GetAsync("p", policy, Resolve)).TargetOf("A"));
        time.Advance(TimeSpan.FromHours(2)); // the next UTC day
        Assert.Equal(0.3, (await cache.GetAsync("p", policy, Resolve)).TargetOf("A"));
        Assert.Equal(3, calls);
    }
}
