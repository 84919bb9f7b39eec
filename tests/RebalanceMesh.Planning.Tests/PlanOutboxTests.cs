using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// A plan stored approved but never published (its replica stopped between the two) reaches execution from the outbox
/// once its grace has passed, exactly once; a plan that moved on leaves the outbox unsent. On virtual time.
/// </summary>
public sealed class PlanOutboxTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 5, 9, 0, 0, TimeSpan.Zero));
    private readonly GrpcTestServer<Program> _server;

    public PlanOutboxTests(RedisServer redis)
    {
        _redis = redis;
        _server = Host(backgroundRounds: false); // the rounds are called by the test, at the times it chooses
    }

    /// <param name="sent">With background rounds: completed with the first plan the host publishes on plans.approved.</param>
    private GrpcTestServer<Program> Host(bool backgroundRounds, TaskCompletionSource<PlanApproved>? sent = null) => new(_redis, new Dictionary<string, string?>
    {
        ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
        ["Services:risk:Grpc"] = "http://127.0.0.1:1",
    }, services =>
    {
        services.AddSingleton<TimeProvider>(_time);
        if (!backgroundRounds)
        {
            services.Remove(services.Single(d => d.ServiceType == typeof(Microsoft.Extensions.Hosting.IHostedService) && d.ImplementationType == typeof(PlanOutbox)));
        }
        else if (sent is not null)
        {
            services.AddSingleton<IEventBus>(sp => new SignallingBus(sp.GetRequiredService<InMemoryEventBus>(), sent));
        }
    });

    /// <summary>The host's own bus, telling the test when a plan is published.</summary>
    private sealed class SignallingBus(InMemoryEventBus inner, TaskCompletionSource<PlanApproved> sent) : IEventBus
    {
        public async Task PublishAsync(string topic, IMessage message, CancellationToken cancellationToken = default)
        {
            await inner.PublishAsync(topic, message, cancellationToken);
            if (message is PlanApproved approved)
            {
                sent.TrySetResult(approved);
            }
        }
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private Plan Stored(string planId, string portfolioId, PlanStatus status) => new()
    {
        PlanId = planId,
        PortfolioId = portfolioId,
        Status = status,
        CreatedAt = _time.GetUtcNow().ToTimestamp(),
        Legs = { new PlanLeg { LegId = "L1", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending, ReferencePrice = 100m } },
    };

    private string[] Sent() => [.. _server.Services.GetRequiredService<InMemoryEventBus>().Published
        .Where(e => e.Topic == Topics.PlansApproved).Select(e => e.ReadData(PlanApproved.Parser).PlanId)];

    private async Task<int> PublishOutboxAsync(string owner)
    {
        await using var scope = _server.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<PlanSubmitter>().PublishOutboxAsync(owner, CancellationToken.None);
    }

    [Fact]
    public async Task An_approved_plan_never_published_is_sent_once_after_its_grace_and_one_that_moved_on_is_dropped()
    {
        var store = _server.Services.GetRequiredService<PlanningStore>();
        Assert.True((await store.CreatePlanAsync(Stored("plan-lost", "p1", PlanStatus.Approved), "k1")).Stored); // stored; the replica stops here
        Assert.True((await store.CreatePlanAsync(Stored("plan-ended", "p2", PlanStatus.Approved), "k2")).Stored);
        await store.UpdatePlanAsync("plan-ended", p => p.Status = PlanStatus.Completed); // published and executed meanwhile
        Assert.True((await store.CreatePlanAsync(Stored("plan-none", "p3", PlanStatus.NoAction), "k3")).Stored); // nothing to publish

        // Within the grace a submission may still be publishing: nothing is sent.
        _time.Advance(PlanOutbox.Grace - TimeSpan.FromSeconds(1));
        Assert.Equal(0, await PublishOutboxAsync("replica-a"));
        Assert.Empty(Sent());

        // Past it: the lost plan is sent (with its legs), the ended one dropped, and a second round or replica sends nothing more.
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(1, await PublishOutboxAsync("replica-a"));
        Assert.Equal(["plan-lost"], Sent());
        Assert.Equal("L1", _server.Services.GetRequiredService<InMemoryEventBus>().Published.Single(e => e.Topic == Topics.PlansApproved).ReadData(PlanApproved.Parser).Legs.Single().LegId);
        Assert.Equal(0, await PublishOutboxAsync("replica-b"));
        Assert.Empty(await store.OutboxDueAsync(DateTimeOffset.MaxValue, 100));
        Assert.Equal(["plan-lost"], Sent());
    }

    [Fact]
    public async Task A_plan_claimed_by_one_replica_is_not_sent_by_another_and_the_background_round_sends_it_on_virtual_time()
    {
        var store = _server.Services.GetRequiredService<PlanningStore>();
        Assert.True((await store.CreatePlanAsync(Stored("plan-lost", "p1", PlanStatus.Approved), "k1")).Stored);
        _time.Advance(PlanOutbox.Grace + TimeSpan.FromSeconds(1));

        // Another replica holds the claim (it is sending it): this one leaves it.
        Assert.True(await store.ClaimOutboxAsync("plan-lost", "replica-b", TimeSpan.FromMinutes(5)));
        Assert.Equal(0, await PublishOutboxAsync("replica-a"));
        Assert.Empty(Sent());
        await _redis.Connection!.GetDatabase().KeyDeleteAsync("pln:outbox-claim:plan-lost"); // replica-b died; its claim lapses

        // A host's own round runs every Interval of the (virtual) clock: one interval after it started, it sends the plan.
        var sent = new TaskCompletionSource<PlanApproved>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var replica = Host(backgroundRounds: true, sent);
        _ = replica.Server; // started: its timer exists
        _time.Advance(PlanOutbox.Interval);
        Assert.Equal("plan-lost", (await sent.Task.WaitAsync(TimeSpan.FromSeconds(30))).PlanId);
        Assert.Equal(["plan-lost"], replica.Services.GetRequiredService<InMemoryEventBus>().Published.Where(e => e.Topic == Topics.PlansApproved).Select(e => e.ReadData(PlanApproved.Parser).PlanId));
        Assert.Empty(Sent());
    }
}
