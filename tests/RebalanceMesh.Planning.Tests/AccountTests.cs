using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>An instrument held in several accounts (venues): weights sum them, sells split over them, fills book to them.</summary>
public class AccountTests
{
    private static readonly TargetPolicy HalfAndHalf = TargetPolicy.Of(
        new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.5 }, TradeRules.Default, new DriftBands(0.05));

    private static readonly Dictionary<string, decimal> Prices = new() { ["A"] = 100m, ["B"] = 50m };

    [Fact]
    public void A_position_is_the_sum_of_its_accounts_largest_first()
    {
        // A: 30 in the default account, 40 on SIM-A, 10 on SIM-C = 80 × 100 = 8,000; B: 40 × 50 = 2,000; no cash.
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 30m), new Holding("A", 40m, Venue: "SIM-A"), new Holding("A", 10m, Venue: "SIM-C"), new Holding("B", 40m)], 0m, 1);
        var marked = PortfolioMarking.Mark(portfolio, HalfAndHalf, Prices);
        var a = marked.Find("A")!;
        Assert.Equal(80m, a.Quantity);
        Assert.Equal(8_000m, a.MarketValue);
        Assert.Equal(0.8, a.Weight, 12);
        Assert.Equal([new AccountQuantity("SIM-A", 40m), new AccountQuantity("", 30m), new AccountQuantity("SIM-C", 10m)], a.Accounts);
        Assert.Equal(80m, portfolio.QuantityOf("A"));
    }

    [Fact]
    public void A_sell_is_split_over_the_accounts_largest_first_and_a_buy_goes_to_the_largest_account()
    {
        // To 50/50 of 10,000: sell 30 A (3,000), buy 60 B. SIM-A's 40 cover the sell alone; with SIM-A holding 20 the
        // sell takes 20 there and 10 from the default account (30 > 10 on SIM-C).
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 30m), new Holding("A", 40m, Venue: "SIM-A"), new Holding("A", 10m, Venue: "SIM-C"), new Holding("B", 40m, Venue: "SIM-B")], 0m, 1);
        var proposal = RebalancePlanner.Propose(PortfolioMarking.Mark(portfolio, HalfAndHalf, Prices), HalfAndHalf, force: true);
        Assert.Equal([("L1", "A", TradeSide.Sell, 30m, "SIM-A"), ("L2", "B", TradeSide.Buy, 60m, "SIM-B")],
            proposal.Legs.Select(l => (l.LegId, l.InstrumentId, l.Side, l.Quantity, l.Venue)));

        var smaller = portfolio with { Holdings = [new Holding("A", 50m), new Holding("A", 20m, Venue: "SIM-A"), new Holding("A", 10m, Venue: "SIM-C"), new Holding("B", 40m)] };
        var split = RebalancePlanner.Propose(PortfolioMarking.Mark(smaller, HalfAndHalf, Prices), HalfAndHalf, force: true);
        Assert.Equal([("L1", "A", 30m, ""), ("L2", "B", 60m, "")], split.Legs.Select(l => (l.LegId, l.InstrumentId, l.Quantity, l.Venue)));

        var spread = portfolio with { Holdings = [new Holding("A", 25m), new Holding("A", 20m, Venue: "SIM-A"), new Holding("A", 35m, Venue: "SIM-C"), new Holding("B", 40m)] };
        var three = RebalancePlanner.Propose(PortfolioMarking.Mark(spread, HalfAndHalf with { Trading = TradeRules.Default with { EstimatedCostBps = 10 } }, Prices), HalfAndHalf with { Trading = TradeRules.Default with { EstimatedCostBps = 10 } }, force: true);
        var sells = three.Legs.Where(l => l.Side == TradeSide.Sell).ToArray();
        Assert.Equal([("SIM-C", 30m)], sells.Select(l => (l.Venue, l.Quantity)));
        Assert.Equal(3m, sells[0].EstimatedCost); // 10 bp of 3,000

        // 80 A must go (to 0 % A): 35 on SIM-C, 25 in the default account, 20 on SIM-A — three legs, costs split.
        var allOut = TargetPolicy.Of(new Dictionary<string, double> { ["B"] = 0.9 }, TradeRules.Default with { EstimatedCostBps = 10 }, new DriftBands(0.05));
        var out3 = RebalancePlanner.Propose(PortfolioMarking.Mark(spread, allOut, Prices), allOut, force: true);
        var outSells = out3.Legs.Where(l => l.Side == TradeSide.Sell).ToArray();
        Assert.Equal([("L1", "SIM-C", 35m), ("L2", "", 25m), ("L3", "SIM-A", 20m)], outSells.Select(l => (l.LegId, l.Venue, l.Quantity)));
        Assert.Equal(8m, outSells.Sum(l => l.EstimatedCost)); // 10 bp of 8,000, split with the quantity
        Assert.Equal(0.8, outSells[0].WeightBefore, 12);
        Assert.Equal(0.45, outSells[0].WeightAfter, 12);
        Assert.Equal(0.45, outSells[1].WeightBefore, 12);
        Assert.Equal(0.0, outSells[2].WeightAfter, 12);
    }

    [Fact]
    public void Fills_book_to_the_account_of_their_leg_and_margined_accounts_keep_their_own_entry()
    {
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 30m), new Holding("A", 40m, Venue: "SIM-A")], 1_000m, 1);
        var sold = PortfolioLedger.ApplyFill(portfolio, "A", TradeSide.Sell, 40m, 100m, 1m, "SIM-A");
        Assert.Equal([new Holding("A", 30m)], sold.Holdings); // the SIM-A account emptied and removed
        Assert.Equal(1_000m + 4_000m - 1m, sold.Cash);
        var bought = PortfolioLedger.ApplyFill(sold, "A", TradeSide.Buy, 5m, 100m, 0m, "SIM-C");
        Assert.Equal([new Holding("A", 30m), new Holding("A", 5m, Venue: "SIM-C")], bought.Holdings);

        // Perpetual shorts on two venues: each averages its own entry; closing one realises against its own entry.
        var perps = new PortfolioSnapshot("p", [new Holding("X-PERP", -2m, 100m, "SIM-A"), new Holding("X-PERP", -1m, 120m, "SIM-B")], 0m, 1);
        var added = PortfolioLedger.ApplyMarginedFill(perps, "X-PERP", TradeSide.Sell, 2m, 110m, 0m, 1m, "SIM-A");
        Assert.Equal([new Holding("X-PERP", -4m, 105m, "SIM-A"), new Holding("X-PERP", -1m, 120m, "SIM-B")], added.Holdings);
        var closed = PortfolioLedger.ApplyMarginedFill(added, "X-PERP", TradeSide.Buy, 1m, 110m, 0m, 1m, "SIM-B");
        Assert.Equal(10m, closed.Cash); // short 1 from 120 bought back at 110
        Assert.Equal([new Holding("X-PERP", -4m, 105m, "SIM-A")], closed.Holdings);
    }

    [Fact]
    public void Collateral_is_supplied_from_the_default_account_first_then_the_largest_and_withdrawn_to_the_default()
    {
        var loan = new Loan("L", "LEND", [new LoanCollateral("A", 10m, 0.8)], 500m);
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 3m), new Holding("A", 4m, Venue: "SIM-A"), new Holding("A", 6m, Venue: "SIM-C")], 0m, 1, [loan], "EUR");
        var supplied = PortfolioLedger.ApplyLoanLeg(portfolio, GuardAction.SupplyCollateral, "L", "A", 8m, "EUR");
        Assert.Equal([new Holding("A", 4m, Venue: "SIM-A"), new Holding("A", 1m, Venue: "SIM-C")], supplied.Holdings); // 3 default, then 5 of SIM-C's 6
        Assert.Equal(18m, supplied.LoanList[0].Collateral[0].Quantity);
        var withdrawn = PortfolioLedger.ApplyLoanLeg(supplied, GuardAction.WithdrawCollateral, "L", "A", 2m, "EUR");
        Assert.Contains(new Holding("A", 2m), withdrawn.Holdings);
    }

    [Theory]
    [InlineData(GuardAction.Repay, "EUR", -5)]
    [InlineData(GuardAction.Borrow, "EUR", 5)]
    [InlineData(GuardAction.SupplyCollateral, "EUR", -5)]
    [InlineData(GuardAction.WithdrawCollateral, "EUR", 5)]
    [InlineData(GuardAction.SupplyCollateral, "A", 0)]
    [InlineData(GuardAction.WithdrawCollateral, "A", 0)]
    public void The_cash_a_loan_leg_moves_is_the_cash_the_ledger_books(GuardAction action, string asset, int expected)
    {
        // What execution counts against a plan's cash (the leg's cash_change) must be what planning books when it lands.
        var loan = new Loan("L", "LEND", [new LoanCollateral("A", 10m, 0.8), new LoanCollateral("EUR", 100m, 0.9)], 500m);
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 3m)], 1_000m, 1, [loan], "EUR");
        var booked = PortfolioLedger.ApplyLoanLeg(portfolio, action, "L", asset, 5m, "EUR").Cash - portfolio.Cash;
        Assert.Equal(expected, booked);
        Assert.Equal(booked, PortfolioLedger.LoanLegCash(action, asset, 5m, "EUR"));
    }

    [Theory]
    [InlineData("", "SIM-A", -40)]
    [InlineData("SIM-A", "", 40)]
    [InlineData("SIM-A", "SIM-B", 0)]
    public void The_cash_a_collateral_transfer_moves_is_the_cash_the_ledger_books(string from, string to, int expected)
    {
        var portfolio = new PortfolioSnapshot("p", [], 1_000m, 1, MarginAccounts: [new MarginCollateral("SIM-A", 100m), new MarginCollateral("SIM-B", 50m)]);
        var booked = PortfolioLedger.ApplyCollateralTransfer(portfolio, from, to, 40m).Cash - portfolio.Cash;
        Assert.Equal(expected, booked);
        Assert.Equal(booked, PortfolioLedger.TransferCash(from, to, 40m));
    }

    [Fact]
    public void The_monitor_s_evaluation_describes_only_what_breached_and_measures_the_same()
    {
        // A at 60 % against 50 % (breached, band 5 %), B at 37 % against 40 % (inside).
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.4 }, TradeRules.Default, new DriftBands(0.05));
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 60m), new Holding("B", 37m)], 300m, 1);
        var marked = PortfolioMarking.Mark(portfolio, policy, new Dictionary<string, decimal> { ["A"] = 100m, ["B"] = 100m });
        var full = DriftEvaluator.Evaluate(marked, policy);
        var lean = DriftEvaluator.Evaluate(marked, policy, describeAll: false);
        Assert.Equal(full.Reasons.Select(r => (r.Rule, r.InstrumentId, r.Measured, r.Threshold, r.Breached)), lean.Reasons.Select(r => (r.Rule, r.InstrumentId, r.Measured, r.Threshold, r.Breached)));
        Assert.Equal(full.TotalDrift, lean.TotalDrift);
        Assert.Equal([("A", true)], lean.Reasons.Where(r => r.Message.Length > 0).Select(r => (r.InstrumentId, r.Breached)));
        Assert.Equal(full.Reasons.Single(r => r.InstrumentId == "A").Message, lean.Reasons.Single(r => r.InstrumentId == "A").Message);
        Assert.All(full.Reasons, r => Assert.NotEmpty(r.Message));
    }

    [Fact]
    public void Foreign_cash_counts_in_the_net_value_and_the_cash_target_but_only_base_cash_buys()
    {
        // 2,000 EUR and 5,000 USD at 0.9 (4,500 EUR); 30 A at 100. NAV 9,500: A 31.58 %, cash 68.42 % in all.
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.8 }, TradeRules.Default, new DriftBands(0.05));
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 30m)], 2_000m, 1, CashBalances: [new CashBalance("USD", 5_000m)]);
        var marks = new Dictionary<string, decimal> { ["A"] = 100m, ["USD"] = 0.9m };
        var marked = PortfolioMarking.Mark(portfolio, policy, marks);
        Assert.Equal(9_500m, marked.NetValue);
        var usd = Assert.Single(marked.ForeignCash!);
        Assert.Equal(("USD", 5_000m, 0.9m, 4_500m), (usd.Currency, usd.Amount, usd.Rate, usd.Value));
        Assert.Equal(4_500.0 / 9_500, usd.Weight, 12);
        Assert.Equal(2_000.0 / 9_500, marked.CashWeight, 12);
        Assert.Equal(6_500.0 / 9_500, marked.TotalCashWeight, 12);
        Assert.Equal(((0.8 - (3_000.0 / 9_500)) + ((6_500.0 / 9_500) - 0.2)) / 2, DriftEvaluator.Evaluate(marked, policy).TotalDrift, 12);

        // To 80 % A = 7,600 means buying 46 A (4,600), but only the 2,000 EUR pay: 20 A.
        var proposal = RebalancePlanner.Propose(marked, policy, force: true);
        Assert.Equal([(TradeSide.Buy, 20m)], proposal.Legs.Select(l => (l.Side, l.Quantity)));
        Assert.Equal(0m, proposal.CashAfter);

        // Without a quote for the currency there is no valuation.
        var missing = Assert.Throws<RebalanceMesh.Domain.DomainException>(() => PortfolioMarking.Mark(portfolio, policy, new Dictionary<string, decimal> { ["A"] = 100m }));
        Assert.Contains("USD", missing.Message);
    }
}
