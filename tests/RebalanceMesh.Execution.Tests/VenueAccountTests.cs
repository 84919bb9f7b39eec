using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Runs;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// The simulated venues' accounts through the execution service: loan legs on the lending venue, margin accounts on
/// the trading venues (top-ups, transfers, fills in an account, spot balances), their liquidations, and the account RPCs.
/// </summary>
public sealed class VenueAccountTests(RedisServer redis) : ExecutionServiceTestBase(redis), IClassFixture<RedisServer>
{

    [Fact]
    public async Task Loan_legs_execute_once_on_the_lending_venue_and_a_refusal_stops_the_plan()
    {
        // 100 DAX at the mid 100 (LT 0.8) against 7,000 EUR: HF 8,000 / 7,000 = 1.1429.
        var opened = (await Client.OpenLendingAccountAsync(new OpenLendingAccountRequest { Account = DaxLoan(7_000m) })).Account;
        Assert.Equal(8_000.0 / 7_000, opened.HealthFactor, 9);
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var plan = new PlanApproved
        {
            PlanId = "plan-guard",
            PortfolioId = "p1",
            Legs =
            {
                new ApprovedLeg { LegId = "G1", Sequence = 1, Kind = LegKind.Repay, LoanId = "L1", Venue = "LEND-A", InstrumentId = "EUR", Quantity = 2_000m, ReferencePrice = 1m },
                new ApprovedLeg { LegId = "G2", Sequence = 2, Kind = LegKind.SupplyCollateral, LoanId = "L1", Venue = "LEND-A", InstrumentId = "DAX", Quantity = 5m, ReferencePrice = 100m },
                new ApprovedLeg { LegId = "L1", Sequence = 3, InstrumentId = "DAX", Side = Side.Buy, Quantity = 1m, ReferencePrice = 100m },
            },
        };
        await bus.PublishAsync(Topics.PlansApproved, plan);
        Assert.Equal(ExecutionStatus.Completed, (await WaitForFinalAsync("plan-guard")).Status);

        // Debt 5,000, collateral 105 DAX: HF 105 × 100 × 0.8 / 5,000 = 1.68. A redelivery applies nothing twice.
        await bus.PublishAsync(Topics.PlansApproved, plan);
        await SettledAsync();
        var account = (await Client.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "p1", LoanId = "L1" })).Account;
        Assert.Equal((5_000m, 105m), (account.Debt.ToDecimal(), account.Collateral.Single().Quantity.ToDecimal()));
        Assert.Equal(1.68, account.HealthFactor, 9);
        var fills = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser))
            .Where(r => r.PlanId == "plan-guard" && r.Kind == ReportKind.Fill).ToArray();
        Assert.Equal(["plan-guard:G1:loan", "plan-guard:G2:loan"], fills.Where(f => f.LegId.StartsWith('G')).Select(f => f.Fill.FillId).Distinct());
        Assert.Equal(2_000m, fills.First(f => f.LegId == "G1").Fill.Quantity.ToDecimal());

        // A withdrawal that would take HF below 1 is refused by the venue: the plan stops there, the trade after it
        // is cancelled, and the account is untouched.
        await bus.PublishAsync(Topics.PlansApproved, new PlanApproved
        {
            PlanId = "plan-greedy",
            PortfolioId = "p1",
            Legs =
            {
                new ApprovedLeg { LegId = "G1", Sequence = 1, Kind = LegKind.WithdrawCollateral, LoanId = "L1", Venue = "LEND-A", InstrumentId = "DAX", Quantity = 50m, ReferencePrice = 100m },
                new ApprovedLeg { LegId = "L1", Sequence = 2, InstrumentId = "DAX", Side = Side.Sell, Quantity = 50m, ReferencePrice = 100m },
            },
        });
        Assert.Equal(ExecutionStatus.Cancelled, (await WaitForFinalAsync("plan-greedy")).Status);
        var greedy = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.PlanId == "plan-greedy").ToArray();
        Assert.Contains("below 1", greedy.Single(r => r.Kind == ReportKind.LegDone && r.LegId == "G1").Message);
        Assert.Equal(ReportedLegStatus.Cancelled, greedy.Single(r => r.Kind == ReportKind.LegDone && r.LegId == "L1").LegStatus);
        Assert.Equal(105m, (await Client.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "p1", LoanId = "L1" })).Account.Collateral.Single().Quantity.ToDecimal());
    }

    [Fact]
    public async Task A_quote_that_takes_a_loan_below_1_is_liquidated_and_reported_once()
    {
        await Client.OpenLendingAccountAsync(new OpenLendingAccountRequest { Account = DaxLoan(7_000m) });
        var market = Server.Services.GetRequiredService<MarketStateStore>();
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();

        // DAX falls to 85 (mid): HF 100 × 85 × 0.8 / 7,000 = 0.9714 → half the debt repaid, 3,500 × 1.05 / 85 DAX seized.
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        var changed = await market.WriteQuotesAsync(
        [
            new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = 84.9m, Ask = 85.1m, BidSize = 100m, AskSize = 100m, Timestamp = now },
            new Quote { Venue = "SIM-B", InstrumentId = "DAX", Bid = 84.9m, Ask = 85.1m, BidSize = 100m, AskSize = 100m, Timestamp = now },
        ]);
        var quotes = new QuotesUpdated { AsOf = now };
        quotes.Prices.AddRange(changed);
        await bus.PublishAsync(Topics.MarketQuotes, quotes);
        await bus.PublishAsync(Topics.MarketQuotes, quotes); // the same prices again: nothing more to do

        await SettledAsync();
        var liquidation = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser))
            .FirstOrDefault(r => r.Kind == ReportKind.Liquidation)?.Liquidation;

        Assert.NotNull(liquidation);
        Assert.Equal(("LEND-A:p1:L1:1", "DAX", 3_500m), (liquidation.LiquidationId, liquidation.SeizedAsset, liquidation.DebtRepaid.ToDecimal()));
        Assert.Equal(3_675m / 85m, liquidation.SeizedQuantity.ToDecimal());
        Assert.Equal(0.9714285714, liquidation.HealthFactorBefore, 9);
        await SettledAsync();
        Assert.Single(bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)), r => r.Kind == ReportKind.Liquidation);
        var account = (await Client.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "p1", LoanId = "L1" })).Account;
        Assert.Equal((3_500m, 1), (account.Debt.ToDecimal(), account.Liquidations));
        Assert.True(account.HealthFactor > 1);
        Assert.Empty(await Server.Services.GetRequiredService<ExecutionStore>().GetOutboxAsync(10)); // published, so out of the outbox
    }

    private static VenueMarginAccount ShortPerpAccount(string portfolioId) => new()
    {
        Venue = "SIM-B",
        PortfolioId = portfolioId,
        BaseCurrency = "EUR",
        Collateral = 1_000m,
        Positions = { new VenueMarginPosition { InstrumentId = "DAX-PERP", Quantity = -10m, EntryPrice = 100m } },
    };

    private async Task QuotePerpAsync(decimal mid, bool publish)
    {
        var market = Server.Services.GetRequiredService<MarketStateStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        var changed = await market.WriteQuotesAsync(
        [
            new Quote { Venue = "SIM-A", InstrumentId = "DAX-PERP", Bid = mid - 0.1m, Ask = mid + 0.1m, BidSize = 100m, AskSize = 100m, Timestamp = now },
            new Quote { Venue = "SIM-B", InstrumentId = "DAX-PERP", Bid = mid - 0.1m, Ask = mid + 0.1m, BidSize = 100m, AskSize = 100m, Timestamp = now },
        ]);
        if (publish)
        {
            var quotes = new QuotesUpdated { AsOf = now };
            quotes.Prices.AddRange(changed);
            var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
            await bus.PublishAsync(Topics.MarketQuotes, quotes);
            await bus.PublishAsync(Topics.MarketQuotes, quotes); // twice: liquidated once
        }
    }

    [Fact]
    public async Task A_margin_account_below_maintenance_is_liquidated_by_its_venue_unless_topped_up_in_time()
    {
        await QuotePerpAsync(100m, publish: false);
        var opened = (await Client.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = ShortPerpAccount("p-open") })).Account;
        Assert.Equal((1_000m, 50m, 20.0), (opened.Equity.ToDecimal(), opened.MaintenanceMargin.ToDecimal(), opened.MarginRatio)); // 10 × 100 × 5 %
        await Client.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = ShortPerpAccount("p-topped") });

        // The plan of p-topped tops its account up by 100 (applied once, though delivered twice).
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var topUp = new PlanApproved
        {
            PlanId = "plan-top-up",
            PortfolioId = "p-topped",
            Legs = { new ApprovedLeg { LegId = "M1", Sequence = 1, InstrumentId = "EUR", Kind = LegKind.MarginTopUp, Venue = "SIM-B", Quantity = 100m, ReferencePrice = 1m } },
        };
        await bus.PublishAsync(Topics.PlansApproved, topUp);
        Assert.Equal(ExecutionStatus.Completed, (await WaitForFinalAsync("plan-top-up")).Status);
        await bus.PublishAsync(Topics.PlansApproved, topUp);
        Assert.Equal(1_100m, (await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "p-topped" })).Account.Collateral.ToDecimal());

        // The perpetual rallies to 195: p-open's equity 1,000 − 950 = 50 < maintenance 97.5 → SIM-B buys back at 195,
        // with its 1.25 % fee, just enough to restore the initial margin (195): (195 − 50) / (195 × 8.75 %) = 8.4981685
        // contracts (rounded up to 8.49816850): realised −807.3260075, fee 20.71428571875, collateral 171.95970678125,
        // 1.5018315 short left. p-topped's equity 150 ≥ 97.5 stays.
        await QuotePerpAsync(195m, publish: true);
        await SettledAsync();
        var liquidation = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser))
            .FirstOrDefault(r => r.Kind == ReportKind.MarginLiquidation)?.MarginLiquidation;

        Assert.NotNull(liquidation);
        Assert.Equal(("SIM-B:p-open:margin:1", "DAX-PERP", 8.4981685m, 195m, 20.71428571875m, -807.3260075m), (liquidation.LiquidationId, liquidation.InstrumentId, liquidation.ClosedQuantity.ToDecimal(), liquidation.Price.ToDecimal(), liquidation.Fee.ToDecimal(), liquidation.RealizedPnl.ToDecimal()));
        Assert.Equal(50.0 / 97.5, liquidation.RatioBefore, 9);
        await SettledAsync();
        Assert.Single(bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)), r => r.Kind == ReportKind.MarginLiquidation);
        var liquidated = (await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "p-open" })).Account;
        Assert.Equal((171.95970678125m, -1.5018315m, 1), (liquidated.Collateral.ToDecimal(), liquidated.Positions.Single().Quantity.ToDecimal(), liquidated.Liquidations));
        Assert.Equal(2.0, liquidated.MarginRatio, 7);
        var topped = (await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "p-topped" })).Account;
        Assert.Equal(0, topped.Liquidations);
        Assert.Equal(150.0 / 97.5, topped.MarginRatio, 9);
    }

    [Fact]
    public async Task Collateral_moves_between_venues_once_and_only_while_the_source_keeps_its_initial_margin()
    {
        await QuotePerpAsync(100m, publish: false);
        await Client.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = ShortPerpAccount("p-move") }); // SIM-B: 1,000, short 10 at 100
        var sourceAccount = ShortPerpAccount("p-move");
        sourceAccount.Venue = "SIM-A";
        await Client.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = sourceAccount });

        // SIM-A lets 900 leave (10 × 100 × 10 % initial margin stays covered): 850 moves; a second 100 would not.
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var move = new PlanApproved
        {
            PlanId = "plan-move",
            PortfolioId = "p-move",
            Legs =
            {
                new ApprovedLeg { LegId = "X1", Sequence = 1, InstrumentId = "EUR", Kind = LegKind.CollateralTransfer, FromVenue = "SIM-A", Venue = "SIM-B", Quantity = 850m, ReferencePrice = 1m },
                new ApprovedLeg { LegId = "X2", Sequence = 2, InstrumentId = "EUR", Kind = LegKind.CollateralTransfer, FromVenue = "SIM-A", Venue = "SIM-B", Quantity = 100m, ReferencePrice = 1m },
            },
        };
        await bus.PublishAsync(Topics.PlansApproved, move);
        var execution = await WaitForFinalAsync("plan-move");
        await bus.PublishAsync(Topics.PlansApproved, move); // redelivered: nothing moves twice

        Assert.Equal(ExecutionStatus.Cancelled, execution.Status); // the refused second transfer stops the plan
        var legDone = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.Kind == ReportKind.LegDone && r.PlanId == "plan-move").ToArray();
        Assert.Equal(ReportedLegStatus.Filled, legDone.Single(r => r.LegId == "X1").LegStatus);
        Assert.Contains("initial margin", legDone.Single(r => r.LegId == "X2").Message);
        var planDone = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).First(r => r.Kind == ReportKind.PlanDone && r.PlanId == "plan-move");
        Assert.StartsWith("leg X2 (collateral transfer from SIM-A to SIM-B) refused:", planDone.Message, StringComparison.Ordinal);
        var source = (await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-A", PortfolioId = "p-move" })).Account;
        var destination = (await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "p-move" })).Account;
        Assert.Equal((150m, 1_850m), (source.Collateral.ToDecimal(), destination.Collateral.ToDecimal()));
    }

    [Fact]
    public async Task A_perpetual_fill_in_a_venue_account_moves_its_margin_account_once()
    {
        await QuotePerpAsync(100m, publish: false);
        await Server.Services.GetRequiredService<MarketStateStore>().UpsertInstrumentsAsync([new Instrument { InstrumentId = "DAX-PERP", Kind = InstrumentKind.Perpetual, UnderlyingId = "DAX", Multiplier = 1m, QuoteCurrency = "EUR" }]);
        await Client.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = ShortPerpAccount("p-fill") });
        var plan = new PlanApproved
        {
            PlanId = "plan-perp",
            PortfolioId = "p-fill",
            Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX-PERP", Side = Side.Buy, Quantity = 5m, ReferencePrice = 100m, Venue = "SIM-B" } },
        };
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, plan);
        Assert.Equal(ExecutionStatus.Completed, (await WaitForFinalAsync("plan-perp")).Status);
        await bus.PublishAsync(Topics.PlansApproved, plan); // redelivered: the fill is not applied again

        // Buying 5 back at SIM-B's ask 100.1 closes half the short: realised (100.1 − 100) × −5 = −0.5, fee 5 × 100.1 ×
        // 5 bps = 0.25025; collateral 1,000 − 0.5 − 0.25025.
        var account = (await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "p-fill" })).Account;
        Assert.Equal((-5m, 100m, 999.24975m), (account.Positions.Single().Quantity.ToDecimal(), account.Positions.Single().EntryPrice.ToDecimal(), account.Collateral.ToDecimal()));
    }

    [Fact]
    public async Task A_sell_in_a_venue_account_is_limited_to_the_units_held_there()
    {
        // The SIM-A account holds 5 DAX. A sell of 8 there is rejected by the venue (insufficient balance) and the leg
        // says so; a sell of 5 fills and leaves none; a buy of 2 in the account adds them.
        await Client.OpenMarginAccountAsync(new OpenMarginAccountRequest
        {
            Account = new VenueMarginAccount { Venue = "SIM-A", PortfolioId = "p-spot", BaseCurrency = "EUR", Collateral = 0m, SpotBalances = { new VenueSpotBalance { InstrumentId = "DAX", Quantity = 5m } } },
        });
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        PlanApproved Sell(string planId, decimal quantity, Side side = Side.Sell) => new()
        {
            PlanId = planId,
            PortfolioId = "p-spot",
            Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = side, Quantity = quantity, ReferencePrice = 100m, Venue = "SIM-A" } },
        };

        await bus.PublishAsync(Topics.PlansApproved, Sell("plan-oversell", 8m));
        var refused = await WaitForFinalAsync("plan-oversell");
        Assert.Equal(ExecutionStatus.Failed, refused.Status);
        Assert.Contains("insufficient balance: the SIM-A account holds 5 DAX", refused.Orders.Single().StatusReason);
        Assert.Equal(OrderStatus.Rejected, refused.Orders.Single().Status);

        await bus.PublishAsync(Topics.PlansApproved, Sell("plan-sell", 5m));
        Assert.Equal(ExecutionStatus.Completed, (await WaitForFinalAsync("plan-sell")).Status);
        Assert.Empty((await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-A", PortfolioId = "p-spot" })).Account.SpotBalances);

        await bus.PublishAsync(Topics.PlansApproved, Sell("plan-buy", 2m, Side.Buy));
        Assert.Equal(ExecutionStatus.Completed, (await WaitForFinalAsync("plan-buy")).Status);
        await bus.PublishAsync(Topics.PlansApproved, Sell("plan-buy", 2m, Side.Buy)); // redelivered: counted once
        var balance = (await Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-A", PortfolioId = "p-spot" })).Account.SpotBalances.Single();
        Assert.Equal(("DAX", 2m), (balance.InstrumentId, balance.Quantity.ToDecimal()));
    }

    [Fact]
    public async Task Margin_RPCs_validate_input()
    {
        var bad = ShortPerpAccount("p1");
        bad.Venue = "LEND-A";
        bad.Collateral = -1m;
        bad.Positions.Add(new VenueMarginPosition { InstrumentId = "DAX-PERP", Quantity = 0m, EntryPrice = 0m });
        var fields = await RpcAssert.InvalidArgumentAsync(() => Client.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = bad }).ResponseAsync, "account.venue");
        Assert.Equal(["account.venue", "account.collateral", "account.positions[1].instrument_id", "account.positions[1].quantity", "account.positions[1].entry_price"], fields);
        await RpcAssert.InvalidArgumentAsync(() => Client.OpenMarginAccountAsync(new OpenMarginAccountRequest()).ResponseAsync, "account");
        await RpcAssert.InvalidArgumentAsync(() => Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B" }).ResponseAsync, "portfolio_id");
        await RpcAssert.StatusAsync(() => Client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "none" }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact]
    public async Task Lending_RPCs_validate_input()
    {
        var bad = DaxLoan(-1m);
        bad.Venue = "LEND-Z";
        bad.Collateral.Add(new LendingCollateral { Asset = "DAX", Quantity = 1m });
        var fields = await RpcAssert.InvalidArgumentAsync(() => Client.OpenLendingAccountAsync(new OpenLendingAccountRequest { Account = bad }).ResponseAsync, "account.venue");
        Assert.Contains("account.debt", fields);
        Assert.Contains("account.collateral[1].asset", fields);
        var unaccepted = DaxLoan(1m);
        unaccepted.Collateral[0].Asset = "BTC";
        await RpcAssert.InvalidArgumentAsync(() => Client.OpenLendingAccountAsync(new OpenLendingAccountRequest { Account = unaccepted }).ResponseAsync, "account.collateral[0].asset");
        await RpcAssert.InvalidArgumentAsync(() => Client.OpenLendingAccountAsync(new OpenLendingAccountRequest()).ResponseAsync, "account");
        await RpcAssert.InvalidArgumentAsync(() => Client.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A" }).ResponseAsync, "portfolio_id");
        await RpcAssert.StatusAsync(() => Client.GetLendingAccountAsync(new GetLendingAccountRequest { Venue = "LEND-A", PortfolioId = "p", LoanId = "none" }).ResponseAsync, StatusCode.NotFound);
    }
}
