using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.ServiceDefaults;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// The whole mesh through a rally against a short perpetual: DAX-PERP rises 10 % in about half a minute (quotes
/// driven through pricing's IngestQuotes; the CSV feed is off). Two portfolios hold the same position in their SIM-B
/// margin account — short 10 from 2,000 on 1,500 of collateral, margin ratio 1.5 at the venue's 5 % maintenance —
/// one with the margin guard in automatic mode, one without. SIM-B liquidates an account once its equity falls below
/// maintenance margin (at about 2,048 here, then again higher up), buying back just enough of the short to restore its
/// initial margin.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class PerpetualRallyTests(ITestOutputHelper output) : MeshTest(output)
{
    protected override IReadOnlyDictionary<string, string>? ExtraEnv { get; } = new Dictionary<string, string>
    {
        ["Pricing__Feed"] = "none",
        ["Pricing__Instruments__0"] = "DAX",
    };

    private DateTimeOffset _lastTick = DateTimeOffset.UtcNow.AddMinutes(-1);

    [Fact]
    public async Task With_the_margin_guard_the_account_is_topped_up_and_never_liquidated_without_it_the_venue_liquidates()
    {
        using var pricingChannel = Mesh.ServiceChannel("pricing");
        using var executionChannel = Mesh.ServiceChannel("execution");
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());
        var planning = PlanningClient();
        await pricing.UpsertInstrumentsAsync(new UpsertInstrumentsRequest
        {
            Instruments = { new Instrument { InstrumentId = "DAX-PERP", Kind = InstrumentKind.Perpetual, UnderlyingId = "DAX", QuoteCurrency = "EUR", Multiplier = 1m } },
        });
        await QuoteAsync(pricing, 2_000m);

        foreach (var (id, guarded) in new[] { ("rally-guarded", true), ("rally-open", false) })
        {
            await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest
            {
                Portfolio = new Portfolio
                {
                    PortfolioId = id,
                    BaseCurrency = "EUR",
                    Cash = 20_000m,
                    Positions = { new Position { InstrumentId = "DAX-PERP", Quantity = -10m, EntryPrice = 2_000m, Venue = "SIM-B" } },
                    MarginAccounts = { new MarginAccount { Venue = "SIM-B", Collateral = 1_500m } },
                },
                ExpectedVersion = -1,
            });
            await execution.OpenMarginAccountAsync(new OpenMarginAccountRequest
            {
                Account = new VenueMarginAccount
                {
                    Venue = "SIM-B",
                    PortfolioId = id,
                    BaseCurrency = "EUR",
                    Collateral = 1_500m,
                    Positions = { new VenueMarginPosition { InstrumentId = "DAX-PERP", Quantity = -10m, EntryPrice = 2_000m, Multiplier = 1m } },
                },
            });
            var policy = new Policy
            {
                PortfolioId = id,
                AbsoluteBand = 0.5,
                Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0 } },
                NoTradeInstruments = { "DAX-PERP" },
                ExecutionMode = ExecutionMode.Auto,
            };
            if (guarded)
            {
                // Act below 1.6 of the venue's own maintenance margin; top up to 2 from cash.
                policy.MarginBand = new MarginBand { Target = 2.0, ActBelow = 1.6, EmergencyBelow = 1.2, MaintenanceRate = 0.05 };
            }

            await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
        }

        // The rally: +10 % in 50 steps of half a second.
        for (var step = 1; step <= 50; step++)
        {
            await QuoteAsync(pricing, 2_000m + (4m * step));
            await Task.Delay(500);
        }

        // Settle at the top: the guard's last top-up lands; the open account's liquidation reaches planning.
        VenueMarginAccount guardedAccount = null!, openAccount = null!;
        Portfolio guardedPortfolio = null!, openPortfolio = null!;
        for (var attempt = 0; attempt < 60; attempt++)
        {
            await QuoteAsync(pricing, 2_200m);
            await Task.Delay(500);
            guardedAccount = (await execution.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "rally-guarded" })).Account;
            openAccount = (await execution.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "rally-open" })).Account;
            guardedPortfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "rally-guarded", SkipValuation = true })).Portfolio;
            openPortfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "rally-open", SkipValuation = true })).Portfolio;
            var plans = (await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "rally-guarded", PageSize = 1 })).Plans;
            var settled = guardedAccount.MarginRatio >= 1.6 && plans.All(p => p.Status is PlanStatus.Completed or PlanStatus.NoAction)
                && guardedPortfolio.MarginAccounts.Single().Collateral.ToDecimal() == guardedAccount.Collateral.ToDecimal()
                && openPortfolio.MarginAccounts.Single().Collateral.ToDecimal() == openAccount.Collateral.ToDecimal()
                && Short(openPortfolio) == openAccount.Positions.Sum(p => p.Quantity.ToDecimal());
            if (settled)
            {
                break;
            }
        }

        var history = (await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "rally-guarded", PageSize = 50 })).Plans;
        foreach (var plan in history.Reverse())
        {
            Output.WriteLine($"{plan.PlanId} {plan.Status}: {plan.StatusMessage} [{string.Join("; ", plan.Legs.Select(l => $"{l.Kind} {l.Quantity.Value} {l.InstrumentId} {l.Venue}"))}]");
        }

        Output.WriteLine($"guarded: ratio {guardedAccount.MarginRatio:F4}, collateral {guardedAccount.Collateral.Value}, liquidations {guardedAccount.Liquidations}, cash {guardedPortfolio.Cash.Value}");
        Output.WriteLine($"open:    ratio {openAccount.MarginRatio:F4}, collateral {openAccount.Collateral.Value}, liquidations {openAccount.Liquidations}, positions {openAccount.Positions.Count}");

        // Guard on: topped up from cash (never a close), never liquidated, ratio back above the band at the top;
        // planning's account and cash are the venue's and what the top-ups took.
        Assert.Equal(0, guardedAccount.Liquidations);
        Assert.InRange(guardedAccount.MarginRatio, 1.6, 2.5);
        var topUps = history.Where(p => p.Status == PlanStatus.Completed).SelectMany(p => p.Legs).Where(l => l.Kind == LegKind.MarginTopUp).ToArray();
        Assert.NotEmpty(topUps);
        Assert.All(history.SelectMany(p => p.Legs), l => Assert.Equal(LegKind.MarginTopUp, l.Kind));
        var toppedUp = topUps.Sum(l => l.FilledQuantity.ToDecimal());
        Assert.Equal(1_500m + toppedUp, guardedAccount.Collateral.ToDecimal());
        Assert.Equal(guardedAccount.Collateral.ToDecimal(), guardedPortfolio.MarginAccounts.Single().Collateral.ToDecimal());
        Assert.Equal(20_000m - toppedUp, guardedPortfolio.Cash.ToDecimal());
        Assert.Equal(-10m, guardedPortfolio.Positions.Single().Quantity.ToDecimal());

        // Guard off: SIM-B liquidated the short (equity below maintenance at about 2,048), each time buying back part of
        // it to restore the initial margin, so the account stays above maintenance; planning followed: its position and
        // collateral are what the venue left.
        Assert.True(openAccount.Liquidations >= 1, "the unguarded account is liquidated");
        var left = openAccount.Positions.Sum(p => p.Quantity.ToDecimal());
        Assert.InRange(left, -9.99m, 0m);
        Assert.Equal(left, Short(openPortfolio));
        Assert.True(openAccount.MarginRatio >= 1.0, "a partial liquidation leaves the account above maintenance");
        Assert.Equal(openAccount.Collateral.ToDecimal(), openPortfolio.MarginAccounts.Single().Collateral.ToDecimal());
        Assert.True(openAccount.Collateral.ToDecimal() < 1_500m, "the loss and the liquidation fees came out of the collateral");
        Assert.Equal(20_000m, openPortfolio.Cash.ToDecimal());

        // Nothing failed on the way (a liquidation that could not be logged once made the outbox relay its report).
        Assert.DoesNotContain(RebalanceMesh.Cli.ServiceLogs.ReadAll(Mesh.Service("execution").LogFile), l => l.Contains("\"LogLevel\":\"Error\"", StringComparison.Ordinal));
    }

    /// <summary>Planning's DAX-PERP position (its SIM-B account).</summary>
    private static decimal Short(Portfolio portfolio) =>
        portfolio.Positions.Where(p => p.InstrumentId == "DAX-PERP").Sum(p => p.Quantity.ToDecimal());

    /// <summary>One tick of DAX and its perpetual at <paramref name="mid"/> on each venue, a cent either side.</summary>
    private async Task QuoteAsync(PricingService.PricingServiceClient pricing, decimal mid)
    {
        var now = DateTimeOffset.UtcNow;
        _lastTick = now > _lastTick ? now : _lastTick.AddMilliseconds(1);
        using var ingest = pricing.IngestQuotes();
        foreach (var instrument in new[] { "DAX", "DAX-PERP" })
        {
            foreach (var venue in new[] { "SIM-A", "SIM-B", "SIM-C" })
            {
                await ingest.RequestStream.WriteAsync(new IngestQuotesRequest
                {
                    Quote = new Quote { Venue = venue, InstrumentId = instrument, Bid = mid - 0.01m, Ask = mid + 0.01m, BidSize = 10_000m, AskSize = 10_000m, Timestamp = _lastTick.ToTimestamp() },
                });
            }
        }

        await ingest.RequestStream.CompleteAsync();
        Assert.Equal(6, (await ingest.ResponseAsync).AcceptedCount);
    }
}
