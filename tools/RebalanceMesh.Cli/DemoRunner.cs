using RebalanceMesh.ServiceDefaults;
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;

namespace RebalanceMesh.Cli;

/// <summary>What the demo measured.</summary>
public sealed record DemoResult(Portfolio Initial, Plan Plan, GetPortfolioResponse After, GetPlanExecutionResponse Execution, TimeSpan SubmitToLastFill, IReadOnlyList<SpanRecord> Spans);

/// <summary>
/// The demo: a EUR portfolio overweight the DAX against a 24 % × 4 policy; preview, submit, watch the plan to its
/// end, then show fills, final weights and the trace.
/// </summary>
public sealed class DemoRunner(MeshState mesh, string spansDirectory, TextWriter output)
{
    public static readonly string[] Instruments = ["CAC", "DAX", "FTSE", "SMI"];

    public async Task<DemoResult> RunAsync(string portfolioId, CancellationToken cancellationToken)
    {
        using var planningChannel = mesh.PlanningChannel();
        using var pricingChannel = mesh.ServiceChannel("pricing");
        using var executionChannel = mesh.ServiceChannel("execution");
        var planning = new PlanningService.PlanningServiceClient(planningChannel.WithDefaultDeadline());
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());

        var prices = await WaitForPricesAsync(pricing, cancellationToken);
        output.WriteLine("Market (consolidated mids from pricing):");
        foreach (var (instrument, mid) in prices.OrderBy(p => p.Key))
        {
            output.WriteLine($"  {instrument,-5} {mid,12:F2}");
        }

        // Derivatives the portfolio holds as an overlay, registered with pricing, which values them.
        var putStrike = decimal.Round(prices["DAX"] * 0.95m, 0);
        var daxPut = new Instrument
        {
            InstrumentId = "DAX-P" + putStrike.ToString("0", CultureInfo.InvariantCulture),
            Kind = InstrumentKind.Option,
            UnderlyingId = "DAX",
            Strike = putStrike,
            OptionRight = OptionRight.Put,
            Expiry = Timestamp.FromDateTime(DateTime.UtcNow.Date.AddDays(91)),
            QuoteCurrency = "EUR",
        };
        var daxPerp = new Instrument { InstrumentId = "DAX-PERP", Kind = InstrumentKind.Perpetual, UnderlyingId = "DAX", QuoteCurrency = "EUR", Multiplier = 1m };
        await pricing.UpsertInstrumentsAsync(new UpsertInstrumentsRequest { Instruments = { daxPut, daxPerp } }, cancellationToken: cancellationToken);

        // 1,000,000 EUR, far from target: 55 % DAX, 15 % SMI, 15 % CAC, 10 % FTSE, 5 % cash.
        const decimal capital = 1_000_000m;
        var start = new Dictionary<string, decimal> { ["DAX"] = 0.55m, ["SMI"] = 0.15m, ["CAC"] = 0.15m, ["FTSE"] = 0.10m };
        var portfolio = new Portfolio { PortfolioId = portfolioId, DisplayName = "Demo: European indices", BaseCurrency = "EUR" };
        decimal invested = 0;
        foreach (var (instrument, weight) in start)
        {
            var quantity = decimal.Floor(capital * weight / prices[instrument]);
            invested += quantity * prices[instrument];
            if (instrument != "DAX")
            {
                portfolio.Positions.Add(new Position { InstrumentId = instrument, Quantity = quantity });
                continue;
            }

            // DAX sits in three accounts: the custodian (default account, 15 of the 55 %), and 20 % each on the SIM-A and
            // SIM-C exchange accounts. Its sell is split over the exchange accounts and sold on those venues.
            var onA = decimal.Floor(quantity * 20m / 55m);
            var onC = decimal.Floor(quantity * 20m / 55m);
            portfolio.Positions.Add(new Position { InstrumentId = instrument, Quantity = quantity - onA - onC });
            portfolio.Positions.Add(new Position { InstrumentId = instrument, Quantity = onA, Venue = "SIM-A" });
            portfolio.Positions.Add(new Position { InstrumentId = instrument, Quantity = onC, Venue = "SIM-C" });
        }

        // The overlay, held in the derivatives account on SIM-B: 100 protective DAX puts (bought with cash) and a short
        // DAX perpetual hedge opened at the index.
        var putPrice = (await pricing.PriceInstrumentsAsync(new PriceInstrumentsRequest { Items = { new ValuationItem { InstrumentId = daxPut.InstrumentId } } }, cancellationToken: cancellationToken)).Valuations[0].Price.ToDecimal();
        portfolio.Positions.Add(new Position { InstrumentId = daxPut.InstrumentId, Quantity = 100m, Venue = "SIM-B" });
        portfolio.Positions.Add(new Position { InstrumentId = daxPerp.InstrumentId, Quantity = -50m, EntryPrice = prices["DAX"], Venue = "SIM-B" });
        invested += 100m * putPrice;

