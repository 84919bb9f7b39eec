using FsCheck;
using FsCheck.Fluent;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Invariants of plan building, checked by FsCheck over random portfolios, policies and loans (seeded by FsCheck;
/// a failure prints the smallest counter-example it finds).
/// </summary>
public class PlanningPropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(300);

    /// <summary>A random portfolio and policy: 1–6 instruments, prices, holdings, cash, targets summing to ≤ 1, lots, minimum notional, cost, maximum slippage.</summary>
    public sealed record Case(decimal[] Prices, decimal[] Held, decimal Cash, double[] Targets, decimal[] Lots, decimal MinNotional, double CostBps, bool Optimal, double SlippageBps = 0);

    private static readonly Gen<Case> Cases =
        from n in Gen.Choose(1, 6)
        from prices in Gen.ArrayOf(Gen.Choose(1, 100_000).Select(p => p / 100m), n)
        from held in Gen.ArrayOf(Gen.Choose(0, 2_000).Select(q => (decimal)q), n)
        from cash in Gen.Choose(0, 1_000_000).Select(c => (decimal)c)
        from raw in Gen.ArrayOf(Gen.Choose(0, 100), n)
        from invested in Gen.OneOf(Gen.Choose(0, 100), Gen.Constant(100)) // fully invested half the time: cash binds
        from lots in Gen.ArrayOf(Gen.Elements(1m, 5m, 10m, 0.5m, 0.01m), n)
        from minNotional in Gen.Elements(0m, 100m, 1_000m)
        from cost in Gen.Elements(0.0, 5.0, 25.0)
        from optimal in Gen.Elements(false, true)
        from slippage in Gen.Elements(0.0, 10.0, 150.0)
        let total = Math.Max(raw.Sum(), 1)
        select new Case(prices, held, cash, raw.Select(r => invested / 100.0 * r / total).ToArray(), lots, minNotional, cost, optimal, slippage);

    private static (MarkedPortfolio Marked, TargetPolicy Policy, PortfolioSnapshot Snapshot) Build(Case c)
    {
        var ids = Enumerable.Range(0, c.Prices.Length).Select(i => $"I{i}").ToArray();
        var policy = TargetPolicy.Of(ids.Select((id, i) => (id, c.Targets[i])).ToDictionary(x => x.id, x => x.Item2),
            new TradeRules(RebalanceTarget.Target, c.MinNotional, ids.Select((id, i) => (id, c.Lots[i])).ToDictionary(x => x.id, x => x.Item2), c.CostBps,
                OptimalLotRounding: c.Optimal, MaxSlippageBps: c.SlippageBps),
            new DriftBands(0.01));
        var snapshot = new PortfolioSnapshot("p", ids.Select((id, i) => new Holding(id, c.Held[i])).Where(h => h.Quantity != 0).ToArray(), c.Cash, 1);
        var marked = PortfolioMarking.Mark(snapshot, policy, ids.Select((id, i) => (id, c.Prices[i])).ToDictionary(x => x.id, x => x.Item2));
        return (marked, policy, snapshot);
    }

    [Fact]
    public void A_plan_never_takes_cash_negative_at_any_step_and_sells_precede_buys()
    {
        // At the planned prices, and at the worst prices execution accepts under the policy's maximum slippage (sells
        // that much cheaper, buys that much dearer).
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var (marked, policy, snapshot) = Build(c);
            var proposal = RebalancePlanner.Propose(marked, policy, force: true);
            var portfolio = snapshot;
            var worst = snapshot;
            foreach (var leg in proposal.Legs)
            {
                portfolio = PortfolioLedger.ApplyFill(portfolio, leg.InstrumentId, leg.Side, leg.Quantity, leg.ReferencePrice, leg.EstimatedCost);
                var worstPrice = leg.ReferencePrice * (leg.Side == TradeSide.Buy ? 1 + policy.SlippageReserve : 1 - policy.SlippageReserve);
                worst = PortfolioLedger.ApplyFill(worst, leg.InstrumentId, leg.Side, leg.Quantity, worstPrice, leg.EstimatedCost);
                if (portfolio.Cash < 0 || worst.Cash < 0)
                {
                    return false;
                }
            }

            var sides = proposal.Legs.Select(l => l.Side).ToArray();
            return sides.SkipWhile(s => s == TradeSide.Sell).All(s => s == TradeSide.Buy) && portfolio.Cash == proposal.CashAfter;
        }).Check(Runs);
    }

    [Fact]
    public void Rounding_keeps_whole_lots_minimum_notionals_and_never_trades_past_the_target()
    {
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var (marked, policy, _) = Build(c);
            var proposal = RebalancePlanner.Propose(marked, policy, force: true);
            return proposal.Legs.All(leg =>
            {
                var position = marked.Find(leg.InstrumentId)!;
                var lot = policy.LotSize(leg.InstrumentId);
                var desired = (((decimal)policy.TargetOf(leg.InstrumentId) * marked.NetValue) - position.MarketValue) / position.Price;
                var signed = leg.Side == TradeSide.Buy ? leg.Quantity : -leg.Quantity;
                return leg.Quantity % lot == 0
                    && leg.Notional >= policy.Trading.MinTradeNotional
                    && Math.Sign(signed) == Math.Sign(desired)
                    && Math.Abs(signed) <= Math.Abs(desired) + lot;  // at most one lot past the unrounded trade (CP-SAT), none when truncating
            });
        }).Check(Runs);
    }

    /// <summary>
    /// A random loan: collateral units, price, threshold, debt value; free cash and held units of the collateral; and,
    /// when <paramref name="DebtPrice"/> is set, debt owed in units of an instrument Y at that price (with held Y units).
    /// </summary>
    public sealed record LoanCase(decimal Units, decimal Price, double Threshold, decimal Debt, decimal Cash, decimal Held, double Target, double Cost, decimal? DebtPrice, decimal HeldDebt);

    private static readonly Gen<LoanCase> Loans =
        from units in Gen.Choose(1, 1_000).Select(u => (decimal)u)
        from price in Gen.Choose(100, 500_000).Select(p => p / 100m)
        from threshold in Gen.Choose(50, 95).Select(t => t / 100.0)
        from leverage in Gen.Choose(10, 120).Select(l => l / 100m)
        from cash in Gen.Choose(0, 100_000).Select(c => (decimal)c)
        from held in Gen.Choose(0, 200).Select(h => (decimal)h)
        from target in Gen.Choose(110, 300).Select(t => t / 100.0)
        from cost in Gen.Elements(0.0, 0.001, 0.005)
        from debtPrice in Gen.OneOf(Gen.Constant((decimal?)null), Gen.Choose(1, 400_000).Select(p => (decimal?)(p / 100m)))
        from heldDebt in Gen.Choose(0, 50).Select(h => (decimal)h)
        let debtValue = units * price * leverage
        select new LoanCase(units, price, threshold,
            debtPrice is { } dp ? decimal.Round(debtValue / dp, 8) : decimal.Round(debtValue, 2),
            cash, held, target, cost, debtPrice, debtPrice is null ? 0 : heldDebt);

    [Fact]
    public void The_guard_restores_the_target_health_factor_whenever_it_says_it_can()
    {
        Prop.ForAll(Loans.ToArbitrary(), c =>
        {
            var holdings = new List<Holding>();
            if (c.Held > 0)
            {
                holdings.Add(new Holding("X", c.Held));
            }

            if (c.HeldDebt > 0)
            {
                holdings.Add(new Holding("Y", c.HeldDebt));
            }

            var portfolio = new PortfolioSnapshot("p", holdings, c.Cash, 1,
                [new Loan("L", "LEND", [new LoanCollateral("X", c.Units, c.Threshold)], c.Debt, c.DebtPrice is null ? string.Empty : "Y")], "EUR");
            var band = new HealthFactorBand(c.Target, c.Target, 0, 0);
            var prices = new Dictionary<string, decimal> { ["X"] = c.Price, ["Y"] = c.DebtPrice ?? 1m };
            var plan = LiquidationGuard.Plan(portfolio, prices, "EUR", band, (decimal)c.Cost);
            var after = LiquidationGuard.Apply(portfolio, plan, "EUR", (decimal)c.Cost);
            var hf = MarkedLoan.Mark(after.LoanList[0], a => a == "EUR" ? 1m : prices[a]).HealthFactor;
            var unreachable = plan.Reasons.Any(r => r.Message.Contains("out of reach", StringComparison.Ordinal));
            var cashOk = after.Cash >= 0 && after.Holdings.All(h => h.Quantity >= 0) && after.LoanList[0].Collateral[0].Quantity >= 0 && after.LoanList[0].Debt >= 0;

            // Leg by leg, no withdrawal leaves the health factor below 1 (a lending venue would refuse it).
            var step = portfolio;
            var venueOk = true;
            foreach (var leg in plan.Legs)
            {
                step = LiquidationGuard.Apply(step, new GuardPlan([leg], [], false), "EUR", (decimal)c.Cost);
                venueOk &= leg.Action != GuardAction.WithdrawCollateral || MarkedLoan.Mark(step.LoanList[0], a => a == "EUR" ? 1m : prices[a]).HealthFactor >= 1;
            }

            return cashOk && venueOk && (unreachable || hf >= c.Target - 1e-9);
        }).Check(Runs);
    }

    /// <summary>A random book of perpetuals: per position quantity (signed), entry and mark; free cash; band and costs.</summary>
    public sealed record MarginCase((int Quantity, decimal Entry, decimal Mark)[] Positions, decimal Cash, double Target, double Rate, double Cost);

    private static readonly Gen<MarginCase> Books =
        from count in Gen.Choose(1, 5)
        from positions in Gen.ArrayOf(
            from quantity in Gen.Choose(-500, 500).Where(q => q != 0)
            from entry in Gen.Choose(1_000, 50_000).Select(e => e / 100m)
            from move in Gen.Choose(-30, 30).Select(m => 1 + (m / 100m))
            select (quantity, entry, decimal.Round(entry * move, 2)), count)
        from cash in Gen.Choose(0, 200_000).Select(c => (decimal)c)
        from target in Gen.Choose(120, 400).Select(t => t / 100.0)
        from rate in Gen.Elements(0.02, 0.05, 0.1)
        from cost in Gen.Elements(0.0, 0.0005, 0.002)
        select new MarginCase(positions, cash, target, rate, cost);

    [Fact]
    public void The_margin_guard_restores_the_target_ratio_whenever_it_says_it_can_and_only_closes()
    {
        Prop.ForAll(Books.ToArbitrary(), c =>
        {
            var holdings = c.Positions.Select((p, i) => new Holding($"P{i}", p.Quantity, p.Entry)).ToArray();
            var marks = c.Positions.Select((p, i) => (id: $"P{i}", mark: new InstrumentMark(p.Mark, Margined: true, DeltaExposure: (double)p.Mark)))
                .ToDictionary(x => x.id, x => x.mark);
            var portfolio = new PortfolioSnapshot("p", holdings, c.Cash, 1);
            var marked = PortfolioMarking.Mark(portfolio, null, marks);
            var band = new MarginBand(c.Target, c.Target, 0, c.Rate);
            var plan = MarginGuard.Plan(marked, holdings, marks, band, (decimal)c.Cost);
            var after = MarginGuard.Apply(portfolio, plan, (decimal)c.Cost);
            var again = MarginGuard.Plan(PortfolioMarking.Mark(after, null, marks), after.Holdings, marks, band, (decimal)c.Cost);
            var unreachable = plan.Reasons.Any(r => r.Message.Contains("out of reach", StringComparison.Ordinal)) || marked.NetValue <= 0;
            var onlyCloses = after.Holdings.All(h => holdings.Any(o => o.InstrumentId == h.InstrumentId && Math.Sign(o.Quantity) == Math.Sign(h.Quantity) && Math.Abs(h.Quantity) <= Math.Abs(o.Quantity)));
            var restored = again.Reasons.Count == 0 || again.Reasons[0].Measured >= c.Target - 1e-9;
            return onlyCloses && (unreachable || restored);
        }).Check(Runs);
    }
}
