using FsCheck;
using FsCheck.Fluent;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Core.Blocks;
using RebalanceMesh.Execution.Core.Runs;

using RebalanceMesh.Execution.Simulators;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// A host for a <see cref="PlanRun"/> with nothing real behind it: quotes it is given, the simulated venues' pure
/// fills, stop answers from a script, no clock (waits are recorded, not waited). Every command and answer is kept.
/// </summary>
public sealed class ScriptedHost
{
    public Dictionary<string, VenueQuote[]> Quotes { get; } = new(StringComparer.Ordinal);

    public IReadOnlyList<VenueSpec> Venues { get; set; } = SimulatedVenues.Defaults;

    /// <summary>The stop answer to the n-th CheckStop (0-based); none: no stop.</summary>
    public Func<int, string?> StopAt { get; set; } = _ => null;

    /// <summary>Answers of operations (loan legs, top-ups, transfers), by leg id; none: accepted in full.</summary>
    public Dictionary<string, OperationDone> Operations { get; } = new(StringComparer.Ordinal);

    /// <summary>Answers a plan's block requests; none: each request is a block of its own, run on this host.</summary>
    public Func<JoinBlock, BlockJoined>? JoinBlocks { get; set; }

    /// <summary>Called after each wait: moves the market for the next slice.</summary>
    public Action<ScriptedHost>? OnWait { get; set; }

    public List<(RunCommand Command, RunObservation? Answer)> Log { get; } = [];

    public List<string> ClientOrderIds { get; } = [];

    private int _stops;

    public RunObservation? Answer(PlanRun run, RunCommand command)
    {
        RunObservation? answer = command switch
        {
            CheckStop => new StopChecked(StopAt(_stops++)),
            ReadMarkets read => new MarketsRead(read.Queries.Select(q => new MarketRead(Quotes.GetValueOrDefault(q.InstrumentId) ?? [], VenuesFor(q.Account))).ToArray()),
            ReadVenues venues => new VenuesRead(VenuesFor(venues.Account)),
            SendChildren send => new ChildrenDone(send.Children.Select(c =>
            {
                ClientOrderIds.Add(c.Child.ClientOrderId);
                var leg = run.Leg(c.LegId).Leg;
                return SimulatedVenue.Execute(c.Child, leg.Side, Venues.First(v => v.VenueId == c.Child.VenueId), c.Quote, c.Child.WorstPrice, c.Taken);
            }).ToArray()),
            RunOperation operation => Operations.GetValueOrDefault(operation.LegId) ?? new OperationDone(true, operation.Quantity, string.Empty),
            Wait => Waited(),
            Rest rest => new Rested(0, 0, 0, rest.Quotes, rest.Venues, string.Empty, 0),
            Report => new Published(),
            JoinBlock join => Blocks(join),
            _ => null,
        };
        Log.Add((command, answer));
        return answer;
    }

    private BlockJoined Blocks(JoinBlock join) => JoinBlocks?.Invoke(join) ?? new BlockJoined(join.Requests.Select(r =>
    {
        var block = new BlockRun(new BlockOrder("block-" + r.MemberId, r.InstrumentId, r.LotSize, [new BlockMember("plan", "portfolio", r)]));
        return Drive(block).Shares.Single();
    }).ToArray());

    /// <summary>Runs a block to its outcome on this host.</summary>
    public BlockOutcome Drive(BlockRun block)
    {
        for (var command = block.Start(); command is not Finished;)
        {
            var answer = Answer(block.VenueRun!, command) ?? throw new InvalidOperationException($"no answer to {command}");
            command = block.Next(answer);
        }

        return block.Outcome!;
    }

    private Waited Waited()
    {
        OnWait?.Invoke(this);
        return new Waited();
    }

    private IReadOnlyList<VenueSpec> VenuesFor(string account) => Venues.Where(v => account.Length == 0 || v.VenueId == account).ToArray();

