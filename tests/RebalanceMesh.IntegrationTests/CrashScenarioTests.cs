using RebalanceMesh.ServiceDefaults;
using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// The whole mesh through a market crash: DAX falls 30 % in about half a minute (quotes driven by the test through
/// pricing's IngestQuotes; the CSV feed is off). Two portfolios hold the same loan on the simulated lending venue —
/// 100 DAX pledged against 120,000 EUR, health factor 1.33 — one with the liquidation guard in automatic mode, one
/// without. The venue liquidates whatever falls below a health factor of 1.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class CrashScenarioTests(ITestOutputHelper output) : MeshTest(output)
{
    protected override IReadOnlyDictionary<string, string>? ExtraEnv { get; } = new Dictionary<string, string>
    {
        ["Pricing__Feed"] = "none",
        ["Pricing__Instruments__0"] = "DAX",
    };

    private DateTimeOffset _lastTick = DateTimeOffset.UtcNow.AddMinutes(-1);

    [Fact]
    public async Task With_the_guard_no_loan_is_liquidated_and_its_health_factor_is_restored_without_it_the_venue_liquidates()
    {
        using var pricingChannel = Mesh.ServiceChannel("pricing");
        using var executionChannel = Mesh.ServiceChannel("execution");
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());
        var planning = PlanningClient();
        await QuoteAsync(pricing, 2_000m);

        foreach (var (id, guarded) in new[] { ("crash-guarded", true), ("crash-open", false) })
        {
            await OpenLoanAsync(planning, execution, id, heldDax: 0m);
            var policy = new Policy
            {
                PortfolioId = id,
                AbsoluteBand = 0.5,
                Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0 } },
                ExecutionMode = ExecutionMode.Auto,
            };
            if (guarded)
            {
                // Act on any fall below the target: repay from cash while it lasts, then sell collateral to repay.
                policy.HealthFactorBand = new HealthFactorBand { Target = 1.6, RepayBelow = 1.6, EmergencyBelow = 1.2 };
            }

            await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
        }

        // The crash: −30 % in 60 steps of half a second.
        for (var step = 1; step <= 60; step++)
        {
            await QuoteAsync(pricing, decimal.Round(2_000m * (1 - (0.30m * step / 60)), 2));
            await Task.Delay(500);
        }

        // Settle at the bottom: the guard's last plan restores the target; the open loan's liquidation reaches planning.
        LendingAccount guardedLoan = null!, openLoan = null!;
        Portfolio guardedPortfolio = null!, openPortfolio = null!;
        for (var attempt = 0; attempt < 60; attempt++)
        {
            await QuoteAsync(pricing, 1_400m);
            await Task.Delay(500);
            guardedLoan = (await execution.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "crash-guarded", LoanId = "L1" })).Account;
            openLoan = (await execution.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "crash-open", LoanId = "L1" })).Account;
            guardedPortfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "crash-guarded", SkipValuation = true })).Portfolio;
            openPortfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "crash-open", SkipValuation = true })).Portfolio;
            var plans = (await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "crash-guarded", PageSize = 1 })).Plans;
            var settled = guardedLoan.HealthFactor >= 1.59 && plans.All(p => p.Status is PlanStatus.Completed or PlanStatus.NoAction)
                && openPortfolio.Loans[0].Debt[0].Quantity.ToDecimal() == openLoan.Debt.ToDecimal();
            if (settled)
            {
                break;
            }
        }

        var history = (await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "crash-guarded", PageSize = 50 })).Plans;
        foreach (var plan in history.Reverse())
        {
            Output.WriteLine($"{plan.PlanId} {plan.Status}: {plan.StatusMessage}");
        }

        Output.WriteLine($"guarded: HF {guardedLoan.HealthFactor:F4}, debt {guardedLoan.Debt.Value}, collateral {guardedLoan.Collateral.Single().Quantity.Value}, liquidations {guardedLoan.Liquidations}");
        Output.WriteLine($"open:    HF {openLoan.HealthFactor:F4}, debt {openLoan.Debt.Value}, collateral {openLoan.Collateral.Single().Quantity.Value}, liquidations {openLoan.Liquidations}");

        // Guard on: never liquidated, health factor back at its target at the bottom, planning's loan = the venue's.
        Assert.Equal(0, guardedLoan.Liquidations);
        Assert.InRange(guardedLoan.HealthFactor, 1.59, 1.7);
        Assert.Contains(history, p => p.Legs.Any(l => l.Kind == LegKind.WithdrawCollateral) && p.Status == PlanStatus.Completed); // cash ran out: it deleveraged
        Assert.Equal(guardedLoan.Debt.ToDecimal(), guardedPortfolio.Loans[0].Debt[0].Quantity.ToDecimal());
        Assert.Equal(guardedLoan.Collateral.Single().Quantity.ToDecimal(), guardedPortfolio.Loans[0].Collateral[0].Quantity.ToDecimal());
        Assert.True(guardedPortfolio.Cash.ToDecimal() >= 0);

        // Guard off: the venue liquidated (HF 1.33 crosses 1 at −25 %); the liquidation reached planning's portfolio.
        Assert.True(openLoan.Liquidations >= 1, "the unguarded loan is liquidated");
        Assert.True(openLoan.Debt.ToDecimal() < 120_000m && openLoan.Collateral.Single().Quantity.ToDecimal() < 100m);
        Assert.Equal(openLoan.Debt.ToDecimal(), openPortfolio.Loans[0].Debt[0].Quantity.ToDecimal());
        Assert.Equal(openLoan.Collateral.Single().Quantity.ToDecimal(), openPortfolio.Loans[0].Collateral[0].Quantity.ToDecimal());
        Assert.DoesNotContain((await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "crash-open", PageSize = 5 })).Plans, p => p.Legs.Count > 0);
    }

    [Fact]
    public async Task An_emergency_pre_empts_a_running_rebalance_and_the_guards_plan_goes_next()
    {
        // 50 DAX held outright (47.6 % of 210,000 against a target of 0) and 100 DAX pledged against 120,000 EUR
        // (health factor 1.33 at 2,000). The monitor's first plan sells the 50 DAX slowly (TWAP, a slice every 6 s).
        // DAX then falls to 1,750: health factor 1.17, below the emergency level 1.2 — the guard must not wait a minute.
        using var pricingChannel = Mesh.ServiceChannel("pricing");
        using var executionChannel = Mesh.ServiceChannel("execution");
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());
        var planning = PlanningClient();
        await QuoteAsync(pricing, 2_000m);
        await OpenLoanAsync(planning, execution, "preempt", heldDax: 50m);
        await planning.SetPolicyAsync(new SetPolicyRequest
        {
            Policy = new Policy
            {
                PortfolioId = "preempt",
                AbsoluteBand = 0.05,
                Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0 } },
                ExecutionMode = ExecutionMode.Auto,
                HealthFactorBand = new HealthFactorBand { Target = 1.4, RepayBelow = 1.25, EmergencyBelow = 1.2 },
                ExecutionStyle = new ExecutionStyle { TwapSlices = 10, TwapDurationSeconds = 60 },
            },
        });

        // The monitor's rebalance starts.
        Plan rebalance = null!;
        for (var attempt = 0; attempt < 60 && rebalance?.Status != PlanStatus.Executing; attempt++)
        {
            await QuoteAsync(pricing, 2_000m);
            await Task.Delay(250);
            rebalance = (await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "preempt", PageSize = 1 })).Plans.FirstOrDefault()!;
        }

        Assert.Equal(PlanStatus.Executing, rebalance.Status);
        Assert.All(rebalance.Legs, l => Assert.Equal(LegPurpose.Rebalance, l.Purpose));

        // The fall: the rebalance is cancelled for the emergency and the guard's plan follows it.
        Plan[] history = [];
        for (var attempt = 0; attempt < 80; attempt++)
        {
            await QuoteAsync(pricing, 1_750m);
            await Task.Delay(250);
            history = (await planning.ListPlansAsync(new ListPlansRequest { PortfolioId = "preempt", PageSize = 10 })).Plans.ToArray();
            if (history.Any(p => p.Legs.Any(l => l.Kind == LegKind.Repay)))
            {
                break;
            }
        }

        foreach (var plan in history.Reverse())
        {
            Output.WriteLine($"{plan.PlanId} {plan.Status}: {plan.StatusMessage} [{string.Join(", ", plan.Legs.Select(l => $"{l.LegId} {l.Kind} {l.Quantity.Value}"))}]");
        }

        var preempted = history.Single(p => p.PlanId == rebalance.PlanId);
        Assert.Equal(PlanStatus.Cancelled, preempted.Status);
        Assert.Contains("pre-empted", preempted.StatusMessage, StringComparison.Ordinal);
        Assert.Equal("monitor", preempted.CancelRequest.RequestedBy);
        var guard = history.First(p => p.Legs.Any(l => l.Kind == LegKind.Repay));
        Assert.All(guard.Legs, l => Assert.Equal(LegPurpose.LiquidationGuard, l.Purpose));
        Assert.True(guard.CreatedAt.ToDateTimeOffset() >= preempted.UpdatedAt.ToDateTimeOffset(), "the guard's plan came after the rebalance ended");
        Assert.Equal(0, (await execution.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "preempt", LoanId = "L1" })).Account.Liquidations);
    }

    /// <summary>
    /// A portfolio with 30,000 EUR, <paramref name="heldDax"/> DAX held outright and the loan L1 on LEND-A — 100 DAX
    /// pledged (liquidation threshold 0.8) against 120,000 EUR — in planning and on the lending venue alike.
    /// </summary>
    private static async Task OpenLoanAsync(PlanningService.PlanningServiceClient planning, ExecutionService.ExecutionServiceClient execution, string portfolioId, decimal heldDax)
    {
        var portfolio = new Portfolio
        {
            PortfolioId = portfolioId,
            BaseCurrency = "EUR",
            Cash = 30_000m,
            Loans =
            {
                new Loan
                {
                    LoanId = "L1",
                    Venue = "LEND-A",
                    Collateral = { new LoanCollateral { Asset = "DAX", Quantity = 100m, LiquidationThreshold = 0.8 } },
                    Debt = { new LoanDebt { Asset = "EUR", Quantity = 120_000m } },
                },
            },
        };
        if (heldDax > 0)
        {
            portfolio.Positions.Add(new Position { InstrumentId = "DAX", Quantity = heldDax });
        }

        await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 });
        await execution.OpenLendingAccountAsync(new OpenLendingAccountRequest
        {
            Account = new LendingAccount
            {
                Venue = "LEND-A",
                PortfolioId = portfolioId,
                LoanId = "L1",
                BaseCurrency = "EUR",
                Collateral = { new LendingCollateral { Asset = "DAX", Quantity = 100m } },
                DebtAsset = "EUR",
                Debt = 120_000m,
            },
        });
    }

    /// <summary>One tick of DAX at <paramref name="mid"/> on each venue, a cent either side.</summary>
    private async Task QuoteAsync(PricingService.PricingServiceClient pricing, decimal mid)
    {
        var now = DateTimeOffset.UtcNow;
        _lastTick = now > _lastTick ? now : _lastTick.AddMilliseconds(1);
        using var ingest = pricing.IngestQuotes();
        foreach (var venue in new[] { "SIM-A", "SIM-B", "SIM-C" })
        {
            await ingest.RequestStream.WriteAsync(new IngestQuotesRequest
            {
                Quote = new Quote { Venue = venue, InstrumentId = "DAX", Bid = mid - 0.01m, Ask = mid + 0.01m, BidSize = 10_000m, AskSize = 10_000m, Timestamp = _lastTick.ToTimestamp() },
            });
        }

        await ingest.RequestStream.CompleteAsync();
        var response = await ingest.ResponseAsync;
        Assert.Equal(3, response.AcceptedCount);
    }
}
