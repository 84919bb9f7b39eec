using System.Collections.Concurrent;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Concurrent valuations share pricing calls: what arrives while a call is in flight goes in the next one, each caller
/// gets exactly its instruments, and a failed call fails every request it carried. Against the real pricing service on
/// the in-process test server, whose first call is held until the others have queued.
/// </summary>
public sealed class PriceBatcherTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly PricingUnderTest _pricing;

    public PriceBatcherTests(RedisServer redis)
    {
        _redis = redis;
        _pricing = new PricingUnderTest(redis);
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        await _pricing.WriteQuotesAsync(Enumerable.Range(0, 20).Select(i => ($"I{i:D2}", 100m + i)), size: 10m);
    }

    public async Task DisposeAsync() => await _pricing.DisposeAsync();

    [Fact]
    public async Task Requests_made_while_a_call_is_in_flight_share_the_next_call_and_each_gets_its_own_instruments()
    {
        var client = new PricingService.PricingServiceClient(_pricing.Host.CreateMeshInvoker());
        await using var batcher = new PriceBatcher(client);

        // The first request's call is held at pricing; 15 more arrive meanwhile, each for two instruments of 20.
        _pricing.Calls.HoldFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = batcher.PriceAsync(["I00"], CancellationToken.None);
        await _pricing.Calls.FirstArrived.Task;
        var rest = Enumerable.Range(1, 15).Select(k => (Asked: new[] { $"I{k:D2}", $"I{(k + 4) % 20:D2}" }, Task: (Task<IReadOnlyList<InstrumentValuation>>?)null)).ToArray();
        for (var k = 0; k < rest.Length; k++)
        {
            rest[k].Task = batcher.PriceAsync(rest[k].Asked, CancellationToken.None);
        }

        _pricing.Calls.HoldFirst.SetResult();
        Assert.Equal(["I00"], (await first).Select(v => v.InstrumentId));
        foreach (var (asked, task) in rest)
        {
            var valued = await task!;
            Assert.Equal(asked, valued.Select(v => v.InstrumentId));
            Assert.All(valued, v => Assert.Equal(100m + int.Parse(v.InstrumentId[1..], System.Globalization.CultureInfo.InvariantCulture), v.Price.ToDecimal()));
        }

        // Two calls in all: the held one, then one for everything that queued behind it (each instrument asked once).
        Assert.Equal(2, _pricing.Calls.Requests.Count);
        var second = _pricing.Calls.Requests.Last();
        Assert.Equal(rest.SelectMany(r => r.Asked).Distinct().Order(), second.Items.Select(i => i.InstrumentId).Order());
    }

    [Fact]
    public async Task A_failed_call_fails_every_request_it_carried_and_the_next_ones_are_served()
    {
        var client = new PricingService.PricingServiceClient(_pricing.Host.CreateInvoker()); // no mesh credential: pricing refuses
        await using var batcher = new PriceBatcher(client);
        var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => batcher.PriceAsync(["I01"], CancellationToken.None));
        Assert.Equal(Grpc.Core.StatusCode.Unauthenticated, refused.StatusCode);

        await using var good = new PriceBatcher(new PricingService.PricingServiceClient(_pricing.Host.CreateMeshInvoker()));
        Assert.Single(await good.PriceAsync(["I01"], CancellationToken.None));
    }
}