    /// <summary>Runs the plan to its end; returns the observations in order (the run's journal).</summary>
    public List<RunObservation> Drive(PlanRun run)
    {
        var journal = new List<RunObservation>();
        for (var command = run.Start(); command is not Finished;)
        {
            var answer = Answer(run, command) ?? throw new InvalidOperationException($"no answer to {command}");
            journal.Add(answer);
            command = run.Next(answer);
        }

        return journal;
    }

    public IEnumerable<RunReport> Reports => Log.Select(l => l.Command).OfType<Report>().Select(r => r.What);
}

public class PlanRunTests
{
    private static VenueQuote[] Around(decimal mid, decimal size = 1_000m) =>
        [.. SimulatedVenues.Defaults.Select(v => new VenueQuote(v.VenueId, mid - 0.05m, mid + 0.05m, size, size))];

    private static RunPlan Plan(params RunLeg[] legs) => new("plan-1", "p1", legs, null, 0, new SliceStyle());

    [Fact]
    public void An_immediate_leg_is_routed_across_venues_by_all_in_cost_and_reported_filled()
    {
        // 2,500 units against 1,000 shown at each venue's touch (capped at half the depth by participation): the router
        // walks the books cheapest first; the leg fills in one routing and reports its end, then the plan's.
        var host = new ScriptedHost();
        host.Quotes["DAX"] = Around(100m);
        var run = new PlanRun(Plan(new RunLeg("L1", 1, LegAction.Trade, "DAX", OrderSide.Buy, 2_500m, 100m)));
        host.Drive(run);

        var leg = run.Leg("L1");
        Assert.Equal((2_500m, RunStatus.Filled), (leg.Filled, leg.Status));
        Assert.Equal(100m, leg.ArrivalPrice);
        Assert.Equal(RunStatus.Completed, run.Status);
        Assert.Equal([RunReportKind.LegDone, RunReportKind.PlanDone], host.Reports.Select(r => r.Kind));
        Assert.Equal("1/1 legs filled, fees " + leg.Fees.ToString("F2", System.Globalization.CultureInfo.InvariantCulture), run.Message);
        Assert.Equal(host.ClientOrderIds.Count, host.ClientOrderIds.Distinct().Count());
        Assert.All(host.ClientOrderIds, id => Assert.StartsWith("plan-1:L1-r1:", id, StringComparison.Ordinal));
    }

