using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// A batch preview plans many portfolios on one market snapshot: each account's plan is the one its own preview gives,
/// an account that cannot be planned carries its own preview's status and the others are planned, and the report per
/// instrument adds up the accounts' legs. Planning and the real pricing service on the in-process test server.
/// </summary>
public sealed class BatchPreviewTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly PricingUnderTest _pricing;
    private readonly GrpcTestServer<Program> _planning;

    public BatchPreviewTests(RedisServer redis)
    {
        _redis = redis;
        _pricing = new PricingUnderTest(redis);
        _planning = new GrpcTestServer<Program>(redis, PricingUnderTest.PlanningSettings, _pricing.Route);
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        await _pricing.WriteQuotesAsync([("DAX", 100m), ("SMI", 50m)]);
    }

    public async Task DisposeAsync()
    {
        await _planning.DisposeAsync();
        await _pricing.DisposeAsync();
    }

    private PlanningService.PlanningServiceClient Client(string role) => new(_planning.CreateInvoker(TestAuth.Token(role)));

    private async Task PortfolioAsync(string id, decimal cash, params (string Instrument, decimal Quantity)[] positions)
    {
        var portfolio = new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = cash };
        portfolio.Positions.AddRange(positions.Select(p => new Position { InstrumentId = p.Instrument, Quantity = p.Quantity }));
        await Client(MeshAuth.Admin).UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 });
    }

    /// <summary>
    /// Model "half-half" (DAX and SMI at 50 % each, 5 pp band) followed by a1 (all cash), a2 (on target: 50 DAX at 100
    /// and 100 SMI at 50) and a3 (all SMI and cash).
    /// </summary>
    private async Task HalfHalfBookAsync()
    {
        var admin = Client(MeshAuth.Admin);
        await admin.CreateModelAsync(new CreateModelRequest
        {
            Model = new Model
            {
                ModelId = "half-half",
                Policy = new Policy { Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.5 }, new TargetWeight { InstrumentId = "SMI", Weight = 0.5 } }, AbsoluteBand = 0.05 },
            },
        });
        await PortfolioAsync("a1", 10_000m);
        await PortfolioAsync("a2", 0m, ("DAX", 50m), ("SMI", 100m));
        await PortfolioAsync("a3", 5_000m, ("SMI", 100m));
        foreach (var id in new[] { "a1", "a2", "a3" })
        {
            await admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = id, ModelId = "half-half" });
        }
    }

    [Fact]
    public async Task Each_account_gets_its_own_previews_plan_failures_stay_with_their_account_and_instruments_add_up()
    {
        // a4 without a policy; "nope" unknown.
        await HalfHalfBookAsync();
        await PortfolioAsync("a4", 1_000m);

        var viewer = Client(MeshAuth.Viewer);
        var batch = await viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { Portfolios = new PortfolioList { PortfolioIds = { "a3", "a1", "a2", "a4", "nope" } } });

        Assert.Equal((5, 2, 1, 2), (batch.Selected, batch.Planned, batch.NoAction, batch.Failed));
        Assert.Equal(["a1", "a2", "a3", "a4", "nope"], batch.Accounts.Select(a => a.PortfolioId));
        var byId = batch.Accounts.ToDictionary(a => a.PortfolioId);
        Assert.Equal((int)StatusCode.FailedPrecondition, byId["a4"].Error.Code);
        Assert.Equal((int)StatusCode.NotFound, byId["nope"].Error.Code);
        Assert.Equal(PlanStatus.NoAction, byId["a2"].Status);

        // Each planned account's legs are those of its own preview (the same quotes), its cash after is its cash less
        // what its buys cost and its costs, and the drift is the plan's: a1 holds nothing against 50 / 50 (drift 1.0).
        foreach (var id in new[] { "a1", "a3" })
        {
            var single = (await viewer.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = id })).Plan;
            var account = byId[id];
            Assert.Equal(PlanStatus.Preview, account.Status);
            Assert.Equal(single.Legs.Select(l => (l.InstrumentId, l.Side, l.Quantity.ToDecimal(), l.ReferencePrice.ToDecimal())),
                account.Plan.Legs.Select(l => (l.InstrumentId, l.Side, l.Quantity.ToDecimal(), l.ReferencePrice.ToDecimal())));
            var spent = account.Plan.Legs.Sum(l => (l.Side == Side.Buy ? 1 : -1) * l.EstimatedNotional.ToDecimal()) + account.Plan.Legs.Sum(l => l.EstimatedCost.ToDecimal());
            Assert.Equal(account.CashBefore.ToDecimal() - spent, account.CashAfter.ToDecimal());
            Assert.True(account.CashAfter.ToDecimal() >= 0m);
        }

        Assert.Equal(1.0, byId["a1"].TotalDrift, 9);

        // Per instrument: what the two planned accounts' legs trade, added up.
        var legs = new[] { byId["a1"], byId["a3"] }.SelectMany(a => a.Plan.Legs.Select(l => (a.PortfolioId, Leg: l))).ToArray();
        Assert.Equal(legs.Select(l => l.Leg.InstrumentId).Distinct().Order(), batch.Instruments.Select(i => i.InstrumentId));
        foreach (var instrument in batch.Instruments)
        {
            var of = legs.Where(l => l.Leg.InstrumentId == instrument.InstrumentId).ToArray();
            var bought = of.Where(l => l.Leg.Side == Side.Buy).Sum(l => l.Leg.Quantity.ToDecimal());
            var sold = of.Where(l => l.Leg.Side == Side.Sell).Sum(l => l.Leg.Quantity.ToDecimal());
            Assert.Equal((bought, sold, bought - sold), (instrument.Bought.ToDecimal(), instrument.Sold.ToDecimal(), instrument.Net.ToDecimal()));
            Assert.Equal(of.Sum(l => l.Leg.EstimatedNotional.ToDecimal()), instrument.GrossNotional.ToDecimal());
            Assert.Equal(of.Select(l => l.PortfolioId).Distinct().Count(), instrument.Accounts);
        }

        Assert.Equal(byId["a1"].EstimatedCost.ToDecimal() + byId["a2"].EstimatedCost.ToDecimal() + byId["a3"].EstimatedCost.ToDecimal(), batch.EstimatedCost.ToDecimal());

        // By model: its three linked portfolios; valued in one pricing call for the batch.
        var calls = _pricing.Calls.Requests.Count;
        var byModel = await viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = "half-half" });
        Assert.Equal(["a1", "a2", "a3"], byModel.Accounts.Select(a => a.PortfolioId));
        Assert.Equal(1, _pricing.Calls.Requests.Count - calls);

        // Everything, forced: a2 is on target and stays without action; the others plan as before.
        var all = await viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = "half-half", Filter = BatchFilter.All });
        Assert.Equal((2, 1), (all.Planned, all.NoAction));
    }

    [Fact]
    public async Task A_submitted_batch_stores_and_sends_each_accounts_plan_once_per_batch_key_and_respects_plans_in_flight()
    {
        await HalfHalfBookAsync();

        var trader = Client(MeshAuth.Trader);
        var bus = _planning.Services.GetRequiredService<InMemoryEventBus>();
        string[] Sent() => [.. bus.Published.Where(e => e.Topic == Topics.PlansApproved)
            .Select(e => e.ReadData(PlanApproved.Parser).PortfolioId).Order()];

        var first = await trader.SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = "half-half", BatchKey = "rebalance-2026-12-05" });
        Assert.Equal((3, 2, 1, 0), (first.Selected, first.Planned, first.NoAction, first.Failed));
        var approved = first.Accounts.Where(a => a.Status == PlanStatus.Approved).ToArray();
        Assert.Equal(["a1", "a3"], approved.Select(a => a.PortfolioId));
        foreach (var account in approved)
        {
            Assert.Equal(account.Plan, (await trader.GetPlanAsync(new GetPlanRequest { PlanId = account.Plan.PlanId })).Plan);
        }

        Assert.Equal(["a1", "a3"], Sent());

        // The same key again: the same plans, nothing sent twice.
        var again = await trader.SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = "half-half", BatchKey = "rebalance-2026-12-05" });
        Assert.Equal(first.Accounts.Select(a => a.Plan?.PlanId), again.Accounts.Select(a => a.Plan?.PlanId));
        Assert.Equal(["a1", "a3"], Sent());

        // Another batch while those plans are in flight: their accounts are refused as SubmitRebalance refuses them.
        var second = await trader.SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = "half-half", BatchKey = "another" });
        Assert.Equal((2, 1), (second.Failed, second.NoAction));
        Assert.All(second.Accounts.Where(a => a.Error is not null), a => Assert.Equal((int)StatusCode.FailedPrecondition, a.Error.Code));
        Assert.Equal(["a1", "a3"], Sent());

        await RpcAssert.StatusAsync(() => Client(MeshAuth.Viewer).SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = "half-half", BatchKey = "k" }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.InvalidArgumentAsync(() => trader.SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = "half-half" }).ResponseAsync, "batch_key");
    }

    [Fact]
    public async Task The_new_cash_filter_takes_the_accounts_whose_cash_exceeds_their_target_cash_by_more_than_the_band()
    {
        // a1 is all cash (100 % against a target of 0 %), a3 half cash; a2 is on target with no cash; a5 holds only DAX
        // — out of tolerance, but with no new cash.
        await HalfHalfBookAsync();
        await PortfolioAsync("a5", 0m, ("DAX", 100m));
        await Client(MeshAuth.Admin).LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "a5", ModelId = "half-half" });
        var viewer = Client(MeshAuth.Viewer);

        var report = await viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = "half-half", Filter = BatchFilter.NewCash });
        Assert.Equal((4, 2, 2, 0), (report.Selected, report.Planned, report.NoAction, report.Failed));
        Assert.Equal(
            [("a1", PlanStatus.Preview, ""), ("a2", PlanStatus.NoAction, "no new cash: cash is 0.00 % of net value, within 5.00 % of its target 0.00 %"),
             ("a3", PlanStatus.Preview, ""), ("a5", PlanStatus.NoAction, "no new cash: cash is 0.00 % of net value, within 5.00 % of its target 0.00 %")],
            report.Accounts.Select(a => (a.PortfolioId, a.Status, a.FilteredOut)));

        // Out of tolerance takes a5 instead of leaving it out; the new-cash plans are the forced previews' own.
        var tolerance = await viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = "half-half" });
        Assert.Equal(PlanStatus.Preview, tolerance.Accounts.Single(a => a.PortfolioId == "a5").Status);
        var own = (await viewer.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = "a1", Force = true })).Plan;
        Assert.Equal(own.Legs.Select(l => (l.InstrumentId, l.Quantity)), report.Accounts[0].Plan.Legs.Select(l => (l.InstrumentId, l.Quantity)));
    }

    [Fact]
    public async Task WatchBatch_streams_every_plan_then_what_changes_until_every_plan_has_ended()
    {
        await HalfHalfBookAsync();
        var submitted = await Client(MeshAuth.Trader).SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = "half-half", BatchKey = "watched" });
        var plans = submitted.Accounts.Where(a => a.Status == PlanStatus.Approved).ToDictionary(a => a.PortfolioId, a => a.Plan.PlanId);
        Assert.Equal(["a1", "a3"], plans.Keys.Order());

        using var watch = Client(MeshAuth.Viewer).WatchBatch(new WatchBatchRequest { BatchKey = "watched" });
        Assert.True(await watch.ResponseStream.MoveNext(CancellationToken.None));
        var first = watch.ResponseStream.Current.Progress;
        Assert.Equal(("watched", 2, 2, 0, false), (first.BatchKey, first.Plans, first.Approved, first.Completed, first.Done));
        Assert.Equal(["a1", "a3"], first.Changed.Select(c => c.PortfolioId));

        // Execution reports both ends: one completed, one failed; the stream says so and ends.
        var bus = _planning.Services.GetRequiredService<InMemoryEventBus>();
        foreach (var (portfolio, status) in new[] { ("a1", ReportedPlanStatus.Completed), ("a3", ReportedPlanStatus.Failed) })
        {
            await bus.PublishAsync(Topics.ExecutionReports, new ExecutionReport
            {
                ReportId = "end-" + portfolio,
                PlanId = plans[portfolio],
                PortfolioId = portfolio,
                Kind = ReportKind.PlanDone,
                PlanStatus = status,
                Message = "reported by the test",
                ReportedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow),
            });
        }

        var messages = new List<BatchProgress>();
        while (await watch.ResponseStream.MoveNext(CancellationToken.None))
        {
            messages.Add(watch.ResponseStream.Current.Progress);
        }

        var last = messages[^1];
        Assert.Equal((true, 1, 1, 0, 0), (last.Done, last.Completed, last.Failed, last.Approved, last.Executing));
        Assert.Equal(["a1", "a3"], messages.SelectMany(m => m.Changed).Where(c => c.Status.IsFinal()).Select(c => c.PortfolioId).Order());

        await RpcAssert.StatusAsync(() => Client(MeshAuth.Viewer).WatchBatch(new WatchBatchRequest { BatchKey = "never" }).ResponseStream.MoveNext(CancellationToken.None), StatusCode.NotFound);
        await RpcAssert.InvalidArgumentAsync(() => Client(MeshAuth.Viewer).WatchBatch(new WatchBatchRequest()).ResponseStream.MoveNext(CancellationToken.None), "batch_key");
    }

    [Fact]
    public async Task A_report_without_plans_keeps_their_ids_and_a_batch_of_over_a_thousand_accounts_must_ask_for_it()
    {
        await HalfHalfBookAsync();
        var viewer = Client(MeshAuth.Viewer);
        var full = await viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = "half-half" });
        var lean = await viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = "half-half", OmitPlans = true });
        Assert.All(lean.Accounts, a => Assert.Null(a.Plan));
        Assert.Equal(full.Accounts.Select(a => (a.PortfolioId, a.Status, a.Trades, a.CashAfter)), lean.Accounts.Select(a => (a.PortfolioId, a.Status, a.Trades, a.CashAfter)));
        Assert.Equal(full.Instruments, lean.Instruments);

        var submitted = await Client(MeshAuth.Trader).SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = "half-half", BatchKey = "lean", OmitPlans = true });
        foreach (var account in submitted.Accounts.Where(a => a.Status == PlanStatus.Approved))
        {
            Assert.Equal(account.PortfolioId, (await viewer.GetPlanAsync(new GetPlanRequest { PlanId = account.PlanId })).Plan.PortfolioId);
        }


        // 1,001 accounts would not fit one response with their plans: refused before anything is built or sent.
        var many = new PortfolioList { PortfolioIds = { Enumerable.Range(0, 1_001).Select(i => $"x{i}") } };
        await RpcAssert.InvalidArgumentAsync(() => viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { Portfolios = many }).ResponseAsync, "omit_plans");
        await RpcAssert.InvalidArgumentAsync(() => Client(MeshAuth.Trader).SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { Portfolios = many, BatchKey = "too-big" }).ResponseAsync, "omit_plans");
        Assert.Null(await _planning.Services.GetRequiredService<PlanningStore>().GetBatchAsync("too-big"));
    }

    [Fact]
    public async Task A_batch_is_refused_field_by_field_without_a_selection_with_repeats_or_beyond_its_limits()
    {
        var viewer = Client(MeshAuth.Viewer);
        await RpcAssert.InvalidArgumentAsync(() => viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest()).ResponseAsync, "selection");
        var fields = await RpcAssert.InvalidArgumentAsync(() => viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest
        {
            Portfolios = new PortfolioList { PortfolioIds = { "a", "a", "bad id!" } },
            Filter = (BatchFilter)9,
            Concurrency = BatchPlanner.MaxConcurrency + 1,
        }).ResponseAsync, "portfolios.portfolio_ids");
        Assert.Contains("portfolios.portfolio_ids[2]", fields);
        Assert.Contains("filter", fields);
        Assert.Contains("concurrency", fields);
        await RpcAssert.StatusAsync(() => viewer.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = "none" }).ResponseAsync, StatusCode.NotFound);
    }
}