        // The perpetual is margined in SIM-B's account: collateral of 20 % of its notional (4 × the venue's 5 %
        // maintenance margin) comes out of cash. It counts toward the policy's implied 4 % cash, so the more of it, the
        // less spendable cash is left as a buffer against prices moving between the plan and its fills.
        var collateral = decimal.Round(50m * prices["DAX"] * 0.20m, 2);
        portfolio.MarginAccounts.Add(new MarginAccount { Venue = "SIM-B", Collateral = collateral });
        portfolio.Cash = decimal.Round(capital - invested - collateral, 2);
        var initial = (await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 }, cancellationToken: cancellationToken)).Portfolio;

        // The venues hold what the portfolio holds with them: spot units on SIM-A and SIM-C (a sell there cannot exceed
        // them), the put, the perpetual and its collateral on SIM-B.
        foreach (var venue in portfolio.Positions.Select(p => p.Venue).Where(v => v.Length > 0).Distinct())
        {
            var account = new VenueMarginAccount { Venue = venue, PortfolioId = portfolioId, BaseCurrency = "EUR", Collateral = venue == "SIM-B" ? collateral : 0m };
            foreach (var position in portfolio.Positions.Where(p => p.Venue == venue))
            {
                if (position.InstrumentId == daxPerp.InstrumentId)
                {
                    account.Positions.Add(new VenueMarginPosition { InstrumentId = position.InstrumentId, Quantity = position.Quantity, EntryPrice = position.EntryPrice, Multiplier = 1m });
                }
                else
                {
                    account.SpotBalances.Add(new VenueSpotBalance { InstrumentId = position.InstrumentId, Quantity = position.Quantity });
                }
            }

            await execution.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = account }, cancellationToken: cancellationToken);
        }

        var policy = new Policy
        {
            PortfolioId = portfolioId,
            AbsoluteBand = 0.05,
            RelativeBand = 0.25,
            TotalDriftThreshold = 0.10,
            RebalanceTarget = RebalanceTarget.Target,
            MinTradeNotional = 1_000m,
            EstimatedCostBps = 8,
        };
        policy.Targets.AddRange(Instruments.Select(i => new TargetWeight { InstrumentId = i, Weight = 0.24 }));
        policy.NoTradeInstruments.Add(daxPut.InstrumentId);
        policy.NoTradeInstruments.Add(daxPerp.InstrumentId);
        await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy }, cancellationToken: cancellationToken);
        output.WriteLine();
        output.WriteLine($"Portfolio {portfolioId}: 1,000,000 EUR at 55/15/15/10 % DAX/SMI/CAC/FTSE (DAX over three accounts: custodian, SIM-A, SIM-C); policy 24 % each, ±5 pp or ±25 % bands.");
        output.WriteLine($"Overlay (valued by pricing, left alone by the policy): 100 {daxPut.InstrumentId} (91-day put), -50 DAX-PERP (short perpetual, {collateral:N0} EUR of collateral in the SIM-B margin account).");
        var before = await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = portfolioId }, cancellationToken: cancellationToken);
        foreach (var position in before.Valuation.Positions.Where(p => p.Kind is InstrumentKind.Option or InstrumentKind.Perpetual))
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {position.InstrumentId,-10} {position.Kind.ToString().ToLowerInvariant(),-9} qty {position.Quantity.Value,6}  unit {position.Price.Value,-14} value {position.MarketValue.Value,-14} delta exposure {position.DeltaExposure,12:N0} EUR"));
        }

        var preview = (await planning.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = portfolioId }, cancellationToken: cancellationToken)).Plan;
        output.WriteLine();
        output.WriteLine("Preview — why:");
        foreach (var reason in preview.Reasons.Where(r => r.Breached))
        {
            output.WriteLine("  " + reason.Message);
        }

        PlanPrinter.PrintLegs(preview, output);

        var stopwatch = Stopwatch.StartNew();
        var submitted = (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest
        {
            PortfolioId = portfolioId,
            IdempotencyKey = "demo-" + Guid.NewGuid().ToString("N"),
        }, cancellationToken: cancellationToken)).Plan;
        output.WriteLine();
        output.WriteLine($"Submitted {submitted.PlanId}: {submitted.Status}");

        var final = submitted;
        using (var watch = planning.WatchPlans(new WatchPlansRequest { PlanId = submitted.PlanId }, deadline: DateTime.UtcNow.AddSeconds(60), cancellationToken: cancellationToken))
        {
            await foreach (var update in watch.ResponseStream.ReadAllAsync(cancellationToken))
            {
                final = update.Plan;
                if (final.Status is PlanStatus.Completed or PlanStatus.PartiallyFilled or PlanStatus.Failed or PlanStatus.Cancelled or PlanStatus.NoAction)
                {
                    break;
                }
            }
        }

        var elapsed = stopwatch.Elapsed;
        var executionState = await execution.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = submitted.PlanId }, cancellationToken: cancellationToken);
        var lastFill = executionState.Orders.Where(o => o.Status == OrderStatus.Filled).Select(o => o.UpdatedAt.ToDateTime()).DefaultIfEmpty().Max();
        var submitToLastFill = lastFill == default ? elapsed : lastFill - submitted.CreatedAt.ToDateTime();

        output.WriteLine($"Plan {final.PlanId}: {final.Status} — {final.StatusMessage}");
        output.WriteLine();
        output.WriteLine("Fills:");
        foreach (var order in executionState.Orders)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {order.ClientOrderId,-36} {order.Venue,-6} {order.Side.ToString().ToUpperInvariant(),-4} {order.InstrumentId,-5} {order.FilledQuantity.Value,8} @ {order.AveragePrice?.Value,-10} fee {order.Fees.Value} {order.Status}"));
        }

        foreach (var leg in executionState.Legs)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  leg {leg.LegId}: {leg.InstrumentId} shortfall vs arrival {leg.ShortfallBps:F2} bps"));
        }

        var after = await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = portfolioId }, cancellationToken: cancellationToken);
        output.WriteLine();
        output.WriteLine("Final weights:");
        foreach (var position in after.Valuation.Positions)
        {
            var target = position.Kind == InstrumentKind.Spot ? string.Create(CultureInfo.InvariantCulture, $"(target {position.TargetWeight:P0})") : "(overlay, not traded)";
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {position.InstrumentId,-10} {position.Quantity.Value,8} units  {position.Weight,7:P2}  {target}"));
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  cash  {after.Valuation.Cash.Value} EUR; total drift now {after.Valuation.TotalDrift:P2}"));
        output.WriteLine();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Submit to last fill: {submitToLastFill.TotalMilliseconds:F0} ms (submit to final status seen by the client: {elapsed.TotalMilliseconds:F0} ms)"));

        // Spans are exported as they end; give the last consumer spans a moment to reach the files.
        await Task.Delay(500, cancellationToken);
        var spans = SpanFiles.ReadTrace(spansDirectory, submitted.TraceId);
        output.WriteLine($"Trace {submitted.TraceId}: {spans.Count} spans from {string.Join(", ", spans.Select(s => s.Service).Distinct().Order())}");
        SpanFiles.PrintTree(spans, output, maxLines: 40);
        return new DemoResult(initial, final, after, executionState, submitToLastFill, spans);
    }

    internal static async Task<Dictionary<string, decimal>> WaitForPricesAsync(PricingService.PricingServiceClient pricing, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var request = new GetQuotesRequest();
            request.InstrumentIds.AddRange(Instruments);
            var response = await pricing.GetQuotesAsync(request, deadline: DateTime.UtcNow.AddSeconds(5), cancellationToken: cancellationToken);
            if (response.Prices.Count == Instruments.Length)
            {
                return response.Prices.ToDictionary(p => p.InstrumentId, p => p.Mid.ToDecimal());
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("Pricing has no quotes for the demo instruments after 30 s; is the CSV feed on?");
            }

            await Task.Delay(250, cancellationToken);
        }
    }
}

