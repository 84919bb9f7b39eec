using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

public sealed class PlanningServiceTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly PlanningService.PlanningServiceClient _client;

    public PlanningServiceTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>(TestAuth.Settings)
        {
            ["EventBus:Provider"] = "dapr",
            ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
            ["Services:risk:Grpc"] = "http://127.0.0.1:1",
        });
        _client = new PlanningService.PlanningServiceClient(_server.CreateInvoker(TestAuth.Token(RebalanceMesh.ServiceDefaults.MeshAuth.Admin)));
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    /// <summary>Posts a report as daprd delivers it (a structured CloudEvent); returns the subscription's answer.</summary>
    private async Task<string> PostReportAsync(ExecutionReport body)
    {
        var cloudEvent = new JsonObject
        {
            ["specversion"] = "1.0",
            ["id"] = body.ReportId,
            ["source"] = "execution",
            ["type"] = "rebalance.events.v1.ExecutionReport",
            ["datacontenttype"] = "application/json",
            ["topic"] = "execution.reports",
            ["pubsubname"] = "pubsub",
            ["data"] = JsonNode.Parse(JsonFormatter.Default.Format(body)),
        }.ToJsonString();
        using var content = new StringContent(cloudEvent, Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/cloudevents+json");
        var response = await _server.CreateClient().PostAsync("/events/execution.reports", content);
        response.EnsureSuccessStatusCode();
        return JsonNode.Parse(await response.Content.ReadAsStringAsync())!["status"]!.GetValue<string>();
    }

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Portfolio Portfolio(string id = "p1") => new()
    {
        PortfolioId = id,
        BaseCurrency = "EUR",
        Cash = 1_000m,
        Positions = { new Position { InstrumentId = "DAX", Quantity = 10m, Venue = "SIM-A" } },
    };

    [Fact]
    public async Task UpsertPortfolio_validates_every_field()
    {
        var bad = new Portfolio
        {
            PortfolioId = "has space",
            BaseCurrency = "eur",
            Cash = new DecimalValue { Value = "-5" },
            Positions =
            {
                new Position { InstrumentId = "DAX", Quantity = new DecimalValue { Value = "ten" } },
                new Position { InstrumentId = "DAX", Quantity = 1m, Venue = "no/such venue" },
                new Position { InstrumentId = "DAX", Quantity = 2m }, // the default account again
                new Position { InstrumentId = "DAX", Quantity = 3m, Venue = "SIM-B" }, // another account: fine
            },
            CashBalances =
            {
                new CashBalance { Currency = "usd", Amount = 1m },
                new CashBalance { Currency = "CHF", Amount = new DecimalValue { Value = "-1" } },
                new CashBalance { Currency = "CHF", Amount = 1m },
            },
        };
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = bad }).ResponseAsync, "portfolio.portfolio_id");
        Assert.Contains("portfolio.base_currency", fields);
        Assert.Contains("portfolio.cash", fields);
        Assert.Contains("portfolio.positions[0].quantity", fields);
        Assert.Contains("portfolio.positions[2].instrument_id", fields);
        Assert.Contains("portfolio.positions[1].venue", fields);
        Assert.DoesNotContain(fields, f => f.StartsWith("portfolio.positions[3]", StringComparison.Ordinal));
        Assert.Contains("portfolio.cash_balances[0].currency", fields);
        Assert.Contains("portfolio.cash_balances[1].amount", fields);
        Assert.Contains("portfolio.cash_balances[2].currency", fields); // CHF twice
        await RpcAssert.InvalidArgumentAsync(() => _client.UpsertPortfolioAsync(new UpsertPortfolioRequest()).ResponseAsync, "portfolio");

        // Numbers that would overflow decimal arithmetic later are refused at the door.
        var huge = Portfolio();
        huge.Positions[0].Quantity = new DecimalValue { Value = "79228162514264337593543950335" };
        await RpcAssert.InvalidArgumentAsync(() => _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = huge }).ResponseAsync, "portfolio.positions[0].quantity");
    }

    [Fact]
    public async Task SetPolicy_validates_the_optimiser_settings()
    {
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = -1 });
        var policy = new Policy
        {
            PortfolioId = "p1",
            AbsoluteBand = 0.05,
            Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.9 } },
            Optimizer = new OptimizerSettings
            {
                Enabled = true,
                Objective = OptimizerObjective.MeanVariance,
                RiskAversion = -1,
                TurnoverCap = double.NaN,
                DailyVolumes = { ["DAX"] = new DecimalValue { Value = "-5" } },
                Bounds = { ["DAX"] = new WeightBounds { Lower = 0.5, Upper = 0.2 } },
                DeltaBands = { new DeltaBand { UnderlyingId = "DAX", Tolerance = -0.1 }, new DeltaBand { UnderlyingId = "DAX" } },
            },
        };
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy }).ResponseAsync, "policy.optimizer.risk_aversion");
        Assert.Contains("policy.optimizer.turnover_cap", fields);
        Assert.Contains("policy.optimizer.daily_volumes[DAX]", fields);
        Assert.Contains("policy.optimizer.bounds[DAX]", fields);
        Assert.Contains("policy.optimizer.delta_bands[0].tolerance", fields);
        Assert.Contains("policy.optimizer.delta_bands[1].underlying_id", fields);
        Assert.Contains("policy.expected_returns", fields); // mean-variance without expected returns

        // Fixed, the policy is stored with its settings.
        policy.Optimizer = new OptimizerSettings { Enabled = true, TurnoverCap = 0.2, Bounds = { ["DAX"] = new WeightBounds { Lower = 0, Upper = 0.95 } } };
        var stored = (await _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy })).Policy;
        Assert.Equal(0.2, stored.Optimizer.TurnoverCap);
    }

    [Fact]
    public async Task SetPolicy_validates_the_model_parameters()
    {
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = -1 });
        var policy = new Policy
        {
            PortfolioId = "p1",
            AbsoluteBand = 0.05,
            TargetModel = TargetModel.EfficientRisk,
            Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.5 }, new TargetWeight { InstrumentId = "SMI", Weight = 0.4 } },
            ModelParameters = new ModelParameters { RiskFreeRate = 2, Covariance = { 0.04, 0.01, 0.02 } },
            ExpectedReturns = { ["DAX"] = double.PositiveInfinity },
            RiskLimits = new RiskLimits { MaxWeight = 2, MaxVar99 = -0.1 },
            MaxSlippageBps = -1,
            ExecutionStyle = new ExecutionStyle { TwapSlices = 5 },
        };
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy }).ResponseAsync, "policy.model_parameters.target_volatility");
        Assert.Contains("policy.model_parameters.risk_free_rate", fields);
        Assert.Contains("policy.model_parameters.covariance", fields);
        Assert.Contains("policy.expected_returns[DAX]", fields);
        Assert.Contains("policy.risk_limits.max_weight", fields);
        Assert.Contains("policy.risk_limits.max_var_99", fields);
        Assert.Contains("policy.max_slippage_bps", fields);
        Assert.Contains("policy.execution_style.twap_duration_seconds", fields); // slices need a duration
        policy.MaxSlippageBps = 25;
        policy.ExecutionStyle = new ExecutionStyle { TwapSlices = 5, TwapDurationSeconds = 60, PovRate = 0.7, MakerWaitSeconds = 601 };
        var styleFields = await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy }).ResponseAsync, "policy.execution_style.pov_rate"); // above 0.5, and with TWAP
        Assert.Contains("policy.execution_style.pov_interval_seconds", styleFields);
        Assert.Contains("policy.execution_style.maker_wait_seconds", styleFields); // at most 10 minutes
        policy.ExecutionStyle = new ExecutionStyle { TwapSlices = 5, TwapDurationSeconds = 60 };
        policy.RiskLimits = new RiskLimits { MaxWeight = 0.6 };

        policy.ModelParameters = new ModelParameters { TargetVolatility = 0.2, Covariance = { 0.04, 0.01, 0.02, 0.09 } };
        policy.ExpectedReturns.Clear();
        await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy }).ResponseAsync, "policy.model_parameters.covariance"); // not symmetric
        policy.ModelParameters.Covariance[2] = 0.01;
        Assert.Equal(0.2, (await _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy })).Policy.ModelParameters.TargetVolatility);
    }

    private static Portfolio WithLoan(Portfolio portfolio)
    {
        portfolio.Loans.Add(new Loan
        {
            LoanId = "L1",
            Venue = "LEND-A",
            Collateral = { new LoanCollateral { Asset = "DAX", Quantity = 5m, LiquidationThreshold = 0.8 } },
            Debt = { new LoanDebt { Asset = "EUR", Quantity = 300m } },
        });
        return portfolio;
    }

    [Fact]
    public async Task Loans_and_the_health_factor_band_are_validated()
    {
        var bad = WithLoan(Portfolio());
        bad.Loans.Add(new Loan { LoanId = "L1", Venue = "", Debt = { new LoanDebt { Asset = "no such asset", Quantity = 1m } } });
        bad.Loans[0].Debt[0].Asset = "DAX"; // owed and pledged at once
        bad.Loans[0].Collateral.Add(new LoanCollateral { Asset = "DAX", Quantity = 1m, LiquidationThreshold = 1.5 });
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = bad, ExpectedVersion = -1 }).ResponseAsync, "portfolio.loans[1].loan_id");
        Assert.Contains("portfolio.loans[1].venue", fields);
        Assert.Contains("portfolio.loans[1].collateral", fields);
        Assert.Contains("portfolio.loans[1].debt[0].asset", fields);
        Assert.Contains("portfolio.loans[0].collateral[1].asset", fields);
        Assert.Contains("portfolio.loans[0].collateral[1].liquidation_threshold", fields);
        Assert.Contains("portfolio.loans[0].debt[0].asset", fields);

        var stored = (await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = WithLoan(Portfolio()), ExpectedVersion = -1 })).Portfolio;
        Assert.Equal(300m, stored.Loans.Single().Debt.Single().Quantity.ToDecimal());

        // Debt may be owed in an instrument (units of it), and survives the round trip.
        var owesSmi = WithLoan(Portfolio());
        owesSmi.Loans[0].Debt[0] = new LoanDebt { Asset = "SMI", Quantity = 0.25m };
        var storedSmi = (await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = owesSmi, ExpectedVersion = stored.Version })).Portfolio;
        Assert.Equal(("SMI", 0.25m), (storedSmi.Loans[0].Debt[0].Asset, storedSmi.Loans[0].Debt[0].Quantity.ToDecimal()));
        Assert.Equal("SMI", storedSmi.ToDomain().LoanList[0].DebtAsset);

        var policy = new Policy
        {
            PortfolioId = "p1",
            AbsoluteBand = 0.05,
            Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.9 } },
            HealthFactorBand = new HealthFactorBand { Target = 1.5, RepayBelow = 1.6, BoostAbove = 1.4, EmergencyBelow = 0.9 },
            MarginBand = new MarginBand { Target = 1.5, ActBelow = 1.6, EmergencyBelow = 1.7, MaintenanceRate = 0 },
        };
        var bandFields = await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy }).ResponseAsync, "policy.health_factor_band.repay_below");
        Assert.Contains("policy.health_factor_band.boost_above", bandFields);
        Assert.Contains("policy.health_factor_band.emergency_below", bandFields);
        Assert.Contains("policy.margin_band.act_below", bandFields);
        Assert.Contains("policy.margin_band.emergency_below", bandFields);
        Assert.Contains("policy.margin_band.maintenance_rate", bandFields);
        policy.HealthFactorBand = new HealthFactorBand { Target = 1.5, RepayBelow = 1.2 };
        policy.MarginBand = new MarginBand { Target = 2, ActBelow = 1.5, EmergencyBelow = 1.1, MaintenanceRate = 0.05 };
        Assert.Equal(0.05, (await _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy })).Policy.MarginBand.MaintenanceRate);
    }

    [Fact]
    public async Task Loan_leg_fills_move_debt_collateral_and_cash_once()
    {
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = WithLoan(Portfolio()), ExpectedVersion = -1 });
        var store = _server.Services.GetRequiredService<PlanningStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await store.CreatePlanAsync(new Plan
        {
            PlanId = "plan-guard",
            PortfolioId = "p1",
            Status = PlanStatus.Approved,
            CreatedAt = now,
            Legs =
            {
                new PlanLeg { LegId = "G1", Sequence = 1, Kind = LegKind.Repay, LoanId = "L1", InstrumentId = "EUR", Quantity = 200m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending },
                new PlanLeg { LegId = "G2", Sequence = 2, Kind = LegKind.SupplyCollateral, LoanId = "L1", InstrumentId = "DAX", Quantity = 4m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending },
            },
        }, "k-guard");

        var http = _server.CreateClient();
        async Task PostAsync(ExecutionReport report)
        {
            var cloudEvent = new JsonObject
            {
                ["specversion"] = "1.0",
                ["id"] = report.ReportId,
                ["source"] = "execution",
                ["type"] = "rebalance.events.v1.ExecutionReport",
                ["datacontenttype"] = "application/json",
                ["topic"] = "execution.reports",
                ["pubsubname"] = "pubsub",
                ["data"] = JsonNode.Parse(JsonFormatter.Default.Format(report)),
            }.ToJsonString();
            using var content = new StringContent(cloudEvent, Encoding.UTF8);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/cloudevents+json");
            (await http.PostAsync("/events/execution.reports", content)).EnsureSuccessStatusCode();
        }

        ExecutionReport Fill(string reportId, string legId, string asset, decimal quantity) => new()
        {
            ReportId = reportId,
            PlanId = "plan-guard",
            PortfolioId = "p1",
            LegId = legId,
            Kind = ReportKind.Fill,
            Fill = new Fill { FillId = "f-" + reportId, Venue = "LEND-A", InstrumentId = asset, Quantity = quantity, Price = 1m, Fee = 0m, FilledAt = now },
        };

        await PostAsync(Fill("r1", "G1", "EUR", 200m));
        await PostAsync(Fill("r1", "G1", "EUR", 200m)); // redelivered: applied once
        await PostAsync(Fill("r2", "G2", "DAX", 4m));

        var portfolio = (await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p1", SkipValuation = true })).Portfolio;
        Assert.Equal(1_000m - 200m, portfolio.Cash.ToDecimal());
        Assert.Equal(100m, portfolio.Loans.Single().Debt.Single().Quantity.ToDecimal());
        Assert.Equal(9m, portfolio.Loans.Single().Collateral.Single().Quantity.ToDecimal());
        Assert.Equal(6m, portfolio.Positions.Single(p => p.InstrumentId == "DAX").Quantity.ToDecimal());
        var plan = (await _client.GetPlanAsync(new GetPlanRequest { PlanId = "plan-guard" })).Plan;
        Assert.All(plan.Legs, l => Assert.Equal(LegStatus.Filled, l.Status));
    }

    [Fact]
    public async Task UpsertPortfolio_uses_optimistic_concurrency()
    {
        var created = (await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = 0 })).Portfolio;
        Assert.Equal(1, created.Version);
        await RpcAssert.StatusAsync(() => _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = 0 }).ResponseAsync, StatusCode.Aborted);
        var updated = (await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = 1 })).Portfolio;
        Assert.Equal(2, updated.Version);
        await RpcAssert.StatusAsync(() => _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = 1 }).ResponseAsync, StatusCode.Aborted);
    }

    [Fact]
    public async Task Unknown_things_are_NotFound_and_bad_ids_InvalidArgument()
    {
        await RpcAssert.StatusAsync(() => _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "nope" }).ResponseAsync, StatusCode.NotFound);
        await RpcAssert.StatusAsync(() => _client.GetPlanAsync(new GetPlanRequest { PlanId = "nope" }).ResponseAsync, StatusCode.NotFound);
        await RpcAssert.InvalidArgumentAsync(() => _client.GetPlanAsync(new GetPlanRequest()).ResponseAsync, "plan_id");
        await RpcAssert.InvalidArgumentAsync(() => _client.ListPlansAsync(new ListPlansRequest { PortfolioId = "p", PageSize = 1000, PageToken = "x" }).ResponseAsync, "page_size");
        await RpcAssert.InvalidArgumentAsync(() => _client.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "p" }).ResponseAsync, "idempotency_key");
        await RpcAssert.InvalidArgumentAsync(() => _client.SetTradingHaltAsync(new SetTradingHaltRequest { Halted = true }).ResponseAsync, "reason");
    }

    [Fact]
    public async Task SetPolicy_validates_weights_and_bands()
    {
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = -1 });
        var policy = new Policy
        {
            PortfolioId = "p1",
            Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.7 }, new TargetWeight { InstrumentId = "SMI", Weight = 0.6 } },
            AbsoluteBand = 2,
        };
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy }).ResponseAsync, "policy.targets");
        Assert.Contains("policy.absolute_band", fields);

        policy.Targets[1].Weight = 0.3;
        policy.AbsoluteBand = 0.05;
        policy.CooldownSeconds = -1;
        policy.ExecutionMode = (ExecutionMode)42;
        policy.ModelLookbackDays = 5;
        policy.NoTradeInstruments.Add("DAX");
        var more = await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy }).ResponseAsync, "policy.cooldown_seconds");
        Assert.Contains("policy.execution_mode", more);
        Assert.Contains("policy.model_lookback_days", more);
        Assert.Contains("policy.no_trade_instruments[0]", more);  // targeted and left alone at once
        policy.CooldownSeconds = 60;
        policy.ExecutionMode = ExecutionMode.Auto;
        policy.ModelLookbackDays = 0;
        policy.NoTradeInstruments.Clear();
        var stored = (await _client.SetPolicyAsync(new SetPolicyRequest { Policy = policy })).Policy;
        Assert.Equal(1, stored.Version);
        await RpcAssert.StatusAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = new Policy(policy) { PortfolioId = "ghost" } }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact]
    public async Task Dapr_delivers_subscriptions_as_CloudEvents_over_HTTP()
    {
        var http = _server.CreateClient();
        var subscribe = JsonNode.Parse(await http.GetStringAsync("/dapr/subscribe"))!.AsArray();
        var topics = subscribe.Select(s => s!["topic"]!.GetValue<string>()).Order().ToArray();
        Assert.Equal(["execution.reports", "market.quotes"], topics);
        Assert.All(subscribe, s => Assert.Equal("pubsub", s!["pubsubName"]!.GetValue<string>()));
        Assert.All(subscribe, s => Assert.Equal(s!["topic"]!.GetValue<string>() + ".deadletter", s!["deadLetterTopic"]!.GetValue<string>()));

        // A stored portfolio and an approved plan for it.
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = -1 });
        var store = _server.Services.GetRequiredService<PlanningStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await store.CreatePlanAsync(new Plan
        {
            PlanId = "plan-1",
            PortfolioId = "p1",
            Status = PlanStatus.Approved,
            CreatedAt = now,
            Legs = { new PlanLeg { LegId = "L1", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending, Venue = "SIM-A" } },
        }, "k1");

        var report = new ExecutionReport
        {
            ReportId = "r1",
            PlanId = "plan-1",
            PortfolioId = "p1",
            LegId = "L1",
            Kind = ReportKind.Fill,
            Fill = new Fill { FillId = "f1", Venue = "SIM-A", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, Price = 100m, Fee = 0.5m, FilledAt = now },
        };

        // Exactly what daprd posts: a structured CloudEvent, content type application/cloudevents+json.
        async Task<string> PostAsync(string body)
        {
            using var content = new StringContent(body, Encoding.UTF8);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/cloudevents+json");
            var response = await http.PostAsync("/events/execution.reports", content);
            response.EnsureSuccessStatusCode();
            return JsonNode.Parse(await response.Content.ReadAsStringAsync())!["status"]!.GetValue<string>();
        }

        var cloudEvent = new JsonObject
        {
            ["specversion"] = "1.0",
            ["id"] = "evt-1",
            ["source"] = "execution",
            ["type"] = "rebalance.events.v1.ExecutionReport",
            ["datacontenttype"] = "application/json",
            ["topic"] = "execution.reports",
            ["pubsubname"] = "pubsub",
            ["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ["data"] = JsonNode.Parse(JsonFormatter.Default.Format(report)),
        }.ToJsonString();

        Assert.Equal("SUCCESS", await PostAsync(cloudEvent));
        Assert.Equal("SUCCESS", await PostAsync(cloudEvent)); // redelivery: applied once
        Assert.Equal("DROP", await PostAsync("{not json"));
        Assert.Equal("DROP", await PostAsync(cloudEvent.Replace("rebalance.events.v1.ExecutionReport", "rebalance.events.v1.Unknown", StringComparison.Ordinal)));

        var stored = await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p1", SkipValuation = true });
        Assert.Null(stored.Valuation);
        var portfolio = stored.Portfolio;
        Assert.Equal(12m, portfolio.Positions.Single(p => p.InstrumentId == "DAX").Quantity.ToDecimal());
        Assert.Equal("SIM-A", portfolio.Positions.Single(p => p.InstrumentId == "DAX").Venue); // booked in the leg's account
        Assert.Equal(1_000m - 200m - 0.5m, portfolio.Cash.ToDecimal());
        var plan = (await _client.GetPlanAsync(new GetPlanRequest { PlanId = "plan-1" })).Plan;
        Assert.Equal(PlanStatus.Executing, plan.Status);
        Assert.Equal(LegStatus.Filled, plan.Legs[0].Status);
        Assert.Equal(100m, plan.Legs[0].AverageFillPrice.ToDecimal());
    }

    [Fact]
    public async Task Reports_out_of_order_end_in_the_same_state_as_in_order()
    {
        // The plan's end, then the leg's end, then the fill (twice): the plan is completed, the leg filled once, the
        // position and cash moved once — as if they had come in order.
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio(), ExpectedVersion = -1 });
        var store = _server.Services.GetRequiredService<PlanningStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await store.CreatePlanAsync(new Plan
        {
            PlanId = "plan-late",
            PortfolioId = "p1",
            Status = PlanStatus.Approved,
            CreatedAt = now,
            Legs = { new PlanLeg { LegId = "L1", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending, Venue = "SIM-A" } },
        }, "k-late");
        ExecutionReport Report(string id, ReportKind kind) => new() { ReportId = id, PlanId = "plan-late", PortfolioId = "p1", LegId = kind == ReportKind.PlanDone ? string.Empty : "L1", Kind = kind, ReportedAt = now };
        Assert.Equal("SUCCESS", await PostReportAsync(new ExecutionReport(Report("r3", ReportKind.PlanDone)) { PlanStatus = ReportedPlanStatus.Completed, Message = "1/1 legs filled" }));
        Assert.Equal("SUCCESS", await PostReportAsync(new ExecutionReport(Report("r2", ReportKind.LegDone)) { LegStatus = ReportedLegStatus.Filled }));
        var fill = new ExecutionReport(Report("r1", ReportKind.Fill)) { Fill = new Fill { FillId = "late-f1", Venue = "SIM-A", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, Price = 100m, Fee = 0.5m, FilledAt = now } };
        Assert.Equal("SUCCESS", await PostReportAsync(fill));
        Assert.Equal("SUCCESS", await PostReportAsync(new ExecutionReport(fill) { ReportId = "r1-again" }));

        var plan = (await _client.GetPlanAsync(new GetPlanRequest { PlanId = "plan-late" })).Plan;
        Assert.Equal((PlanStatus.Completed, LegStatus.Filled, 2m), (plan.Status, plan.Legs[0].Status, plan.Legs[0].FilledQuantity.ToDecimal()));
        var portfolio = (await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p1", SkipValuation = true })).Portfolio;
        Assert.Equal((12m, 1_000m - 200m - 0.5m), (portfolio.Positions.Single().Quantity.ToDecimal(), portfolio.Cash.ToDecimal()));
    }

    [Fact]
    public async Task Reports_handed_over_together_end_as_one_at_a_time_and_a_repeated_batch_changes_nothing()
    {
        // Two portfolios' reports interleaved in one batch (as a Redis Streams lane hands them over), a fill repeated in
        // it and one of a plan nobody knows: each plan's run is applied in one transaction, in report order.
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio("p1"), ExpectedVersion = -1 });
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Portfolio("p2"), ExpectedVersion = -1 });
        var store = _server.Services.GetRequiredService<PlanningStore>();
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await store.CreatePlanAsync(new Plan
        {
            PlanId = "plan-a", PortfolioId = "p1", Status = PlanStatus.Approved, CreatedAt = now,
            Legs =
            {
                new PlanLeg { LegId = "L1", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending, Venue = "SIM-A" },
                new PlanLeg { LegId = "L2", InstrumentId = "DAX", Side = Side.Sell, Quantity = 1m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending, Venue = "SIM-A" },
            },
        }, "k-a");
        await store.CreatePlanAsync(new Plan
        {
            PlanId = "plan-b", PortfolioId = "p2", Status = PlanStatus.Approved, CreatedAt = now,
            Legs = { new PlanLeg { LegId = "L1", InstrumentId = "DAX", Side = Side.Buy, Quantity = 2m, FilledQuantity = 0m, Fees = 0m, Status = LegStatus.Pending, Venue = "SIM-A" } },
        }, "k-b");
        ExecutionReport Fill(string plan, string portfolio, string leg, string fillId, Side side, decimal quantity, decimal price, decimal fee) => new()
        {
            ReportId = "r-" + fillId, PlanId = plan, PortfolioId = portfolio, LegId = leg, Kind = ReportKind.Fill, ReportedAt = now,
            Fill = new Fill { FillId = fillId, Venue = "SIM-A", InstrumentId = "DAX", Side = side, Quantity = quantity, Price = price, Fee = fee, FilledAt = now },
        };
        ExecutionReport[] batch =
        [
            Fill("plan-a", "p1", "L1", "f1", Side.Buy, 2m, 100m, 0.5m),
            Fill("plan-b", "p2", "L1", "g1", Side.Buy, 1m, 100m, 0m),
            Fill("plan-a", "p1", "L1", "f1", Side.Buy, 2m, 100m, 0.5m), // redelivered within the batch
            Fill("plan-b", "p2", "L1", "g2", Side.Buy, 1m, 110m, 0m),
            new() { ReportId = "r-a-l1", PlanId = "plan-a", PortfolioId = "p1", LegId = "L1", Kind = ReportKind.LegDone, LegStatus = ReportedLegStatus.Filled, ReportedAt = now },
            Fill("plan-a", "p1", "L2", "f2", Side.Sell, 1m, 105m, 0.25m),
            Fill("plan-zzz", "p9", "L1", "z1", Side.Buy, 1m, 100m, 0m), // a plan nobody knows: ignored
            new() { ReportId = "r-a-end", PlanId = "plan-a", PortfolioId = "p1", Kind = ReportKind.PlanDone, PlanStatus = ReportedPlanStatus.Completed, Message = "2/2 legs filled", ReportedAt = now },
        ];
        async Task HandAsync(IEnumerable<ExecutionReport> reports)
        {
            await using var scope = _server.Services.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<ExecutionReportHandler>().HandleBatchAsync(
                reports.Select(r => new DeliveredEvent<ExecutionReport>(r, new EventContext(r.ReportId, Topics.ExecutionReports, "execution", DateTimeOffset.UtcNow, 1))).ToArray(),
                CancellationToken.None);
        }

        await HandAsync(batch);
        async Task<(Portfolio, Plan)> ReadAsync(string portfolioId, string planId) => (
            (await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = portfolioId, SkipValuation = true })).Portfolio,
            (await _client.GetPlanAsync(new GetPlanRequest { PlanId = planId })).Plan);
        var (p1, a) = await ReadAsync("p1", "plan-a");
        Assert.Equal((11m, 1_000m - 200m - 0.5m + 105m - 0.25m), (p1.Positions.Single().Quantity.ToDecimal(), p1.Cash.ToDecimal()));
        Assert.Equal((PlanStatus.Completed, LegStatus.Filled, LegStatus.Filled), (a.Status, a.Legs[0].Status, a.Legs[1].Status));
        Assert.Equal((2m, 0.5m, 1m, 0.25m), (a.Legs[0].FilledQuantity.ToDecimal(), a.Legs[0].Fees.ToDecimal(), a.Legs[1].FilledQuantity.ToDecimal(), a.Legs[1].Fees.ToDecimal()));
        var (p2, b) = await ReadAsync("p2", "plan-b");
        Assert.Equal((12m, 1_000m - 100m - 110m), (p2.Positions.Single().Quantity.ToDecimal(), p2.Cash.ToDecimal()));
        Assert.Equal((PlanStatus.Executing, LegStatus.Filled, 105m), (b.Status, b.Legs[0].Status, b.Legs[0].AverageFillPrice.ToDecimal()));
        Assert.Equal((2L, 2L), (p1.Version, p2.Version)); // one transaction per plan's run: one new version each

        // The same batch again (a redelivery): nothing changes.
        await HandAsync(batch);
        var (p1Again, aAgain) = await ReadAsync("p1", "plan-a");
        var (p2Again, bAgain) = await ReadAsync("p2", "plan-b");
        Assert.Equal((p1, a, p2, b), (p1Again, aAgain, p2Again, bAgain));

        // A malformed fill fails its batch (the bus then delivers each report alone, and dead-letters only that one).
        await Assert.ThrowsAsync<MalformedEventException>(() => HandAsync([Fill("plan-b", "p2", "L1", "g3", Side.Buy, 0m, 100m, 0m)]));
    }

    [Fact]
    public async Task A_liquidation_report_takes_seized_collateral_and_repaid_debt_off_the_loan_once()
    {
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = WithLoan(Portfolio()), ExpectedVersion = -1 }); // 5 DAX against 300 EUR
        var report = new ExecutionReport
        {
            ReportId = "r-liq",
            PortfolioId = "p1",
            Kind = ReportKind.Liquidation,
            Liquidation = new Liquidation { LiquidationId = "LEND-A:p1:L1:1", Venue = "LEND-A", LoanId = "L1", SeizedAsset = "DAX", SeizedQuantity = 2.5m, DebtAsset = "EUR", DebtRepaid = 150m, HealthFactorBefore = 0.97, HealthFactorAfter = 1.1 },
        };
        Assert.Equal("SUCCESS", await PostReportAsync(report));
        Assert.Equal("SUCCESS", await PostReportAsync(new ExecutionReport(report) { ReportId = "r-liq-again" })); // the same liquidation redelivered
        var loan = (await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "p1", SkipValuation = true })).Portfolio.Loans.Single();
        Assert.Equal((2.5m, 150m), (loan.Collateral.Single().Quantity.ToDecimal(), loan.Debt.Single().Quantity.ToDecimal()));

        // A liquidation of a loan the portfolio does not have is malformed: dropped to the dead letters, nothing changes.
        var unknown = new ExecutionReport(report) { ReportId = "r-bad", Liquidation = new Liquidation(report.Liquidation) { LiquidationId = "x", LoanId = "L9" } };
        Assert.Equal("DROP", await PostReportAsync(unknown));
    }
}
