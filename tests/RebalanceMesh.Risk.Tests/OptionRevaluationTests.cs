extern alias pricinghost;

using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;
using PricingProgram = pricinghost::Program;

namespace RebalanceMesh.Risk.Tests;

/// <summary>
/// Risk with the real pricing service beside it (both on the in-process test server, one Redis): options revalued in
/// full through pricing's valuation under each historical day and each margin-grid scenario, checked against scipy
/// (tests/reference/risk_reference.py, "option book"), and margin reported per account.
/// </summary>
public sealed class OptionRevaluationTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    // Valuation time fixed so the options have exactly 0.25 years (Actual/365) to expiry.
    private static readonly DateTimeOffset Now = new(2026, 1, 5, 12, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset Expiry = Now.AddDays(365 * 0.25);

    private readonly RedisServer _redis;
    private readonly GrpcTestServer<PricingProgram> _pricing;
    private readonly GrpcTestServer<Program> _risk;
    private readonly RiskService.RiskServiceClient _client;
    private readonly DeadlineRecorder _pricingCalls = new();

    public OptionRevaluationTests(RedisServer redis)
    {
        _redis = redis;
        _pricing = new GrpcTestServer<PricingProgram>(redis,
            new Dictionary<string, string?> { ["Pricing:Feed"] = "none", ["Pricing:DefaultVolatility"] = "0.2", ["Pricing:DefaultRate"] = "0.03" },
            services =>
            {
                services.AddSingleton<TimeProvider>(new FakeTimeProvider(Now));
                services.AddSingleton(_pricingCalls);
                services.Configure<Grpc.AspNetCore.Server.GrpcServiceOptions>(o => o.Interceptors.Add<DeadlineRecorder>());
            });
        _risk = new GrpcTestServer<Program>(redis,
            new Dictionary<string, string?> { ["Services:pricing:Grpc"] = "http://localhost" },
            services => services.AddGrpcClient<PricingService.PricingServiceClient>().ConfigurePrimaryHttpMessageHandler(() => _pricing.Server.CreateHandler()));
        _client = new RiskService.RiskServiceClient(_risk.CreateMeshInvoker());
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        var store = new MarketStateStore(_redis.Connection!, Options.Create(new MarketStateOptions()), new FakeTimeProvider(Now));

        // DAX history: the reference's last 250 daily log returns, ending today at exactly 1000 — today's quote (mid
        // 1000) rewrites today's close with the same value, so the returns stay the reference's.
        var returns = RiskReferenceTests.LastReturns(250);
        var today = DailyClose.DayOf(Now);
        var level = 1000.0 / Math.Exp(Enumerable.Range(0, returns.Days).Sum(t => returns.Values[t, 0]));
        var closes = new List<DailyClose> { new(today - returns.Days, level) };
        for (var t = 0; t < returns.Days; t++)
        {
            level *= Math.Exp(returns.Values[t, 0]);
            closes.Add(new DailyClose(today - returns.Days + t + 1, t == returns.Days - 1 ? 1000.0 : level));
        }

        await store.UpsertDailyClosesAsync("DAX", closes);
        await store.WriteQuotesAsync([new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = 999.5m, Ask = 1000.5m, BidSize = 10m, AskSize = 10m, Timestamp = Timestamp.FromDateTimeOffset(Now) }]);
        await store.UpsertInstrumentsAsync([Option("DAX-C1000", 1000m, OptionRight.Call), Option("DAX-P950", 950m, OptionRight.Put)]);
    }

    public async Task DisposeAsync()
    {
        await _risk.DisposeAsync();
        await _pricing.DisposeAsync();
    }

    private static Instrument Option(string id, decimal strike, OptionRight right) => new()
    {
        InstrumentId = id,
        Kind = InstrumentKind.Option,
        UnderlyingId = "DAX",
        QuoteCurrency = "EUR",
        Strike = strike,
        Expiry = Timestamp.FromDateTimeOffset(Expiry),
        OptionRight = right,
    };

    /// <summary>50 DAX and 10 calls in account SIM-A, 8 short puts in SIM-B.</summary>
    private static AssessPortfolioRequest Book() => new()
    {
        Holdings =
        {
            new Holding { InstrumentId = "DAX", Quantity = 50m, Price = 1000m, Venue = "SIM-A" },
            new Holding { InstrumentId = "DAX-C1000", Quantity = 10m, Venue = "SIM-A" },
            new Holding { InstrumentId = "DAX-P950", Quantity = -8m, Venue = "SIM-B" },
        },
        Settings = new RiskSettings { LookbackDays = 250, ConfidenceLevels = { 0.95, 0.99 }, Methods = { VarMethod.Historical } },
    };

    [Fact]
    public async Task The_callers_deadline_reaches_pricing_through_risk()
    {
        // Risk revalues the options through pricing within the deadline of the call it serves (7 s here), not with its
        // own 10 s default: a caller that gives up releases the whole chain.
        var deadline = DateTime.UtcNow.AddSeconds(7);
        await _client.AssessPortfolioAsync(Book(), deadline: deadline);
        Assert.NotEmpty(_pricingCalls.Deadlines);
        Assert.All(_pricingCalls.Deadlines, d => Assert.InRange((d - deadline).TotalMilliseconds, -1_000, 1_000));
    }

    /// <summary>Test instrumentation on pricing: the deadline each incoming call carries.</summary>
    private sealed class DeadlineRecorder : Grpc.Core.Interceptors.Interceptor
    {
        public System.Collections.Concurrent.ConcurrentBag<DateTime> Deadlines { get; } = [];

        public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, Grpc.Core.ServerCallContext context, Grpc.Core.UnaryServerMethod<TRequest, TResponse> continuation)
        {
            Deadlines.Add(context.Deadline);
            return continuation(request, context);
        }
    }

    [Fact]
    public async Task Historical_VaR_revalues_options_in_full_and_matches_scipy()
    {
        var response = await _client.AssessPortfolioAsync(Book());

        // Prices from pricing's Black–Scholes (QuantLib-checked elsewhere) agree with scipy's formula.
        var call = response.Positions.Single(p => p.InstrumentId == "DAX-C1000");
        var put = response.Positions.Single(p => p.InstrumentId == "DAX-P950");
        Assert.Equal(10 * 43.57619333457558, call.MarketValue, 1e-6);
        Assert.Equal(-8 * 16.691197427114957, put.MarketValue, 1e-6);
        Assert.Equal(50_000 + call.MarketValue + put.MarketValue, response.NetValue, 1e-6);

        // Each day's P&L is the full repricing of both options plus the spot: VaR and CVaR match the reference, and
        // differ from what the delta approximation alone would give.
        var h95 = response.Estimates.Single(e => e.Confidence == 0.95);
        var h99 = response.Estimates.Single(e => e.Confidence == 0.99);
        Assert.Equal(1406.9832140229441, h95.Var, 1e-4);
        Assert.Equal(1811.2008663495403, h95.Cvar, 1e-4);
        Assert.Equal(1900.448453972807, h99.Var, 1e-4);
        Assert.Equal(2455.6498158256277, h99.Cvar, 1e-4);

        var deltaOnly = response.Positions.Sum(p => p.Exposure);
        Assert.Equal(deltaOnly, response.Greeks.Single(g => g.UnderlyingId == "DAX").DeltaNotional, 1e-6);
    }

    [Fact]
    public async Task Margin_is_reported_for_the_whole_book_and_per_account()
    {
        var response = await _client.AssessPortfolioAsync(Book());

        // Portfolio margin: the worst loss over the ±15 % × ±30 % vol grid, options revalued in full (scipy).
        Assert.Equal(8589.706027991084, response.Margin.PortfolioMaintenance, 1e-4);
        Assert.Equal(1.25 * 8589.706027991084, response.Margin.PortfolioInitial, 1e-4);
        Assert.Equal(["SIM-A", "SIM-B"], response.VenueMargins.Select(v => v.Venue));
        var simA = response.VenueMargins[0].Margin;
        var simB = response.VenueMargins[1].Margin;
        Assert.Equal(7932.749040231845, simA.PortfolioMaintenance, 1e-4);
        Assert.Equal(721.8804635209399, simB.PortfolioMaintenance, 1e-4);

        // Standard margin: spot and long calls need none; the short puts need their premium plus 15 % (initial) or
        // 10 % (maintenance) of the underlying's notional, all of it in SIM-B.
        var premium = 8 * 16.691197427114957;
        Assert.Equal(0, simA.StandardInitial, 12);
        Assert.Equal(premium + (0.15 * 8 * 1000), simB.StandardInitial, 1e-6);
        Assert.Equal(premium + (0.10 * 8 * 1000), simB.StandardMaintenance, 1e-6);
        Assert.Equal(simB.StandardInitial, response.Margin.StandardInitial, 1e-9);
        Assert.Equal("SIM-B", response.Positions.Single(p => p.InstrumentId == "DAX-P950").Venue);
    }

    [Fact]
    public async Task An_instrument_may_sit_in_two_accounts_but_only_once_in_each()
    {
        // Long DAX in one account, short in another: the accounts each carry the loss of a 15 % move; crossed, they net.
        var hedged = new AssessPortfolioRequest
        {
            Holdings =
            {
                new Holding { InstrumentId = "DAX", Quantity = 40m, Price = 1000m, Venue = "SIM-A" },
                new Holding { InstrumentId = "DAX", Quantity = -40m, Price = 1000m, Venue = "SIM-C" },
            },
            Cash = 80_000m,
            Settings = new RiskSettings { LookbackDays = 250 },
        };
        var response = await _client.AssessPortfolioAsync(hedged);
        Assert.Equal(0, response.Margin.PortfolioMaintenance, 9);
        Assert.All(response.VenueMargins, v => Assert.Equal(0.15 * 40_000, v.Margin.PortfolioMaintenance, 6));

        hedged.Holdings[1].Venue = "SIM-A";
        await RpcAssert.InvalidArgumentAsync(() => _client.AssessPortfolioAsync(hedged).ResponseAsync, "holdings[1].instrument_id");
        hedged.Holdings[1].Venue = "not a venue!";
        await RpcAssert.InvalidArgumentAsync(() => _client.AssessPortfolioAsync(hedged).ResponseAsync, "holdings[1].venue");
    }

    [Fact]
    public async Task CompareRisk_trades_in_the_account_named_by_the_trade()
    {
        var request = new CompareRiskRequest
        {
            Holdings = { new Holding { InstrumentId = "DAX", Quantity = 50m, Price = 1000m, Venue = "SIM-A" } },
            Cash = 10_000m,
            Trades =
            {
                new TradeDelta { InstrumentId = "DAX", QuantityChange = -20m, Venue = "SIM-A" },
                new TradeDelta { InstrumentId = "DAX-C1000", QuantityChange = 10m, Venue = "SIM-B" },
            },
            Settings = new RiskSettings { LookbackDays = 250, Methods = { VarMethod.Historical } },
        };
        var response = await _client.CompareRiskAsync(request);
        var after = response.After.Positions.ToDictionary(p => (p.Venue, p.InstrumentId), p => p.MarketValue);
        Assert.Equal(30 * 1000, after[("SIM-A", "DAX")], 6);
        Assert.Equal(10 * 43.57619333457558, after[("SIM-B", "DAX-C1000")], 1e-6);
        // Cash pays for the calls and receives the shares' proceeds; net value is unchanged at the same prices.
        Assert.Equal(response.Before.NetValue, response.After.NetValue, 6);
        Assert.Equal(["SIM-A", "SIM-B"], response.Contributions.Select(c => c.Venue));
    }
}