/// <summary>Prints plans for people.</summary>
public static class PlanPrinter
{
    public static void PrintLegs(Plan plan, TextWriter output)
    {
        output.WriteLine($"Plan {plan.PlanId} ({plan.Status}): {plan.StatusMessage}");
        foreach (var leg in plan.Legs)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {leg.Sequence,2}. {leg.Side.ToString().ToUpperInvariant(),-4} {leg.Quantity.Value,8} {leg.InstrumentId,-5} @ {leg.ReferencePrice.Value,-10} ≈ {leg.EstimatedNotional.Value,14} EUR  weight {leg.WeightBefore:P2} → {leg.WeightAfter:P2}{(leg.Venue.Length > 0 ? $"  [account {leg.Venue}]" : string.Empty)}"));
        }

        if (plan.CashBefore is { } cash)
        {
            output.WriteLine($"  free cash when planned: {cash.Value} (execution spends no more, with what the sales raise)");
        }

        if (plan.Risk is { } risk)
        {
            output.WriteLine(string.IsNullOrEmpty(risk.UnavailableReason)
                ? string.Create(CultureInfo.InvariantCulture, $"  risk: volatility {risk.VolatilityBefore:P2} → {risk.VolatilityAfter:P2}, 1-day 99 % historical VaR {risk.Var99Before:N0} → {risk.Var99After:N0} EUR")
                : $"  risk: unavailable ({risk.UnavailableReason})");
        }
    }
}