    [Fact]
    public void A_pov_leg_takes_its_share_of_the_displayed_liquidity_each_interval()
    {
        // 100 to sell; the venues display 3 × 100 on the bid at the start: at 10 % a slice is 30, one every 5 s, so
        // 30, 60, 90 and the last 10 — three waits of the interval, on no clock.
        var host = new ScriptedHost();
        host.Quotes["DAX"] = Around(100m, size: 100m);
        var plan = Plan(new RunLeg("L1", 1, LegAction.Trade, "DAX", OrderSide.Sell, 100m, 100m)) with { Style = new SliceStyle(PovRate: 0.10, PovInterval: TimeSpan.FromSeconds(5)) };
        var run = new PlanRun(plan);
        host.Drive(run);

        Assert.Equal([TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5)], host.Log.Select(l => l.Command).OfType<Wait>().Select(w => w.Delay));
        var sent = host.Log.Select(l => l.Command).OfType<SendChildren>().Select(s => s.Children.Sum(c => c.Child.Quantity)).ToArray();
        Assert.Equal([30m, 30m, 30m, 10m], sent);
        Assert.Equal((100m, RunStatus.Filled), (run.Leg("L1").Filled, run.Leg("L1").Status));
    }

    [Fact]
    public void A_twap_leg_waits_its_interval_between_slices_and_rereads_the_market()
    {
        var host = new ScriptedHost();
        host.Quotes["DAX"] = Around(100m);
        var plan = Plan(new RunLeg("L1", 1, LegAction.Trade, "DAX", OrderSide.Sell, 300m, 100m)) with { Style = new SliceStyle(TwapSlices: 3, TwapDuration: TimeSpan.FromMinutes(3)) };
        var run = new PlanRun(plan);
        host.OnWait = h => h.Quotes["DAX"] = Around(101m); // the market between slices
        host.Drive(run);

        Assert.Equal([TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(1)], host.Log.Select(l => l.Command).OfType<Wait>().Select(w => w.Delay));
        Assert.Equal(["plan-1:L1-s1-r1:1", "plan-1:L1-s2-r1:1", "plan-1:L1-s3-r1:1"], host.ClientOrderIds);
        Assert.Equal(300m, run.Leg("L1").Filled);
        Assert.True(run.Leg("L1").AveragePrice > 100m, "the later slices sold into the higher market");
    }

    [Fact]
    public void A_cancel_between_slices_stops_the_leg_and_every_leg_after_it()
    {
        var host = new ScriptedHost { StopAt = n => n >= 1 ? "cancelled: client" : null }; // none before leg 1, then after slice 1
        host.Quotes["DAX"] = Around(100m);
        host.Quotes["CAC"] = Around(50m);
        var plan = Plan(
            new RunLeg("L1", 1, LegAction.Trade, "DAX", OrderSide.Sell, 300m, 100m),
            new RunLeg("L2", 2, LegAction.Trade, "CAC", OrderSide.Buy, 10m, 50m)) with { Style = new SliceStyle(TwapSlices: 3, TwapDuration: TimeSpan.FromSeconds(30)) };
        var run = new PlanRun(plan);
        host.Drive(run);

        Assert.Equal(100m, run.Leg("L1").Filled);
        Assert.Equal((RunStatus.PartiallyFilled, "stopped after 1 of 3 slices: cancelled: client"), (run.Leg("L1").Status, run.Leg("L1").Message));
        Assert.Equal((RunStatus.Cancelled, "cancelled: client"), (run.Leg("L2").Status, run.Leg("L2").Message));
        Assert.Equal(RunStatus.Cancelled, run.Status);
    }

    [Fact]
    public void A_limit_stops_a_leg_whose_market_moved_beyond_it_and_says_so()
    {
        var host = new ScriptedHost();
        host.Quotes["DAX"] = Around(100m);
        var plan = Plan(new RunLeg("L1", 1, LegAction.Trade, "DAX", OrderSide.Buy, 200m, 100m)) with
        {
            MaxSlippageBps = 50,
            Style = new SliceStyle(TwapSlices: 2, TwapDuration: TimeSpan.FromSeconds(10)),
        };
        host.OnWait = h => h.Quotes["DAX"] = Around(101m); // +1 %: beyond the 0.5 % limit from arrival
        var run = new PlanRun(plan);
        host.Drive(run);

        Assert.Equal(100m, run.Leg("L1").Filled);
        Assert.Equal("stopped at the limit 100.5 (50 bps from arrival 100): every remaining venue quotes beyond it", run.Leg("L1").Message);
        Assert.Equal(RunStatus.PartiallyFilled, run.Status);
    }

    [Fact]
    public void A_refused_operation_stops_the_plan_and_a_repayment_pays_no_more_than_its_sale_raised()
    {
        var host = new ScriptedHost();
        host.Quotes["DAX"] = Around(100m);
        var plan = Plan(
            new RunLeg("G1", 1, LegAction.Trade, "DAX", OrderSide.Sell, 10m, 100m),
            new RunLeg("G2", 2, LegAction.Repay, "EUR", OrderSide.Buy, 5_000m, 1m, Account: "LEND-A", FundedByLegId: "G1", LoanId: "L1"),
            new RunLeg("G3", 3, LegAction.WithdrawCollateral, "DAX", OrderSide.Buy, 1m, 100m, Account: "LEND-A", LoanId: "L1"),
            new RunLeg("L1", 4, LegAction.Trade, "DAX", OrderSide.Buy, 1m, 100m));
        host.Operations["G3"] = new OperationDone(false, 0, "the health factor would fall below 1");
        var run = new PlanRun(plan);
        host.Drive(run);

        var sale = run.Leg("G1");
        var raised = decimal.Round((sale.Filled * sale.AveragePrice) - sale.Fees, 2, MidpointRounding.ToZero);
        Assert.Equal(raised, run.Leg("G2").Quantity);
        Assert.Equal(RunStatus.Filled, run.Leg("G2").Status);
        Assert.Contains(host.Reports, r => r.Kind == RunReportKind.Fill && r.Fill!.FillId == "plan-1:G2:loan" && r.Fill.Quantity == raised);
        Assert.Equal(RunStatus.Rejected, run.Leg("G3").Status);
        Assert.Equal("leg G3 (WithdrawCollateral on loan L1 at LEND-A) refused: the health factor would fall below 1; the plan stops", run.Leg("L1").Message);
        Assert.Equal(RunStatus.Cancelled, run.Status);
    }

    [Fact]
    public void A_hedge_follows_its_leg_to_the_same_share_after_every_slice()
    {
        var host = new ScriptedHost();
        host.Quotes["DAX"] = Around(100m);
        host.Quotes["DAX-PERP"] = Around(100m);
        var plan = Plan(
            new RunLeg("L1", 1, LegAction.Trade, "DAX", OrderSide.Buy, 400m, 100m),
            new RunLeg("H1", 2, LegAction.Trade, "DAX-PERP", OrderSide.Sell, 200m, 100m, Margined: true, HedgesLegId: "L1")) with
        {
            Style = new SliceStyle(TwapSlices: 4, TwapDuration: TimeSpan.FromSeconds(40)),
        };
        var run = new PlanRun(plan);
        var hedgeAfterSlice = new List<decimal>();
        host.OnWait = _ => hedgeAfterSlice.Add(run.Leg("H1").Filled);
        host.Drive(run);

        Assert.Equal([50m, 100m, 150m], hedgeAfterSlice); // half the leg's 100, 200, 300 after slices 1–3
        Assert.Equal((200m, RunStatus.Filled), (run.Leg("H1").Filled, run.Leg("H1").Status));
        Assert.Equal(RunStatus.Completed, run.Status);
    }

    [Fact]
    public void A_plans_sales_work_together_then_its_purchases_each_slice_in_step()
    {
        // Two sales and two purchases, TWAP in 2 slices: the sales go together (one batch of children per routing round,
        // one wait between their slices), then the purchases likewise — 2 waits in all, not one pair per leg.
        var host = new ScriptedHost();
        foreach (var id in new[] { "A", "B", "C", "D" })
        {
            host.Quotes[id] = Around(100m);
        }

        var plan = Plan(
            new RunLeg("L1", 1, LegAction.Trade, "A", OrderSide.Sell, 100m, 100m),
            new RunLeg("L2", 2, LegAction.Trade, "B", OrderSide.Sell, 50m, 100m),
            new RunLeg("L3", 3, LegAction.Trade, "C", OrderSide.Buy, 80m, 100m),
            new RunLeg("L4", 4, LegAction.Trade, "D", OrderSide.Buy, 60m, 100m)) with { Style = new SliceStyle(TwapSlices: 2, TwapDuration: TimeSpan.FromSeconds(20)) };
        var run = new PlanRun(plan);
        host.Drive(run);

        var sends = host.Log.Select(l => l.Command).OfType<SendChildren>().Select(s => s.Children.Select(c => c.LegId).Distinct().Order().ToArray()).ToArray();
        Assert.Equal([["L1", "L2"], ["L1", "L2"], ["L3", "L4"], ["L3", "L4"]], sends);
        Assert.Equal([TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10)], host.Log.Select(l => l.Command).OfType<Wait>().Select(w => w.Delay));
        Assert.All(run.Legs, l => Assert.Equal(RunStatus.Filled, l.Status));
        Assert.Equal(RunStatus.Completed, run.Status);
    }

    [Fact]
    public void Purchases_working_together_share_the_plans_cash_in_leg_order()
    {
        // 12,000 of cash for two purchases of 100 at about 100 each: the first is bought in full, the second only with
        // what the first's children may cost at their limits leaves — never both in full.
        var host = new ScriptedHost();
        host.Quotes["C"] = Around(100m);
        host.Quotes["D"] = Around(100m);
        var plan = Plan(
            new RunLeg("L1", 1, LegAction.Trade, "C", OrderSide.Buy, 100m, 100m),
            new RunLeg("L2", 2, LegAction.Trade, "D", OrderSide.Buy, 100m, 100m)) with { CashBudget = 12_000m };
        var run = new PlanRun(plan);
        host.Drive(run);

        Assert.Equal(100m, run.Leg("L1").Filled);
        Assert.InRange(run.Leg("L2").Filled, 1m, 20m);
        Assert.StartsWith("stopped by the plan's cash", run.Leg("L2").Message, StringComparison.Ordinal);
        Assert.True(run.CashLeft >= 0);
    }

    [Fact]
    public void The_plans_cash_cuts_a_purchase_it_cannot_pay()
    {
        var host = new ScriptedHost();
        host.Quotes["DAX"] = Around(100m);
        var plan = Plan(new RunLeg("L1", 1, LegAction.Trade, "DAX", OrderSide.Buy, 100m, 100m)) with { CashBudget = 5_000m };
        var run = new PlanRun(plan);
        host.Drive(run);

        Assert.InRange(run.Leg("L1").Filled, 49m, 50m);
        Assert.StartsWith("stopped by the plan's cash: 5000.00 left pays for", run.Leg("L1").Message, StringComparison.Ordinal);
        Assert.Equal(1, run.Leg("L1").CashCuts);
        Assert.True(run.CashLeft >= 0);
    }

    /// <summary>A random plan: 1–4 trade legs on two instruments, sides, quantities, style, limit, cash; and a market that moves.</summary>
    public sealed record Case(decimal[] Quantities, bool[] Buys, int Slices, double SlippageBps, decimal? Cash, decimal Size, int StopAfter, int[] Moves);

    private static readonly Gen<Case> Cases =
        from n in Gen.Choose(1, 4)
        from quantities in Gen.ArrayOf(Gen.Choose(1, 5_000).Select(q => q / 2m), n)
        from buys in Gen.ArrayOf(Gen.Elements(true, false), n)
        from slices in Gen.Choose(0, 5)
        from slippage in Gen.Elements(0.0, 20.0, 200.0)
        from cash in Gen.Elements<decimal?>(null, 0m, 20_000m, 1_000_000m)
        from size in Gen.Elements(50m, 500m, 5_000m)
        from stop in Gen.Choose(0, 30)
        from moves in Gen.ArrayOf(Gen.Choose(-300, 300), 12)
        select new Case(quantities, buys, slices, slippage, cash, size, stop, moves);

    private static (PlanRun Run, ScriptedHost Host) Build(Case c)
    {
        string[] instruments = ["DAX", "CAC"];
        var legs = c.Quantities.Select((q, i) => new RunLeg($"L{i + 1}", i + 1, LegAction.Trade, instruments[i % 2], c.Buys[i] ? OrderSide.Buy : OrderSide.Sell, q, 100m)).ToArray();
        var plan = new RunPlan("plan-x", "p", legs, c.Cash, c.SlippageBps, new SliceStyle(TwapSlices: c.Slices, TwapDuration: TimeSpan.FromSeconds(c.Slices)));
        var host = new ScriptedHost { StopAt = k => k == c.StopAfter ? "cancelled: property" : null };
        host.Quotes["DAX"] = Around(100m, c.Size);
        host.Quotes["CAC"] = Around(100m, c.Size);
        var waits = 0;
        host.OnWait = h =>
        {
            var move = c.Moves[waits++ % c.Moves.Length] / 100m;
            h.Quotes["DAX"] = Around(100m + move, c.Size);
            h.Quotes["CAC"] = Around(100m - move, c.Size);
        };
        return (new PlanRun(plan), host);
    }

    [Fact]
    public void Never_beyond_the_leg_the_caps_the_limit_or_the_cash_and_client_order_ids_never_repeat()
    {
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var (run, host) = Build(c);
            host.Drive(run);
            var sends = host.Log.Select(l => l.Command).OfType<SendChildren>().ToArray();
            var withinLimit = sends.SelectMany(s => s.Children).All(ch =>
            {
                var state = run.Leg(ch.LegId);
                var limit = c.SlippageBps > 0 && state.ArrivalPrice is { } a ? SlippageLimit.For(state.Leg.Side, a, c.SlippageBps) : (decimal?)null;
                return limit is null || (state.Leg.Side == OrderSide.Buy ? ch.Child.WorstPrice <= limit : ch.Child.WorstPrice >= limit);
            });
            // (The venues' participation caps are the router's own property: ExecutionPropertyTests.)
            return run.Legs.All(l => l.Filled <= l.Leg.Quantity)
                && withinLimit
                && (run.CashLeft is null || run.CashLeft >= 0)
                && host.ClientOrderIds.Count == host.ClientOrderIds.Distinct().Count()
                && run.Status is RunStatus.Completed or RunStatus.PartiallyFilled or RunStatus.Cancelled or RunStatus.Failed;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void Replaying_the_journal_after_a_restart_gives_the_same_commands_and_carries_on()
    {
        Prop.ForAll(Cases.ToArbitrary(), Gen.Choose(0, 60).ToArbitrary(), (c, crashAt) =>
        {
            var (first, host) = Build(c);
            var journal = host.Drive(first);
            var commands = host.Log.Select(l => l.Command).ToArray();

            // A run restarted after `crashAt` answers: its journal replays it to the very command it was waiting on, with
            // the same state; from there the host carries on for real and the run ends as any run does.
            var kept = Math.Min(crashAt, journal.Count);
            var replayed = new PlanRun(first.Plan);
            var seen = new List<RunCommand> { replayed.Start() };
            foreach (var answer in journal.Take(kept))
            {
                seen.Add(replayed.Next(answer));
            }

            var sameCommands = seen.SequenceEqual(commands.Append(new Finished()).Take(kept + 1), CommandComparer.Instance);
            var (_, carryOn) = Build(c);
            for (var command = seen[^1]; command is not Finished;)
            {
                command = replayed.Next(carryOn.Answer(replayed, command)!);
            }

            var wholeReplay = new PlanRun(first.Plan);
            wholeReplay.Start();
            foreach (var answer in journal)
            {
                wholeReplay.Next(answer);
            }

            return sameCommands
                && replayed.Legs.All(l => l.Filled <= l.Leg.Quantity)
                && wholeReplay.Status == first.Status
                && wholeReplay.Legs.Select(l => (l.Filled, l.AveragePrice, l.Fees, l.Status)).SequenceEqual(first.Legs.Select(l => (l.Filled, l.AveragePrice, l.Fees, l.Status)));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(200));
    }

    /// <summary>Commands compared by what they ask (records hold lists, compared element by element).</summary>
    private sealed class CommandComparer : IEqualityComparer<RunCommand>
    {
        public static readonly CommandComparer Instance = new();

        public bool Equals(RunCommand? x, RunCommand? y) => (x, y) switch
        {
            (SendChildren a, SendChildren b) => a.Children.SequenceEqual(b.Children),
            (ReadMarkets a, ReadMarkets b) => a.Queries.SequenceEqual(b.Queries),
            (Rest a, Rest b) => a with { Quotes = [], Venues = [] } == b with { Quotes = [], Venues = [] } && a.Quotes.SequenceEqual(b.Quotes),
            _ => object.Equals(x, y),
        };

        public int GetHashCode(RunCommand obj) => obj.GetType().GetHashCode();
    }
}
