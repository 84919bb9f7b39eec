using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.ServiceDefaults;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// The planning defects found by a client from outside (issue 15), on the whole mesh with quotes driven through
/// IngestQuotes (no feed): a band-edge preview ends inside the band; a crossed book is refused naming the instrument;
/// an automatic policy with a breach no lot can cure plans it once, alerts once, and is not re-planned every few seconds.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class OutsideClientTests(ITestOutputHelper output) : MeshTest(output)
{
    private static readonly string[] Instruments = ["A", "B", "C", "D"];

    protected override IReadOnlyDictionary<string, string>? ExtraEnv { get; } = new Dictionary<string, string>
    {
        ["Pricing__Feed"] = "none",
        ["Pricing__Instruments__0"] = "A",
        ["Pricing__Instruments__1"] = "B",
        ["Pricing__Instruments__2"] = "C",
        ["Pricing__Instruments__3"] = "D",
    };

    private static readonly Dictionary<string, decimal> Mids = new() { ["A"] = 100m, ["B"] = 50m, ["C"] = 20m, ["D"] = 33m };

    /// <summary>Each instrument at its mid on SIM-A and SIM-B, a cent either side (C crossed across the venues when asked).</summary>
    private static async Task QuoteAsync(PricingService.PricingServiceClient pricing, bool crossC = false)
    {
        using var ingest = pricing.IngestQuotes();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        foreach (var (id, mid) in Mids)
        {
            foreach (var (venue, shift) in new[] { ("SIM-A", crossC && id == "C" ? 0.1m : 0m), ("SIM-B", 0m) })
            {
                await ingest.RequestStream.WriteAsync(new IngestQuotesRequest
                {
                    Quote = new Quote { Venue = venue, InstrumentId = id, Bid = mid + shift - 0.01m, Ask = mid + shift + 0.01m, BidSize = 1_000_000m, AskSize = 1_000_000m, Timestamp = now },
                });
            }
        }

        await ingest.RequestStream.CompleteAsync();
        Assert.Equal(8, (await ingest.ResponseAsync).AcceptedCount);
    }

    private static async Task PortfolioAsync(PlanningService.PlanningServiceClient planning, string id, decimal cash, decimal a, decimal b, decimal c, decimal d, ExecutionMode mode, decimal lotD = 1m)
    {
        var portfolio = new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = cash };
        portfolio.Positions.AddRange(new[] { ("A", a), ("B", b), ("C", c), ("D", d) }.Select(p => new Position { InstrumentId = p.Item1, Quantity = p.Item2 }));
        await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 });
        var policy = new Policy { PortfolioId = id, AbsoluteBand = 0.05, RebalanceTarget = RebalanceTarget.BandEdge, ExecutionMode = mode, CooldownSeconds = 0 };
        policy.Targets.AddRange(new[] { ("A", 0.30), ("B", 0.30), ("C", 0.20), ("D", 0.10) }.Select(t => new TargetWeight { InstrumentId = t.Item1, Weight = t.Item2 }));
        policy.LotSizes["D"] = lotD;
        await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
    }

    [Fact]
    public async Task Band_edges_crossed_books_and_uncurable_breaches_behave_as_a_client_expects()
    {
        using var pricingChannel = ServiceChannel("pricing");
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var planning = PlanningClient();
        await QuoteAsync(pricing);

        // The outside client's portfolio: a band-edge preview sells 61 D (60 left it outside its band for good) and buys 60 B.
        await PortfolioAsync(planning, "edge", 7_005m, 330m, 440m, 1_050m, 515m, ExecutionMode.Manual);
        var preview = (await planning.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = "edge" })).Plan;
        Assert.Equal([("D", Side.Sell, 61m), ("B", Side.Buy, 60m)], preview.Legs.Select(l => (l.InstrumentId, l.Side, l.Quantity.ToDecimal())));
        Assert.All(preview.Legs, l => Assert.InRange(Math.Abs(l.WeightAfter - (l.InstrumentId == "D" ? 0.10 : 0.30)), 0, 0.05));

        // A crossed consolidated book: no plan, and the refusal names the instrument.
        await QuoteAsync(pricing, crossC: true);
        var crossed = await Assert.ThrowsAsync<RpcException>(() => planning.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = "edge" }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, crossed.StatusCode);
        Assert.Contains("crossed", crossed.Status.Detail);
        Assert.Contains("C", crossed.Status.Detail);
        await QuoteAsync(pricing);

        // Automatic, with D tradable only in lots of 500: its breach cannot be cured (one lot sells it to 0.5 %).
        using var alerts = planning.WatchAlerts(new WatchAlertsRequest { PortfolioId = "stuck" }, deadline: DateTime.UtcNow.AddSeconds(90));
        await PortfolioAsync(planning, "stuck", 3_005m, 330m, 520m, 1_050m, 515m, ExecutionMode.Auto, lotD: 500m);
        var first = await NextUncurableAsync(alerts, pricing);
        Assert.Contains("D", first.Detail);
        var plans = (await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "stuck" })).Plans;
        var stored = Assert.Single(plans);
        Assert.Equal((PlanStatus.NoAction, NoActionReason.Uncurable), (stored.Status, stored.NoActionReason));

        // More than the monitor's 5 s minimum spacing later, an automatic portfolio with a curable breach is planned:
        // proof the monitor went on evaluating every portfolio — and "stuck" still has its one plan.
        await Task.Delay(TimeSpan.FromSeconds(6));
        await PortfolioAsync(planning, "curable", 7_005m, 330m, 440m, 1_050m, 515m, ExecutionMode.Auto);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "curable" })).Plans.Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the monitor did not plan the curable portfolio");
            await QuoteAsync(pricing);
            await Task.Delay(300);
        }

        Assert.Single((await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "stuck" })).Plans);
    }

    /// <summary>Drives quote events until the monitor's UNCURABLE alert arrives (breach alerts pass by).</summary>
    private static async Task<PolicyAlert> NextUncurableAsync(AsyncServerStreamingCall<WatchAlertsResponse> alerts, PricingService.PricingServiceClient pricing)
    {
        using var quoting = new CancellationTokenSource();
        var driver = Task.Run(async () =>
        {
            while (!quoting.IsCancellationRequested)
            {
                await QuoteAsync(pricing);
                await Task.Delay(300, quoting.Token).ContinueWith(_ => { });
            }
        });
        try
        {
            while (await alerts.ResponseStream.MoveNext(CancellationToken.None))
            {
                if (alerts.ResponseStream.Current.Alert.Kind == AlertKind.Uncurable)
                {
                    return alerts.ResponseStream.Current.Alert;
                }
            }

            throw new InvalidOperationException("The alert stream ended without an uncurable alert.");
        }
        finally
        {
            await quoting.CancelAsync();
            await driver;
        }
    }
}
