using FsCheck;
using FsCheck.Fluent;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// The monitor's fast path, <see cref="BandScreen"/>, decides what the full evaluation (decimal marking and
/// <see cref="DriftEvaluator"/>) decides: on a hand-computed case, and on random plain portfolios, where it may only
/// abstain (Undecided), never contradict.
/// </summary>
public sealed class BandScreenTests
{
    private static readonly string[] Slots = ["A", "B", "C", "D", "E", "F", "G", "H"];

    private static int SlotOf(string instrument) => Array.IndexOf(Slots, instrument);

    [Fact]
    public void A_hand_computed_portfolio_is_screened_as_the_full_evaluation_measures_it()
    {
        // 10 A at 10 and 5 B at 20, no cash: weights 0.5 / 0.5 against targets 0.6 / 0.4, absolute band 5 pp: both
        // positions drift 10 pp (breached), total drift (0.1 + 0.1 + 0) / 2 = 0.1.
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.6, ["B"] = 0.4 }, TradeRules.Default, new DriftBands(0.05));
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 10m), new Holding("B", 5m)], 0m, 1);
        var screen = BandScreen.TryCompile(portfolio, policy, SlotOf)!;
        double[] prices = [10, 20, double.NaN];
        bool[] spot = [true, true, false];
        var (verdict, total) = screen.Screen(prices, spot);
        Assert.Equal(ScreenVerdict.Breached, verdict);
        Assert.Equal(0.1, total, 12);
        var reasons = screen.BreachedReasons(prices);
        Assert.Equal(["absolute_band:A", "absolute_band:B"], reasons.Select(r => r.Rule + ":" + r.InstrumentId));
        Assert.All(reasons, r => Assert.Equal(0.1, r.Measured, 12));
        Assert.Equal("A: weight 50.00 % vs target 60.00 %, drift 10.00 % > absolute band 5.00 %", reasons[0].Message);

        // A at 11.5: weights 115 / 215 = 0.5349 and 0.4651; drifts 6.51 pp (breached). At 12: 0.5455 / 0.4545, drift
        // 5.45 pp; at 12.4: 124 / 224 = 0.5536, drift 4.64 pp: inside.
        Assert.Equal(ScreenVerdict.Breached, screen.Screen([12, 20], [true, true]).Verdict);
        Assert.Equal(ScreenVerdict.Inside, screen.Screen([12.4, 20], [true, true]).Verdict);

        // On the edge: 10 A at 10 and 100 of cash against a target of 0.45 — weight 0.5, drift exactly the 5 pp band.
        // Within 1e-9 of its limit a measurement is not decided in doubles.
        var edge = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.45 }, TradeRules.Default, new DriftBands(0.05));
        var onEdge = BandScreen.TryCompile(new PortfolioSnapshot("q", [new Holding("A", 10m)], 100m, 1), edge, SlotOf)!;
        Assert.Equal(ScreenVerdict.Undecided, onEdge.Screen([10], [true]).Verdict);

        // Not spot (a margined contract, an option), or no price: the full evaluation decides.
        Assert.Equal(ScreenVerdict.Undecided, screen.Screen([10, 20], [true, false]).Verdict);
        Assert.Equal(ScreenVerdict.Undecided, screen.Screen([10, double.NaN], [true, true]).Verdict);
    }

    [Fact]
    public void Portfolios_that_are_not_plain_are_not_compiled()
    {
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5 }, TradeRules.Default, new DriftBands(0.05));
        var plain = new PortfolioSnapshot("p", [new Holding("A", 1m)], 10m, 1);
        Assert.NotNull(BandScreen.TryCompile(plain, policy, SlotOf));
        Assert.Null(BandScreen.TryCompile(plain with { CashBalances = [new CashBalance("USD", 5m)] }, policy, SlotOf));
        Assert.NotNull(BandScreen.TryCompile(plain with { Loans = [new Loan("L", "LEND-A", [new LoanCollateral("A", 1m, 0.8)], 5m)] }, policy, SlotOf));
        Assert.Null(BandScreen.TryCompile(plain with { MarginAccounts = [new MarginCollateral("SIM-A", 5m)] }, policy, SlotOf));
        Assert.Null(BandScreen.TryCompile(plain with { Holdings = [new Holding("A", 1m, EntryPrice: 10m)] }, policy, SlotOf));
        Assert.Null(BandScreen.TryCompile(plain, policy.With(new RiskLimits(0, 0.2, 0)), SlotOf));
        Assert.Null(BandScreen.TryCompile(plain, policy.With(new DeltaHedges([new HedgeRule("A", "B", 0, 0.1)])), SlotOf));
    }

    [Fact]
    public void A_loan_inside_its_health_factor_band_is_screened_and_one_outside_or_near_it_goes_to_the_full_evaluation()
    {
        // 10 A at 10 and 5 B at 20 against 50 / 50 targets: inside a 5 pp band. Loan L: 10 A pledged at a liquidation
        // threshold of 0.8 against 50 of cash debt: health factor 10 × 10 × 0.8 / 50 = 1.6, inside [1.2, 2.0].
        var band = new HealthFactorBand(Target: 1.5, RepayBelow: 1.2, BoostAbove: 2.0, EmergencyBelow: 1.05);
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.5 }, TradeRules.Default, new DriftBands(0.05), band);
        var portfolio = new PortfolioSnapshot("p", [new Holding("A", 10m), new Holding("B", 5m)], 0m, 1, [new Loan("L", "LEND-A", [new LoanCollateral("A", 10m, 0.8)], 50m)], "EUR");
        var screen = BandScreen.TryCompile(portfolio, policy, SlotOf)!;
        Assert.Equal(ScreenVerdict.Inside, screen.Screen([10, 20], [true, true]).Verdict);
        Assert.Equal(1, screen.LoanCount);
        Assert.Equal("L", screen.LoanId(0));
        Assert.Equal(1.6, screen.HealthFactor(0, [10, 20])!.Value, 12);

        // A at 7: 10 × 7 × 0.8 / 50 = 1.12, below 1.2 (the guard repays); at 13: 2.08, above the boost level; at 7.5:
        // exactly 1.2, on the edge. The full evaluation decides all three.
        Assert.Equal(ScreenVerdict.Undecided, screen.Screen([7, 14], [true, true]).Verdict);
        Assert.Equal(ScreenVerdict.Undecided, screen.Screen([13, 26], [true, true]).Verdict);
        Assert.Equal(ScreenVerdict.Undecided, screen.Screen([7.5, 15], [true, true]).Verdict);

        // Debt owed in units of B and collateral in the base currency (worth 1): 100 EUR at 0.9 against 3 B at 20:
        // 90 / 60 = 1.5. Without a health-factor band a loan is not measured at all.
        var inB = portfolio with { Loans = [new Loan("M", "LEND-A", [new LoanCollateral("EUR", 100m, 0.9)], 3m, "B")] };
        Assert.Equal(1.5, BandScreen.TryCompile(inB, policy, SlotOf)!.HealthFactor(0, [10, 20])!.Value, 12);
        var bandsOnly = TargetPolicy.Of(policy.Targets, TradeRules.Default, new DriftBands(0.05));
        Assert.Equal(0, BandScreen.TryCompile(inB, bandsOnly, SlotOf)!.LoanCount);
    }

    /// <summary>A random plain portfolio and policy: 1–8 instruments, some held in two accounts, some untargeted or on the no-trade list.</summary>
    public sealed record Case(decimal[] Prices, decimal[] Held, decimal[] SecondAccount, double[] Targets, bool[] NoTrade, decimal Cash, double Absolute, double Relative, double Total);

    private static readonly Gen<Case> Cases =
        from n in Gen.Choose(1, 8)
        from prices in Gen.ArrayOf(Gen.Choose(1, 100_000).Select(p => p / 100m), n)
        from held in Gen.ArrayOf(Gen.Choose(0, 2_000).Select(q => q / 4m), n)
        from second in Gen.ArrayOf(Gen.Elements(0m, 0m, 3m, 0.5m), n)
        from raw in Gen.ArrayOf(Gen.Choose(0, 100), n)
        from noTrade in Gen.ArrayOf(Gen.Elements(false, false, false, true), n)
        from cash in Gen.Choose(0, 200_000).Select(c => (decimal)c)
        from absolute in Gen.Elements(0.0, 0.01, 0.02, 0.05, 0.1)
        from relative in Gen.Elements(0.0, 0.1, 0.25, 0.5)
        from total in Gen.Elements(0.0, 0.02, 0.05, 0.15)
        from invested in Gen.Choose(50, 100)
        let sum = Math.Max(1, raw.Sum())
        select new Case(prices, held, second, raw.Select(r => invested / 100.0 * r / sum).ToArray(), noTrade, cash, absolute, relative, total);

    /// <summary>A random plain portfolio with one or two loans under a health-factor band.</summary>
    public sealed record LoanCase(Case Book, (int Asset, int Units, int Threshold)[][] Collateral, (int Debt, int Asset)[] Debts, double RepayBelow, double BoostAbove, double EmergencyBelow);

    private static readonly Gen<(int, int, int)> Pledge =
        from asset in Gen.Choose(-1, 7) // -1: the base currency
        from units in Gen.Choose(1, 400)
        from threshold in Gen.Choose(50, 95)
        select (asset, units, threshold);

    private static readonly Gen<LoanCase> LoanCases =
        from book in Cases
        from loans in Gen.Choose(1, 2)
        from collateral in Gen.ArrayOf(Gen.Choose(1, 2).SelectMany(k => Gen.ArrayOf(Pledge, k)), loans)
        from debts in Gen.ArrayOf(Gen.Choose(0, 20_000).SelectMany(d => Gen.Choose(-1, 7).Select(a => (d, a))), loans)
        from repay in Gen.Elements(1.05, 1.2, 1.5)
        from boost in Gen.Elements(0.0, 2.0, 3.0)
        from emergency in Gen.Elements(0.0, 1.01)
        select new LoanCase(book, collateral, debts, repay, boost, emergency);

    [Fact]
    public void With_loans_the_screen_never_contradicts_the_guard_or_the_bands()
    {
        var decided = 0;
        Prop.ForAll(LoanCases.ToArbitrary(), lc =>
        {
            var c = lc.Book;
            var ids = Slots.Take(c.Prices.Length).ToArray();
            string Asset(int k) => k < 0 ? "EUR" : ids[k % ids.Length];
            var loans = lc.Collateral.Select((pledges, l) => new Loan($"L{l}", "LEND-A",
                pledges.Select(p => new LoanCollateral(Asset(p.Asset), p.Units, p.Threshold / 100.0)).DistinctBy(p => p.Asset).ToArray(),
                lc.Debts[l].Debt / (lc.Debts[l].Asset < 0 ? 1m : 100m), lc.Debts[l].Asset < 0 ? "" : Asset(lc.Debts[l].Asset))).ToArray();
            var policy = TargetPolicy.Of(ids.Select((id, i) => (id, c.Targets[i])).Where(t => t.Item2 > 0).ToDictionary(t => t.id, t => t.Item2),
                TradeRules.Default with { NoTrade = ids.Where((_, i) => c.NoTrade[i]).ToHashSet() },
                new DriftBands(c.Absolute, c.Relative, c.Total),
                new HealthFactorBand(Math.Max(lc.RepayBelow, 1.1), lc.RepayBelow, lc.BoostAbove, lc.EmergencyBelow));
            var portfolio = new PortfolioSnapshot("p", [.. ids.Select((id, i) => new Holding(id, c.Held[i]))], c.Cash, 1, loans, "EUR");
            var marks = ids.Select((id, i) => (id, c.Prices[i])).ToDictionary(x => x.id, x => InstrumentMark.Spot(x.Item2));
            var full = PlanComposer.Assess(portfolio, policy, marks);
            var screen = BandScreen.TryCompile(portfolio, policy, SlotOf)!;
            var prices = c.Prices.Select(p => (double)p).ToArray();
            var (verdict, total) = screen.Screen(prices, prices.Select(_ => true).ToArray());

            // The health factors the screen reports are the guard's, loan by loan (those in debt).
            var measured = full.Guard!.Reasons.DistinctBy(r => r.InstrumentId).ToDictionary(r => r.InstrumentId, r => r.Measured); // a loan's first reason is its health factor
            var screenedLoans = Enumerable.Range(0, screen.LoanCount).Where(i => screen.HealthFactor(i, prices) is not null).ToArray();
            var sameFactors = screenedLoans.Length == measured.Count
                && screenedLoans.All(i => Math.Abs(screen.HealthFactor(i, prices)!.Value - measured[screen.LoanId(i)]) <= 1e-9 * Math.Max(1, measured[screen.LoanId(i)]));
            if (verdict == ScreenVerdict.Undecided)
            {
                return sameFactors;
            }

            decided++;

            return sameFactors
                && !full.Guard.Acts && !full.Emergency && full.Guard.Reasons.All(r => !r.Breached)
                && (verdict == ScreenVerdict.Breached) == full.Bands.Breached
                && Math.Abs(total - full.Bands.TotalDrift) < 1e-9;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2_000));

        // Most random loans are inside their band: the screen must decide a fair share of the cases itself.
        Assert.True(decided > 200, $"the screen decided only {decided} of 2,000 cases");
    }

    [Fact]
    public void The_screen_never_contradicts_the_full_evaluation()
    {
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var ids = Slots.Take(c.Prices.Length).ToArray();
            var policy = TargetPolicy.Of(ids.Select((id, i) => (id, c.Targets[i])).Where(t => t.Item2 > 0).ToDictionary(t => t.id, t => t.Item2),
                TradeRules.Default with { NoTrade = ids.Where((_, i) => c.NoTrade[i]).ToHashSet() },
                new DriftBands(c.Absolute, c.Relative, c.Total));
            var holdings = ids.SelectMany((id, i) => new[] { new Holding(id, c.Held[i]), new Holding(id, c.SecondAccount[i], Venue: "SIM-B") })
                .Where(h => h.Quantity != 0 || h.Venue.Length == 0).ToArray();
            var portfolio = new PortfolioSnapshot("p", holdings, c.Cash, 1);
            var full = DriftEvaluator.Evaluate(PortfolioMarking.Mark(portfolio, policy, ids.Select((id, i) => (id, c.Prices[i])).ToDictionary(x => x.id, x => x.Item2)), policy);
            var screen = BandScreen.TryCompile(portfolio, policy, SlotOf)!;
            var prices = c.Prices.Select(p => (double)p).ToArray();
            var (verdict, total) = screen.Screen(prices, prices.Select(_ => true).ToArray());
            if (verdict == ScreenVerdict.Undecided)
            {
                return true;
            }

            var breached = full.Reasons.Where(r => r.Breached).ToArray();
            var screened = verdict == ScreenVerdict.Breached ? screen.BreachedReasons(prices) : [];
            return (verdict == ScreenVerdict.Breached) == full.Breached
                && Math.Abs(total - full.TotalDrift) < 1e-9
                && screened.Select(r => (r.Rule, r.InstrumentId, r.Message)).SequenceEqual(breached.Select(r => (r.Rule, r.InstrumentId, r.Message)))
                && screened.Zip(breached).All(p => Math.Abs(p.First.Measured - p.Second.Measured) < 1e-9 && p.First.Threshold == p.Second.Threshold);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2_000));
    }
}
