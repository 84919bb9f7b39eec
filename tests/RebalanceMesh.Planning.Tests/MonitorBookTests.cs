using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Testing;
using StackExchange.Redis;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// The monitor's book in memory: it follows every write of a portfolio or a policy through the store's change stream,
/// reloads when it fell behind the stream's trimming, leaves out what it cannot read, and lets a market event touch
/// only the portfolios marked over what changed, valued in one pricing call. Planning and the real pricing service
/// run side by side on the in-process test server, on one Redis.
/// </summary>
public sealed class MonitorBookTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly PricingUnderTest _pricing;
    private readonly GrpcTestServer<Program> _planning;

    public MonitorBookTests(RedisServer redis)
    {
        _redis = redis;
        _pricing = new PricingUnderTest(redis);
        _planning = new GrpcTestServer<Program>(redis, PricingUnderTest.PlanningSettings, _pricing.Route);
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        await _pricing.WriteQuotesAsync([("DAX", 100m), ("CAC", 50m), ("SMI", 200m)]);
    }

    public async Task DisposeAsync()
    {
        await _planning.DisposeAsync();
        await _pricing.DisposeAsync();
    }

    private PlanningStore Store => _planning.Services.GetRequiredService<PlanningStore>();

    private MonitorBook Book => _planning.Services.GetRequiredService<MonitorBook>();

    private DriftMonitor Monitor => _planning.Services.GetRequiredService<DriftMonitor>();

    private async Task MonitoredAsync(string portfolioId, params (string Instrument, decimal Quantity)[] positions)
    {
        var portfolio = new Portfolio { PortfolioId = portfolioId, BaseCurrency = "EUR", Cash = 1_000m };
        portfolio.Positions.AddRange(positions.Select(p => new Position { InstrumentId = p.Instrument, Quantity = p.Quantity }));
        await Store.UpsertPortfolioAsync(portfolio, -1);
        var policy = new Policy { PortfolioId = portfolioId, AbsoluteBand = 0.05, ExecutionMode = ExecutionMode.Manual };
        policy.Targets.AddRange(positions.Select(p => new TargetWeight { InstrumentId = p.Instrument, Weight = 0.9 / positions.Length }));
        await Store.SetPolicyAsync(policy);
    }

    /// <summary>A tick on an instrument nobody holds, evaluated: the monitor's first pass, which covers the whole book.</summary>
    private async Task FirstPassAsync()
    {
        _pricing.Calls.Requests.Clear();
        var bus = _planning.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.MarketQuotes, new QuotesUpdated { AsOf = DateTimeOffset.UtcNow.ToTimestamp(), Prices = { new ConsolidatedPrice { InstrumentId = "NONE", Mid = 1m } } });
        await bus.WhenDeliveredAsync();
        await Monitor.ProcessAsync(CancellationToken.None);
    }

    private static IEnumerable<string> Ids(IEnumerable<MonitoredPortfolio> entries) => entries.Select(e => e.PortfolioId).Order(StringComparer.Ordinal);

    [Fact]
    public async Task An_event_evaluates_only_the_portfolios_marked_over_what_changed_with_one_pricing_call()
    {
        await MonitoredAsync("p-dax", ("DAX", 10m));
        await MonitoredAsync("p-smi", ("SMI", 5m));
        await MonitoredAsync("p-both", ("DAX", 5m), ("CAC", 20m));
        await Book.CatchUpAsync(CancellationToken.None);
        Assert.Equal(3, Book.Count);
        Assert.Equal(["p-both", "p-dax"], Ids(Book.Affected(["DAX"])));
        Assert.Equal(["p-both", "p-dax", "p-smi"], Ids(Book.Affected(["DAX", "SMI", "FTSE"])));

        // The first pass evaluates the whole book (no portfolio was evaluated before); after it, only what a tick touches.
        var bus = _planning.Services.GetRequiredService<InMemoryEventBus>();
        await FirstPassAsync();
        Assert.Equal(["CAC", "DAX", "SMI"], Assert.Single(_pricing.Calls.Requests).Items.Select(i => i.InstrumentId).Order(StringComparer.Ordinal));

        // DAX moved: p-dax and p-both are evaluated on one snapshot of DAX and CAC (p-smi's SMI is not asked for).
        _pricing.Calls.Requests.Clear();
        await bus.PublishAsync(Topics.MarketQuotes, new QuotesUpdated { AsOf = DateTimeOffset.UtcNow.ToTimestamp(), Prices = { new ConsolidatedPrice { InstrumentId = "DAX", Mid = 100m } } });
        await bus.WhenDeliveredAsync();
        await Monitor.ProcessAsync(CancellationToken.None);
        var request = Assert.Single(_pricing.Calls.Requests);
        Assert.Equal(["CAC", "DAX"], request.Items.Select(i => i.InstrumentId).Order(StringComparer.Ordinal));

        // A change made after the last event is in the book at the next: p-smi buys DAX, so it is marked over DAX too.
        var moved = (await Store.GetPortfolioAsync("p-smi"))!;
        moved.Positions.Add(new Position { InstrumentId = "DAX", Quantity = 1m });
        await Store.UpsertPortfolioAsync(moved, moved.Version);
        _pricing.Calls.Requests.Clear();
        await bus.PublishAsync(Topics.MarketQuotes, new QuotesUpdated { AsOf = DateTimeOffset.UtcNow.ToTimestamp(), Prices = { new ConsolidatedPrice { InstrumentId = "DAX", Mid = 100m } } });
        await bus.WhenDeliveredAsync();
        await Monitor.ProcessAsync(CancellationToken.None);
        Assert.Equal(["p-both", "p-dax", "p-smi"], Ids(Book.Affected(["DAX"])));
        Assert.Equal(["CAC", "DAX", "SMI"], Assert.Single(_pricing.Calls.Requests).Items.Select(i => i.InstrumentId).Order(StringComparer.Ordinal));

        // An instrument no portfolio is marked over touches nothing and asks pricing nothing.
        _pricing.Calls.Requests.Clear();
        await bus.PublishAsync(Topics.MarketQuotes, new QuotesUpdated { AsOf = DateTimeOffset.UtcNow.ToTimestamp(), Prices = { new ConsolidatedPrice { InstrumentId = "FTSE", Mid = 7_000m } } });
        await bus.WhenDeliveredAsync();
        await Monitor.ProcessAsync(CancellationToken.None);
        Assert.Empty(_pricing.Calls.Requests);
    }

    [Fact]
    public async Task A_book_that_fell_behind_the_trimmed_stream_reloads_and_an_unreadable_entry_is_left_out()
    {
        await MonitoredAsync("p1", ("DAX", 1m));
        await Book.CatchUpAsync(CancellationToken.None);

        // Three changes, then the stream trimmed to its last entry: the book never sees the first two as changes.
        await MonitoredAsync("p2", ("CAC", 1m));
        await MonitoredAsync("p3", ("SMI", 1m));
        var db = _redis.Connection!.GetDatabase();
        await db.StreamTrimAsync(PlanningStore.BookChangesKey, 1);
        await Book.CatchUpAsync(CancellationToken.None);
        Assert.Equal(["p1", "p2", "p3"], Ids(Book.Affected(["DAX", "CAC", "SMI"])));

        // A policy whose bytes are not a policy: logged, counted and left out; the rest of the book carries on.
        await db.StringSetAsync("pln:policy:p2", new byte[] { 0xFF, 0xFF, 0xFF, 0x01 });
        await db.StreamAddAsync(PlanningStore.BookChangesKey, [new NameValueEntry("portfolio", "p2"), new NameValueEntry("what", 2), new NameValueEntry("version", 9)]);
        await Book.CatchUpAsync(CancellationToken.None);
        Assert.Null(Book.Get("p2"));
        Assert.Equal(["p1", "p3"], Ids(Book.Affected(["DAX", "CAC", "SMI"])));

        // Its next good write puts it back.
        await Store.SetPolicyAsync(new Policy { PortfolioId = "p2", AbsoluteBand = 0.05, Targets = { new TargetWeight { InstrumentId = "CAC", Weight = 0.9 } } });
        await Book.CatchUpAsync(CancellationToken.None);
        Assert.NotNull(Book.Get("p2"));
    }

    [Fact]
    public async Task A_book_loaded_from_an_empty_stream_that_was_then_trimmed_reloads()
    {
        // Loaded before any change (the stream did not exist); then three portfolios arrive and the stream is trimmed to
        // its last change before the book catches up: it must not take the one change it can read for all there was.
        await Book.CatchUpAsync(CancellationToken.None);
        Assert.Equal(0, Book.Count);
        await MonitoredAsync("p1", ("DAX", 1m));
        await MonitoredAsync("p2", ("CAC", 1m));
        await MonitoredAsync("p3", ("SMI", 1m));
        await _redis.Connection!.GetDatabase().StreamTrimAsync(PlanningStore.BookChangesKey, 1);
        await Book.CatchUpAsync(CancellationToken.None);
        Assert.Equal(["p1", "p2", "p3"], Ids(Book.Affected(["DAX", "CAC", "SMI"])));
    }

    [Fact]
    public async Task A_change_entry_that_is_not_one_never_stops_the_monitor()
    {
        await MonitoredAsync("p1", ("DAX", 1m));
        await Book.CatchUpAsync(CancellationToken.None);

        // Someone writes junk into the change stream: an entry naming no portfolio (the book reloads whole — and so sees
        // p2, whose own change entry is junk too), then one whose fields are not numbers (p1 is read again).
        var db = _redis.Connection!.GetDatabase();
        await MonitoredAsync("p2", ("CAC", 1m));
        await db.StreamAddAsync(PlanningStore.BookChangesKey, [new NameValueEntry("junk", "x")]);
        await db.StreamAddAsync(PlanningStore.BookChangesKey, [new NameValueEntry("portfolio", "p1"), new NameValueEntry("what", "policy?"), new NameValueEntry("version", "-")]);
        await Book.CatchUpAsync(CancellationToken.None);
        Assert.Equal(["p1", "p2"], Ids(Book.Affected(["DAX", "CAC"])));

        // The monitor goes on evaluating: the next event is handled (one valuation for p1's DAX).
        var bus = _planning.Services.GetRequiredService<InMemoryEventBus>();
        await FirstPassAsync();
        _pricing.Calls.Requests.Clear();
        await db.StreamAddAsync(PlanningStore.BookChangesKey, [new NameValueEntry("portfolio", string.Empty), new NameValueEntry("what", 1), new NameValueEntry("version", 1)]);
        await bus.PublishAsync(Topics.MarketQuotes, new QuotesUpdated { AsOf = DateTimeOffset.UtcNow.ToTimestamp(), Prices = { new ConsolidatedPrice { InstrumentId = "DAX", Mid = 100m } } });
        await bus.WhenDeliveredAsync();
        await Monitor.ProcessAsync(CancellationToken.None);
        Assert.Equal(["DAX"], Assert.Single(_pricing.Calls.Requests).Items.Select(i => i.InstrumentId));
    }
}
