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

/// <summary>Plans through the execution service: routing, slicing, limits, cash, stops, reports, connectors.</summary>
public sealed class ExecutionServiceTests(RedisServer redis) : ExecutionServiceTestBase(redis), IClassFixture<RedisServer>
{
    [Fact]
    public async Task Only_mesh_callers_with_a_deadline_are_served()
    {
        var request = new ListVenuesRequest();
        await RpcAssert.StatusAsync(() => new ExecutionService.ExecutionServiceClient(Server.CreateInvoker()).ListVenuesAsync(request).ResponseAsync, StatusCode.Unauthenticated);

        // A client token (even planning's admin) is not a mesh credential; neither is a wrong mesh credential.
        await RpcAssert.StatusAsync(() => new ExecutionService.ExecutionServiceClient(Server.CreateInvoker(TestAuth.Token(RebalanceMesh.ServiceDefaults.MeshAuth.Admin))).ListVenuesAsync(request).ResponseAsync, StatusCode.Unauthenticated);
        await RpcAssert.StatusAsync(() => new ExecutionService.ExecutionServiceClient(Server.CreateInvoker(meshToken: RebalanceMesh.ServiceDefaults.MeshAuth.NewSecret())).ListVenuesAsync(request).ResponseAsync, StatusCode.Unauthenticated);

        // A mesh caller without a deadline is refused, naming the header; with one it is served.
        var noDeadline = new ExecutionService.ExecutionServiceClient(Server.CreateInvoker(meshToken: TestAuth.MeshToken, defaultDeadline: false));
        await RpcAssert.InvalidArgumentAsync(() => noDeadline.ListVenuesAsync(request).ResponseAsync, RebalanceMesh.ServiceDefaults.RequiredDeadlineInterceptor.Field);
        Assert.NotEmpty((await noDeadline.ListVenuesAsync(request, deadline: DateTime.UtcNow.AddSeconds(5))).Venues);

        // Probes need neither.
        var health = new Grpc.Health.V1.Health.HealthClient(Server.CreateInvoker(defaultDeadline: false));
        Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest { Service = "liveness" })).Status);
    }

    [Fact]
    public async Task Executes_an_approved_plan_and_reports_fills_legs_and_completion()
    {
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, Plan("plan-x"));
        var execution = await WaitForFinalAsync("plan-x");

        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        // Sell 10: SIM-A bid 99.9 less 10 bps = 99.8001 vs SIM-B 99.8 less 5 bps = 99.7501 → SIM-A.
        // Buy 150, walking the books (SIM-A: 1 bp steps, size doubling a level): SIM-A's touch 100.10 × 100 is 100.2001
        // all-in and its next level 100.11001 × 200 is 100.21012 — both cheaper than SIM-B's touch 100.2 · 1.0005 =
        // 100.2501. So all 150 go to SIM-A: 100 at the touch, 50 one level deeper.
        Assert.Equal(
            [("plan-x:L1-r1:1", "SIM-A", 10m), ("plan-x:L2-r1:1", "SIM-A", 150m)],
            execution.Orders.Select(o => (o.ClientOrderId, o.Venue, o.FilledQuantity.ToDecimal())));
        var average = decimal.Round(((100m * 100.1m) + (50m * 100.11001m)) / 150m, 8);
        var buy = execution.Legs.Single(l => l.LegId == "L2");
        Assert.Equal(average, buy.AveragePrice.ToDecimal());

        var reports = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).ToArray();
        Assert.Equal(2, reports.Count(r => r.Kind == ReportKind.Fill));
        Assert.Equal(2, reports.Count(r => r.Kind == ReportKind.LegDone));
        Assert.Equal(ReportedPlanStatus.Completed, reports.Single(r => r.Kind == ReportKind.PlanDone).PlanStatus);

        // Shortfall against arrival (mid 100.00) and against the plan's reference price (100): the sell gave up 10 bp,
        // the buy paid (average − 100) / 100.
        var legsDone = reports.Where(r => r.Kind == ReportKind.LegDone).ToDictionary(r => r.LegId);
        Assert.Equal(10, legsDone["L1"].ShortfallVsPlanBps, 9);
        Assert.Equal((average - 100m) / 100m * 10_000m, (decimal)legsDone["L2"].ShortfallVsPlanBps, 9);
        Assert.Equal(legsDone["L2"].ShortfallBps, legsDone["L2"].ShortfallVsPlanBps, 9); // arrival and reference agree here

        // Realised costs per venue, once per fill: SIM-A sold 10 at 99.9 and bought 150 at the average (0.10 a unit
        // beyond the mid at the touch, 0.11001 one level deeper); SIM-B traded nothing.
        var venues = (await Client.ListVenuesAsync(new ListVenuesRequest())).Venues.ToDictionary(v => v.VenueId);
        var simA = venues["SIM-A"].RealisedCosts;
        Assert.Equal(2, simA.Fills);
        Assert.Equal((double)((10m * 99.9m) + (150m * average)), simA.Notional, 6);
        Assert.Equal((double)((0.1m * 10) + (150m * (average - 100m))), simA.Slippage, 5);
        Assert.Equal(venues["SIM-A"].TakerFeeBps, simA.FeeBps, 6);
        Assert.Equal(0, venues["SIM-B"].RealisedCosts.Fills);
    }

    [Fact]
    public async Task Limit_price_protection_skips_venues_beyond_the_maximum_slippage_and_stops_legs_that_cannot_fill()
    {
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();

        // Arrival mid 100.00. At 15 bps the buy limit is 100.15: SIM-A (100.10) trades, SIM-B (100.20) does not.
        var within = Plan("plan-limit-15");
        within.MaxSlippageBps = 15;
        await bus.PublishAsync(Topics.PlansApproved, within);
        var execution = await WaitForFinalAsync("plan-limit-15");
        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        Assert.DoesNotContain(execution.Orders, o => o.Venue == "SIM-B");

        // At 5 bps neither the buy limit 100.05 nor the sell limit 99.95 is reachable: both legs stop and say why.
        var tight = Plan("plan-limit-5");
        tight.MaxSlippageBps = 5;
        await bus.PublishAsync(Topics.PlansApproved, tight);
        execution = await WaitForFinalAsync("plan-limit-5");
        Assert.Equal(ExecutionStatus.Failed, execution.Status);
        Assert.Empty(execution.Orders);
        var legsDone = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser))
            .Where(r => r.PlanId == "plan-limit-5" && r.Kind == ReportKind.LegDone).ToArray();
        Assert.Equal(2, legsDone.Length);
        Assert.All(legsDone, r => Assert.StartsWith("stopped at the limit", r.Message, StringComparison.Ordinal));
        Assert.Contains("99.95 ", legsDone.Single(r => r.LegId == "L1").Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TWAP_sends_each_leg_in_equal_slices_at_equal_intervals()
    {
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var plan = Plan("plan-twap");
        plan.TwapSlices = 3;
        plan.TwapDurationSeconds = 0.6;
        await bus.PublishAsync(Topics.PlansApproved, plan);
        var execution = await WaitForFinalAsync("plan-twap");

        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        var buys = execution.Orders.Where(o => o.LegId == "L2").ToArray();
        Assert.Equal(["s1", "s2", "s3"], buys.Select(o => o.ClientOrderId.Split(':')[1].Split('-')[1]).Distinct());
        Assert.Equal([50m, 50m, 50m], buys.GroupBy(o => o.ClientOrderId.Split(':')[1].Split('-')[1]).Select(g => g.Sum(o => o.FilledQuantity.ToDecimal())));
        var sliceStarts = buys.GroupBy(o => o.ClientOrderId.Split(':')[1].Split('-')[1]).Select(g => g.Min(o => o.CreatedAt.ToDateTimeOffset())).ToArray();
        Assert.True(sliceStarts[1] - sliceStarts[0] >= TimeSpan.FromMilliseconds(150), "slices are spread over the duration");
        Assert.True(sliceStarts[2] - sliceStarts[1] >= TimeSpan.FromMilliseconds(150));
    }

    [Fact]
    public async Task POV_sends_each_leg_in_slices_of_a_share_of_the_displayed_liquidity()
    {
        // Displayed asks: SIM-A 100 + SIM-B 100 = 200; 10 % is 20 a slice: the 150 buy goes in 8 slices (7 × 20 + 10),
        // one every 50 ms.
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var plan = Plan("plan-pov");
        plan.PovRate = 0.1;
        plan.PovIntervalSeconds = 0.05;
        await bus.PublishAsync(Topics.PlansApproved, plan);
        var execution = await WaitForFinalAsync("plan-pov");
        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        var slices = execution.Orders.Where(o => o.LegId == "L2").GroupBy(o => o.ClientOrderId.Split(':')[1].Split('-')[1]).ToArray();
        Assert.Equal(8, slices.Length);
        Assert.Equal([20m, 20m, 20m, 20m, 20m, 20m, 20m, 10m], slices.Select(g => g.Sum(o => o.FilledQuantity.ToDecimal())));
        var starts = slices.Select(g => g.Min(o => o.CreatedAt.ToDateTimeOffset())).ToArray();
        Assert.All(starts.Zip(starts.Skip(1)), pair => Assert.True(pair.Second - pair.First >= TimeSpan.FromMilliseconds(40)));
    }

    [Fact]
    public async Task A_cancel_from_planning_stops_a_running_plan_and_a_plan_not_started_never_trades()
    {
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        IEnumerable<ExecutionReport> Reports(string planId) => bus.Published.Where(e => e.Topic == Topics.ExecutionReports)
            .Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.PlanId == planId);

        // The cancel can land before its plan (they travel on different topics): the plan is recorded as cancelled,
        // its end reported to planning, and its PlanApproved, when it comes, sends nothing.
        await bus.PublishAsync(Topics.PlansCancelled, new PlanCancelRequested { PlanId = "plan-early", PortfolioId = "p1", Reason = "changed my mind", RequestedBy = "alice" });
        Assert.Equal(ExecutionStatus.Cancelled, (await WaitForFinalAsync("plan-early")).Status);
        var early = Assert.Single(Reports("plan-early"));
        Assert.Equal((ReportKind.PlanDone, ReportedPlanStatus.Cancelled, "cancelled before it started: changed my mind"), (early.Kind, early.PlanStatus, early.Message));
        await bus.PublishAsync(Topics.PlansApproved, Plan("plan-early"));
        await SettledAsync();
        var earlyState = await Client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-early" });
        Assert.Empty(earlyState.Orders);
        Assert.Equal((ExecutionStatus.Cancelled, "cancelled before it started: changed my mind", null), (earlyState.Execution.Status, earlyState.Execution.Message, earlyState.Execution.PendingStop));

        // Running: a TWAP plan (5 slices a leg, 400 ms apart) cancelled once its first order is out stops at the next
        // slice: the sale ends part-filled, the purchase never starts, the plan ends CANCELLED.
        var twap = Plan("plan-stop");
        twap.TwapSlices = 5;
        twap.TwapDurationSeconds = 2;
        await bus.PublishAsync(Topics.PlansApproved, twap);
        for (var i = 0; i < 100 && (await Client.ListOrdersAsync(new ListOrdersRequest { PlanId = "plan-stop" })).Orders.Count == 0; i++)
        {
            await Task.Delay(20);
        }

        await bus.PublishAsync(Topics.PlansCancelled, new PlanCancelRequested { PlanId = "plan-stop", PortfolioId = "p1", Reason = "stop now", RequestedBy = "alice" });
        var stopped = await WaitForFinalAsync("plan-stop");
        Assert.Equal(ExecutionStatus.Cancelled, stopped.Status);
        Assert.InRange(stopped.Legs.Single(l => l.LegId == "L1").FilledQuantity.ToDecimal(), 2m, 8m);
        Assert.Equal(0m, stopped.Legs.Single(l => l.LegId == "L2").FilledQuantity.ToDecimal());
        Assert.Equal(("cancelled: stop now", null), (stopped.Execution.Message, stopped.Execution.PendingStop));
        var legsDone = Reports("plan-stop").Where(r => r.Kind == ReportKind.LegDone).ToDictionary(r => r.LegId);
        Assert.Contains("cancelled: stop now", legsDone["L1"].Message, StringComparison.Ordinal);
        Assert.Equal(ReportedLegStatus.Cancelled, legsDone["L2"].LegStatus);

        // A cancel after the end changes nothing.
        await bus.PublishAsync(Topics.PlansCancelled, new PlanCancelRequested { PlanId = "plan-stop", PortfolioId = "p1", Reason = "late", RequestedBy = "alice" });
        await SettledAsync();
        Assert.Single(Reports("plan-stop"), r => r.Kind == ReportKind.PlanDone);
    }

    [Fact]
    public async Task A_redelivered_plan_sends_no_new_orders()
    {
        var executor = Server.Services.CreateScope().ServiceProvider.GetRequiredService<PlanExecutor>();
        await executor.ExecuteAsync(Plan("plan-y"), CancellationToken.None);
        await executor.ExecuteAsync(Plan("plan-y"), CancellationToken.None);
        var orders = await Client.ListOrdersAsync(new ListOrdersRequest { PlanId = "plan-y" });
        Assert.Equal(2, orders.Orders.Count);
    }

    [Fact]
    public async Task A_halt_stops_the_plan_before_its_legs()
    {
        var scope = Server.Services.CreateScope();
        await scope.ServiceProvider.GetRequiredService<ExecutionStore>().SetHaltAsync(true, "test halt");
        try
        {
            await scope.ServiceProvider.GetRequiredService<PlanExecutor>().ExecuteAsync(Plan("plan-z"), CancellationToken.None);
            var execution = await Client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-z" });
            Assert.Equal(ExecutionStatus.Cancelled, execution.Status);
            Assert.Equal((ExecutionStatus.Cancelled, "trading halted: test halt"), (execution.Execution.Status, execution.Execution.Message));
            Assert.Empty(execution.Orders);
        }
        finally
        {
            await scope.ServiceProvider.GetRequiredService<ExecutionStore>().SetHaltAsync(false, string.Empty);
        }
    }

    [Fact]
    public async Task A_running_plan_shows_the_stop_it_has_pending_and_a_halt_comes_before_a_cancel()
    {
        var store = Server.Services.GetRequiredService<ExecutionStore>();
        await store.SaveExecutionAsync(new PlanExecution { PlanId = "plan-pending", Status = ExecutionStatus.Running });
        async Task<PlanExecution> State() => (await Client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-pending" })).Execution;

        Assert.Null((await State()).PendingStop);
        await store.RequestCancelAsync("plan-pending", "client asked");
        Assert.Equal("cancelled: client asked", (await State()).PendingStop.Reason);
        await store.SetHaltAsync(true, "desk halt");
        try
        {
            Assert.Equal("trading halted: desk halt", (await State()).PendingStop.Reason);
        }
        finally
        {
            await store.SetHaltAsync(false, string.Empty);
        }

        // Once the plan has ended nothing is pending, whatever is still recorded.
        await store.SaveExecutionAsync(new PlanExecution { PlanId = "plan-pending", Status = ExecutionStatus.Cancelled, Message = "cancelled: client asked" });
        var ended = await State();
        Assert.Equal(("cancelled: client asked", null), (ended.Message, ended.PendingStop));
    }

    [Fact]
    public async Task RPCs_validate_input_and_list_venues()
    {
        await RpcAssert.InvalidArgumentAsync(() => Client.GetPlanExecutionAsync(new GetPlanExecutionRequest()).ResponseAsync, "plan_id");
        await RpcAssert.InvalidArgumentAsync(() => Client.ListOrdersAsync(new ListOrdersRequest { PlanId = "p", Venue = "bad venue" }).ResponseAsync, "venue");
        await RpcAssert.StatusAsync(() => Client.CancelPlanAsync(new CancelPlanRequest { PlanId = "unknown" }).ResponseAsync, StatusCode.NotFound);
        var venues = await Client.ListVenuesAsync(new ListVenuesRequest());
        Assert.Equal(["SIM-A", "SIM-B", "SIM-C"], venues.Venues.Select(v => v.VenueId));
    }

    [Fact]
    public async Task A_venue_taken_down_is_routed_around_and_its_book_stays_visible()
    {
        var down = (await Client.SetVenueStatusAsync(new SetVenueStatusRequest { VenueId = "SIM-A", Available = false, Reason = "maintenance" })).Venue;
        Assert.Equal((false, "maintenance"), (down.Available, down.StatusReason));
        var book = await Client.GetVenueBookAsync(new GetVenueBookRequest { VenueId = "SIM-A", InstrumentId = "DAX" });
        Assert.False(book.Available);
        Assert.Equal([(100.1m, 100m), (100.11001m, 200m)], book.Asks.Take(2).Select(l => (l.Price.ToDecimal(), l.Size.ToDecimal())));
        Assert.Equal((99.9m, 100m), (book.Bids[0].Price.ToDecimal(), book.Bids[0].Size.ToDecimal()));
        Assert.Equal(10, book.Asks.Count);

        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, Plan("plan-outage"));
        var execution = await WaitForFinalAsync("plan-outage");
        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        Assert.All(execution.Orders, o => Assert.Equal("SIM-B", o.Venue));

        await Client.SetVenueStatusAsync(new SetVenueStatusRequest { VenueId = "SIM-A", Available = true });
        Assert.True((await Client.ListVenuesAsync(new ListVenuesRequest())).Venues.Single(v => v.VenueId == "SIM-A").Available);
        await RpcAssert.InvalidArgumentAsync(() => Client.SetVenueStatusAsync(new SetVenueStatusRequest { VenueId = "SIM-Z" }).ResponseAsync, "venue_id");
        await RpcAssert.InvalidArgumentAsync(() => Client.GetVenueBookAsync(new GetVenueBookRequest { VenueId = "SIM-A" }).ResponseAsync, "instrument_id");
        await RpcAssert.StatusAsync(() => Client.GetVenueBookAsync(new GetVenueBookRequest { VenueId = "SIM-A", InstrumentId = "NOPE" }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact]
    public async Task A_leg_beyond_every_book_fills_what_the_books_hold_and_says_so()
    {
        // Displayed asks: SIM-A 100 + 200 + … + 1,000 = 5,500, SIM-B 100 × (1 + 0.5 k), k < 10 = 3,250; SIM-C quotes
        // nothing. Each routing takes at most half of what is left of each book (the books deplete until the next
        // quote), one routing per venue: (5,500 + 3,250) × (1/2 + 1/4 + 1/8) = 7,656.25 of 100,000 fill.
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, new PlanApproved
        {
            PlanId = "plan-huge",
            PortfolioId = "p1",
            Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Buy, Quantity = 100_000m, ReferencePrice = 100m } },
        });
        var execution = await WaitForFinalAsync("plan-huge");
        Assert.Equal(ExecutionStatus.PartiallyFilled, execution.Status);
        Assert.Equal(7_656.25m, execution.Legs.Single().FilledQuantity.ToDecimal());
        Assert.Contains(execution.Orders, o => o.Status == OrderStatus.Filled);
        var done = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Single(r => r.PlanId == "plan-huge" && r.Kind == ReportKind.LegDone);
        Assert.Equal(ReportedLegStatus.PartiallyFilled, done.LegStatus);
        Assert.Contains("books held no more", done.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Purchases_stop_at_the_plans_cash_counting_what_its_sales_raised_and_its_other_legs_moved()
    {
        // 5,000 EUR to start. G1 repays 2,000 of cash (cash_change −2,000); L1 sells 10 DAX on SIM-A at 99.9 less
        // 10 bps: +998.001. That leaves 3,998.001 for L2's 150 DAX. Routing prices them on SIM-A down to its second
        // level (100.11001), the child's limit, so a unit costs at worst 100.11001 × 1.001 = 100.21012001: the cash
        // pays (3,998.001 − 0.0000001 reserve) / 100.21012001 = 39.89618014 (to 8 decimals, down). They fill at the
        // touch, 100.1, leaving 3,998.001 − 39.89618014 × 100.1 × 1.001 ≈ 0.3998: never below zero.
        await Client.OpenLendingAccountAsync(new OpenLendingAccountRequest { Account = DaxLoan(7_000m) });
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var plan = new PlanApproved
        {
            PlanId = "plan-cash",
            PortfolioId = "p1",
            CashBudget = 5_000m,
            Legs =
            {
                new ApprovedLeg { LegId = "G1", Sequence = 1, Kind = LegKind.Repay, LoanId = "L1", Venue = "LEND-A", InstrumentId = "EUR", Quantity = 2_000m, ReferencePrice = 1m, CashChange = -2_000m },
                new ApprovedLeg { LegId = "L1", Sequence = 2, InstrumentId = "DAX", Side = Side.Sell, Quantity = 10m, ReferencePrice = 100m },
                new ApprovedLeg { LegId = "L2", Sequence = 3, InstrumentId = "DAX", Side = Side.Buy, Quantity = 150m, ReferencePrice = 100m },
            },
        };
        await bus.PublishAsync(Topics.PlansApproved, plan);
        var execution = await WaitForFinalAsync("plan-cash");

        Assert.Equal(ExecutionStatus.PartiallyFilled, execution.Status);
        var buy = execution.Legs.Single(l => l.LegId == "L2");
        Assert.Equal((39.89618014m, 100.1m), (buy.FilledQuantity.ToDecimal(), buy.AveragePrice.ToDecimal()));
        var order = execution.Orders.Single(o => o.LegId == "L2");
        Assert.Equal(100.11001m, order.LimitPrice.ToDecimal()); // the child's limit: the deepest level routed
        var cashLeft = 5_000m - 2_000m + (10m * 99.9m) - 0.999m - (buy.FilledQuantity.ToDecimal() * 100.1m) - buy.Fees.ToDecimal();
        Assert.InRange(cashLeft, 0m, 100.21012001m);
        var done = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser))
            .Single(r => r.PlanId == "plan-cash" && r.Kind == ReportKind.LegDone && r.LegId == "L2");
        Assert.Equal(ReportedLegStatus.PartiallyFilled, done.LegStatus);
        Assert.StartsWith("stopped by the plan's cash: 3998.00 left pays for 39.89618014 of the 150", done.Message, StringComparison.Ordinal);

        // The same plan without a budget buys all 150 (cash is then the caller's to manage).
        plan.PlanId = "plan-no-budget";
        plan.CashBudget = null;
        plan.Legs.RemoveAt(0);
        await bus.PublishAsync(Topics.PlansApproved, plan);
        Assert.Equal(150m, (await WaitForFinalAsync("plan-no-budget")).Legs.Single(l => l.LegId == "L2").FilledQuantity.ToDecimal());
    }

    [Fact]
    public async Task A_plan_whose_cash_fields_are_not_decimals_is_refused_as_malformed_and_not_executed()
    {
        // Malformed, the dispatcher dead-letters it (EventBusTests); nothing of it executes.
        using var scope = Server.Services.CreateScope();
        var handler = ActivatorUtilities.CreateInstance<PlanApprovedHandler>(scope.ServiceProvider);
        var context = new EventContext("e1", Topics.PlansApproved, "tests", DateTimeOffset.UtcNow, 1);
        var plan = Plan("plan-bad-cash");
        plan.CashBudget = new DecimalValue { Value = "lots" };
        await Assert.ThrowsAsync<MalformedEventException>(() => handler.HandleAsync(plan, context, CancellationToken.None));
        plan.CashBudget = 1_000m;
        plan.Legs[0].CashChange = new DecimalValue { Value = "1e999" };
        await Assert.ThrowsAsync<MalformedEventException>(() => handler.HandleAsync(plan, context, CancellationToken.None));
        await RpcAssert.StatusAsync(() => Client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-bad-cash" }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact]
    public async Task A_hedge_leg_follows_each_slice_of_the_leg_it_hedges()
    {
        var market = Server.Services.GetRequiredService<MarketStateStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await market.WriteQuotesAsync(
        [
            new Quote { Venue = "SIM-A", InstrumentId = "DAX-PERP", Bid = 99.9m, Ask = 100.1m, BidSize = 100m, AskSize = 100m, Timestamp = now },
            new Quote { Venue = "SIM-B", InstrumentId = "DAX-PERP", Bid = 99.8m, Ask = 100.2m, BidSize = 100m, AskSize = 100m, Timestamp = now },
        ]);
        var plan = new PlanApproved
        {
            PlanId = "plan-hedged",
            PortfolioId = "p1",
            TwapSlices = 3,
            TwapDurationSeconds = 0.6,
            Legs =
            {
                new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Buy, Quantity = 30m, ReferencePrice = 100m },
                new ApprovedLeg { LegId = "H1", Sequence = 2, InstrumentId = "DAX-PERP", Side = Side.Sell, Quantity = 24m, ReferencePrice = 100m, HedgesLegId = "L1" },
            },
        };
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, plan);
        var execution = await WaitForFinalAsync("plan-hedged");

        // After each 10-unit slice of the buy, the hedge is sold to the same share of its 24 (8, 16, 24): delta never
        // drifts by more than one slice while the leg executes, instead of by the whole leg until the hedge's turn.
        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        Assert.Equal(
            [("L1-s1", 10m), ("H1-f1", 8m), ("L1-s2", 10m), ("H1-f2", 8m), ("L1-s3", 10m), ("H1-f3", 8m)],
            execution.Orders.Select(o => (o.ClientOrderId["plan-hedged:".Length..o.ClientOrderId.LastIndexOf("-r", StringComparison.Ordinal)], o.FilledQuantity.ToDecimal())));
        var legDone = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.Kind == ReportKind.LegDone).ToArray();
        Assert.Equal(["L1", "H1"], legDone.Select(r => r.LegId).Order().Reverse());
        Assert.All(legDone, r => Assert.Equal(ReportedLegStatus.Filled, r.LegStatus));
    }

    [Fact]
    public void A_hedge_target_is_its_share_of_what_the_hedged_leg_filled() =>
        Assert.Equal(
            [10m, 2.33333333m, 5m, 5m, 0m],
            [PlanRun.HedgeTarget(30m, 10m, 30m), PlanRun.HedgeTarget(7m, 1m, 3m), PlanRun.HedgeTarget(5m, 3m, 3m), PlanRun.HedgeTarget(5m, 4m, 3m), PlanRun.HedgeTarget(5m, 0m, 3m)]);

    [Fact]
    public async Task A_maker_first_slice_rests_at_the_touch_fills_as_the_market_comes_and_takes_the_rest()
    {
        // Buy 30 DAX, maker first for 1.5 s: a post-only bid rests at the best bid, SIM-A's 99.9 (SIM-B bids 99.8).
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var plan = new PlanApproved
        {
            PlanId = "plan-maker",
            PortfolioId = "p1",
            MakerWaitSeconds = 1.5,
            Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Buy, Quantity = 30m, ReferencePrice = 100m } },
        };
        await bus.PublishAsync(Topics.PlansApproved, plan);
        // The child is journaled (New) before it is sent; wait until the venue has it resting (Sent).
        Order? resting = null;
        for (var i = 0; i < 100 && resting?.Status != OrderStatus.Sent; i++)
        {
            await Task.Delay(20);
            resting = (await Client.ListOrdersAsync(new ListOrdersRequest { PlanId = "plan-maker" })).Orders.FirstOrDefault();
        }

        Assert.NotNull(resting);
        Assert.Equal(("plan-maker:L1-m", "SIM-A", 99.9m, OrderStatus.Sent), (resting.ClientOrderId, resting.Venue, resting.LimitPrice.ToDecimal(), resting.Status));

        // A seller comes down to our bid on SIM-A: the ask at 99.9 shows 40, of which the venue's 50 % cap gives 20.
        // They fill at our 99.9 with SIM-A's 2 bp maker fee (0.3996), not the 10 bp taker fee.
        var market = Server.Services.GetRequiredService<MarketStateStore>();
        await market.WriteQuotesAsync([new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = 99.8m, Ask = 99.9m, BidSize = 100m, AskSize = 40m, Timestamp = DateTimeOffset.UtcNow.ToTimestamp() }]);
        var execution = await WaitForFinalAsync("plan-maker");

        // After the wait the rest (10) is cancelled and taken: immediate-or-cancel across venues, at the touch of 99.9.
        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        var maker = execution.Orders.Single(o => o.ClientOrderId == "plan-maker:L1-m");
        Assert.Equal((20m, 99.9m, 0.3996m, OrderStatus.Cancelled), (maker.FilledQuantity.ToDecimal(), maker.AveragePrice.ToDecimal(), maker.Fees.ToDecimal(), maker.Status));
        Assert.Contains("20 of 30 filled as maker", maker.StatusReason);
        var taker = execution.Orders.Where(o => o.ClientOrderId != maker.ClientOrderId).ToArray();
        Assert.Equal(10m, taker.Sum(o => o.FilledQuantity.ToDecimal()));
        Assert.Equal(("SIM-A", 99.9m), (taker.Single().Venue, taker.Single().AveragePrice.ToDecimal())); // 20 of the 40 at 99.9 are left after the maker fills
        Assert.Equal(99.9m, taker.Single().LimitPrice.ToDecimal()); // a marketable limit at the level its routing reached

        // The maker fill was reported under its own id and counted in SIM-A's realised costs.
        var fills = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.Kind == ReportKind.Fill).Select(r => r.Fill).ToArray();
        Assert.Contains(fills, f => f.FillId == "plan-maker:L1-m@20" && f.Quantity.ToDecimal() == 20m && f.Price.ToDecimal() == 99.9m && f.Fee.ToDecimal() == 0.3996m);
        Assert.Equal(30m, fills.Sum(f => f.Quantity.ToDecimal()));
    }

    /// <summary>Stands in for a real venue's API behind the connector interface: it takes SIM-A's orders and rejects them.</summary>
    private sealed class RejectingVenue : IVenueGateway
    {
        public List<string> Received { get; } = [];

        public bool Handles(string venueId) => venueId == "SIM-A";

        public Task<VenueExecution> ExecuteAsync(VenueSpec venue, VenueOrder order, CancellationToken cancellationToken)
        {
            lock (Received)
            {
                Received.Add(order.Child.ClientOrderId);
            }

            return Task.FromResult(new VenueExecution(order.Child.ClientOrderId, venue.VenueId, false, 0, 0, 0, "rejected by the venue's API: market closed"));
        }

        public Task<VenueExecution> PollRestingAsync(VenueSpec venue, RestingState order, CancellationToken cancellationToken) =>
            Task.FromResult(new VenueExecution(order.ClientOrderId, venue.VenueId, true, 0, order.Limit, 0, string.Empty));

        public Task<VenueOperationResult> ApplyAsync(VenueOperation operation, CancellationToken cancellationToken) =>
            Task.FromResult(new VenueOperationResult(false, 0, "rejected by the venue's API: market closed"));
    }

    [Fact]
    public async Task Orders_reach_each_venue_through_its_connector_and_a_reject_there_is_routed_to_the_others()
    {
        // A connector registered for SIM-A takes over that venue; SIM-B stays simulated. The sell of 10 goes to SIM-A
        // by cost (as in the first test), is rejected by its connector, and is re-routed to SIM-B.
        var venue = new RejectingVenue();
        await using var server = new GrpcTestServer<Program>(Redis, SimulatedExecution.Settings(), services: s => s.AddSingleton<IVenueGateway>(venue));
        var bus = server.Services.GetRequiredService<InMemoryEventBus>();
        var plan = new PlanApproved
        {
            PlanId = "plan-connector",
            PortfolioId = "p1",
            Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Sell, Quantity = 10m, ReferencePrice = 100m } },
        };
        await bus.PublishAsync(Topics.PlansApproved, plan);
        var client = new ExecutionService.ExecutionServiceClient(server.CreateMeshInvoker());
        GetPlanExecutionResponse execution = null!;
        for (var i = 0; i < 200; i++)
        {
            await Task.Delay(25);
            try
            {
                execution = await client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-connector" });
                if (execution.Status == ExecutionStatus.Completed)
                {
                    break;
                }
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
            {
                // not received yet
            }
        }

        Assert.Equal(ExecutionStatus.Completed, execution.Status);
        Assert.Equal(["plan-connector:L1-r1:1"], venue.Received);
        Assert.Equal(
            [("SIM-A", OrderStatus.Rejected, 0m), ("SIM-B", OrderStatus.Filled, 10m)],
            execution.Orders.Select(o => (o.Venue, o.Status, o.FilledQuantity.ToDecimal())));
        Assert.Equal("rejected by the venue's API: market closed", execution.Orders[0].StatusReason);
    }

    [Fact]
    public async Task The_outbox_keeps_reports_in_commit_order_takes_them_out_by_id_and_empties_the_legacy_list()
    {
        var store = Server.Services.GetRequiredService<ExecutionStore>();
        var db = Server.Services.GetRequiredService<StackExchange.Redis.IConnectionMultiplexer>().GetDatabase();
        ExecutionReport Report(string id) => new() { ReportId = id, PlanId = "plan-box", PortfolioId = "p1", Kind = ReportKind.PlanDone, ReportedAt = DateTimeOffset.UtcNow.ToTimestamp() };

        // A list entry an execution of the version before left (a rolling upgrade), then three commits, one of two reports.
        var legacy = Report("plan-done:legacy");
        await db.ListRightPushAsync("exe:outbox", Google.Protobuf.MessageExtensions.ToByteArray(legacy));
        await store.AddToOutboxAsync([Report("c")]);
        await store.AddToOutboxAsync([Report("a"), Report("b")]);
        await store.AddToOutboxAsync([Report("0")]);
        Assert.Equal(["plan-done:legacy", "c", "a", "b", "0"], (await store.GetOutboxAsync(10)).Select(e => e.Report.ReportId));
        Assert.Equal(["plan-done:legacy", "c"], (await store.GetOutboxAsync(2)).Select(e => e.Report.ReportId));

        // Published reports leave by id, whatever their place; the legacy entry by its bytes.
        await store.RemoveFromOutboxAsync([Report("a"), Report("0")]);
        var left = await store.GetOutboxAsync(10);
        Assert.Equal(["plan-done:legacy", "c", "b"], left.Select(e => e.Report.ReportId));
        await store.RemoveFromOutboxAsync(left[0]);
        Assert.Equal(0, await db.ListLengthAsync("exe:outbox"));
        Assert.Equal(["c", "b"], (await store.GetOutboxAsync(10)).Select(e => e.Report.ReportId));
    }

    [Fact]
    public async Task A_report_committed_but_never_published_is_relayed_from_the_outbox()
    {
        // The state a crash between the Redis commit and the publish leaves: the report sits in the outbox.
        var store = Server.Services.GetRequiredService<ExecutionStore>();
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var stranded = new ExecutionReport
        {
            ReportId = "liquidation:LEND-A:p9:L1:1",
            PortfolioId = "p9",
            Kind = ReportKind.Liquidation,
            ReportedAt = DateTimeOffset.UtcNow.AddSeconds(-10).ToTimestamp(),
            Liquidation = new Liquidation { LiquidationId = "LEND-A:p9:L1:1", Venue = "LEND-A", LoanId = "L1", SeizedAsset = "DAX", SeizedQuantity = 1m, DebtAsset = "EUR", DebtRepaid = 80m },
        };
        await store.AddToOutboxAsync([stranded]);

        ExecutionReport? relayed = null;
        for (var i = 0; i < 100 && relayed is null; i++)
        {
            await Task.Delay(50);
            relayed = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).FirstOrDefault(r => r.ReportId == stranded.ReportId);
        }

        Assert.Equal(stranded, relayed);
        Assert.Empty(await store.GetOutboxAsync(10));
    }

    [Fact]
    public async Task Every_report_of_a_plan_leaves_through_the_outbox_and_a_resumed_plan_reports_what_it_left_there_first()
    {
        var store = Server.Services.GetRequiredService<ExecutionStore>();
        var bus = Server.Services.GetRequiredService<InMemoryEventBus>();
        var executor = Server.Services.GetRequiredService<PlanExecutor>();

        // A run that died between committing a report and publishing it: its journal holds the first answer, the outbox
        // the report (too recent for the relay's grace period).
        var stranded = new ExecutionReport
        {
            ReportId = "fill:plan-resumed:earlier:1",
            PlanId = "plan-resumed",
            PortfolioId = "p1",
            LegId = "L1",
            Kind = ReportKind.Fill,
            ReportedAt = DateTimeOffset.UtcNow.ToTimestamp(),
            Fill = new Fill { FillId = "plan-resumed:earlier:1", ClientOrderId = "plan-resumed:earlier", Venue = "SIM-A", InstrumentId = "DAX", Side = Side.Sell, Quantity = 1m, Price = 99.9m, Fee = 0m },
        };
        await store.AddToOutboxAsync([stranded]);
        await store.AppendRunJournalAsync("plan-resumed", [new StopChecked(null)], []);

        await executor.ExecuteAsync(Plan("plan-resumed"), CancellationToken.None);
        var reports = bus.Published.Where(e => e.Topic == Topics.ExecutionReports).Select(e => e.ReadData(ExecutionReport.Parser)).Where(r => r.PlanId == "plan-resumed").ToArray();
        Assert.Equal(stranded.ReportId, reports[0].ReportId);
        Assert.Equal(ReportKind.PlanDone, reports[^1].Kind);

        // Each report has a deterministic id (a fill's id, a leg's or the plan's end) and none is left in the outbox.
        Assert.All(reports.Where(r => r.Kind == ReportKind.Fill), r => Assert.Equal("fill:" + r.Fill.FillId, r.ReportId));
        Assert.Equal(["leg-done:plan-resumed:L1", "leg-done:plan-resumed:L2", "plan-done:plan-resumed"], reports.Where(r => r.Kind != ReportKind.Fill).Select(r => r.ReportId));
        Assert.Equal(reports.Length, reports.Select(r => r.ReportId).Distinct().Count());
        Assert.Empty(await store.GetOutboxAsync(10));
    }
}
