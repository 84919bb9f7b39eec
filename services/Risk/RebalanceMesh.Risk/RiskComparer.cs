using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts;
using RebalanceMesh.Domain;
using RebalanceMesh.Risk.Core;
using RebalanceMesh.ServiceDefaults;
using Wire = RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Risk;

/// <summary>
/// CompareRisk and CompareRiskBatch: the risk a plan's trades move a book from and to, measured for one plan or for a
/// batch of them (planning's storms and batch rebalances send batches).
/// </summary>
public sealed class RiskComparer(RiskInputs inputs, RiskBookBuilder books)
{
    private static readonly System.Diagnostics.Metrics.Histogram<long> BatchItems = RiskGrpcService.Meter.CreateHistogram<long>(
        "rebalancemesh.risk.compare_batch.items", description: "Comparisons one CompareRiskBatch call measured.");

    /// <summary>Items of one CompareRiskBatch call at most.</summary>
    public const int MaxBatchItems = 256;

    /// <summary>Holdings and trades over all items of one CompareRiskBatch call at most.</summary>
    public const int MaxBatchRows = 20_000;

    /// <summary>
    /// Items of a batch measured at once. Each mostly waits on Redis (closes, covariance inputs), so more than one per
    /// core keeps the CPU busy: with one per core the batch's plans waited on each item's reads in turn.
    /// </summary>
    public const int BatchConcurrency = 16;

    /// <summary>CompareRiskBatch: each item as its own CompareRisk would answer it, <see cref="BatchConcurrency"/> at once.</summary>
    public async Task<Wire.CompareRiskBatchResponse> CompareBatchAsync(Wire.CompareRiskBatchRequest request, CancellationToken cancellationToken)
    {
        var check = new RequestValidator();
        check.Require(request.Items.Count > 0, "items", "must hold at least one comparison");
        check.RequireCount(request.Items.Count, MaxBatchItems, "items");
        var rows = request.Items.Sum(i => (long)i.Holdings.Count + i.Trades.Count);
        check.Require(rows <= MaxBatchRows, "items", $"hold {rows:N0} holdings and trades in all; at most {MaxBatchRows:N0}");
        check.ThrowIfInvalid();

        using var activity = RiskGrpcService.ActivitySource.StartActivity("compare risk batch");
        activity?.SetTag("risk.batch.items", request.Items.Count);
        BatchItems.Record(request.Items.Count);
        var outcomes = new Wire.CompareRiskOutcome[request.Items.Count];
        await Parallel.ForEachAsync(
            Enumerable.Range(0, request.Items.Count),
            new ParallelOptions { MaxDegreeOfParallelism = BatchConcurrency, CancellationToken = cancellationToken },
            async (i, itemCancellation) => outcomes[i] = await OutcomeAsync(request.Items[i], itemCancellation));
        activity?.SetTag("risk.batch.failed", outcomes.Count(o => o.OutcomeCase == Wire.CompareRiskOutcome.OutcomeOneofCase.Error));
        var response = new Wire.CompareRiskBatchResponse();
        response.Outcomes.AddRange(outcomes);
        return response;
    }

    /// <summary>
    /// One item of a batch, answered as its own call would be: refused input and a dependency that cannot serve it
    /// (pricing, for an option's revaluation) are that item's error; a cancelled call or an unreachable Redis fails the
    /// whole batch, as they would every item.
    /// </summary>
    private async Task<Wire.CompareRiskOutcome> OutcomeAsync(Wire.CompareRiskRequest item, CancellationToken cancellationToken)
    {
        try
        {
            return new Wire.CompareRiskOutcome { Comparison = await CompareAsync(item, cancellationToken) };
        }
        catch (Exception ex) when (ErrorStatusInterceptor.ItemStatus(ex, cancellationToken) is { } status)
        {
            var error = new Wire.ItemError { Code = status.Code, Message = status.Message };
            error.FieldViolations.AddRange((ex as DomainException)?.Violations.Select(v => new Wire.FieldViolation { Field = v.Field, Description = v.Description }) ?? []);
            return new Wire.CompareRiskOutcome { Error = error };
        }
    }

    /// <summary>
    /// CompareRisk: the book's risk before and after the trades (the holdings plus every traded position at zero when
    /// not held), with each trade's contribution to the change of variance.
    /// </summary>
    public async Task<Wire.CompareRiskResponse> CompareAsync(Wire.CompareRiskRequest request, CancellationToken cancellationToken)
    {
        var check = new RequestValidator();
        RiskInputs.ValidateHoldings(check, request.Holdings, "holdings", allowEmpty: true);
        check.OptionalDecimal(request.Cash, "cash", ValidationExtensions.DecimalRule.Any, 0m, out _, ValidationExtensions.MaxCashMagnitude);
        check.Require(request.Holdings.Count + request.Trades.Count > 0, "trades", "holdings and trades must not both be empty");
        check.RequireCount(request.Trades.Count, RiskInputs.MaxHoldings, "trades");
        for (var i = 0; i < request.Trades.Count && i < RiskInputs.MaxHoldings; i++)
        {
            check.RequireIdentifier(request.Trades[i].InstrumentId, $"trades[{i}].instrument_id");
            if (request.Trades[i].Venue.Length > 0)
            {
                check.RequireIdentifier(request.Trades[i].Venue, $"trades[{i}].venue");
            }

            check.RequireDecimal(request.Trades[i].QuantityChange, $"trades[{i}].quantity_change", ValidationExtensions.DecimalRule.Any, out _);
        }

        var settings = RiskInputs.ValidateSettings(check, request.Settings, "settings", out var lookback);
        RiskInputs.ValidateLoans(check, request.Loans);
        RiskInputs.ValidateHistory(check, request.History, "history");
        check.ThrowIfInvalid();
        RiskInputs.CheckBudget(settings, request.Holdings.Count + request.Trades.Count);

        // Before: the holdings plus every traded (account, instrument) at zero when not held; after: the same book with
        // the quantities moved by the trades (valuations are per unit, so nothing is fetched twice).
        static (string Venue, string InstrumentId) KeyOf(Wire.TradeDelta trade) => (trade.Venue, trade.InstrumentId);
        var holdings = request.Holdings.ToList();
        var held = holdings.Select(h => (h.Venue, h.InstrumentId)).ToHashSet();
        foreach (var trade in request.Trades)
        {
            if (held.Add(KeyOf(trade)))
            {
                holdings.Add(new Wire.Holding { InstrumentId = trade.InstrumentId, Venue = trade.Venue, Quantity = 0m });
            }
        }

        var delta = request.Trades.GroupBy(KeyOf).ToDictionary(g => g.Key, g => g.Sum(t => t.QuantityChange.ToDecimal()));
        var before = await books.BuildAsync(holdings, request.Cash, cancellationToken);
        var unit = before.Positions.ToDictionary(p => p.Key);
        var cashAfter = (decimal)before.Cash - delta.Sum(d => d.Value * (decimal)unit[d.Key].UnitPrice);
        var after = before.WithQuantities(p => p.Quantity + (double)delta.GetValueOrDefault(p.Key), (double)cashAfter);

        var returns = await inputs.ReturnsAsync(before.Factors, lookback, request.History);
        cancellationToken.ThrowIfCancellationRequested();
        using var activity = RiskGrpcService.ActivitySource.StartActivity("compare risk");
        activity?.SetTag("risk.trades", request.Trades.Count);
        var riskBefore = PortfolioRiskModel.Assess(before.Exposures, before.Cash, returns, settings,
            await books.RevaluationAdjustmentAsync(before, returns, cancellationToken), before.NetValue, cancellationToken);
        var riskAfter = PortfolioRiskModel.Assess(after.Exposures, after.Cash, returns, settings,
            await books.RevaluationAdjustmentAsync(after, returns, cancellationToken), after.NetValue, cancellationToken);
        var traded = delta.Sum(d => Math.Abs((double)d.Value * unit[d.Key].UnitExposure));
        var response = new Wire.CompareRiskResponse
        {
            Before = RiskWire.ToWire(riskBefore, before),
            After = RiskWire.ToWire(riskAfter, after),
            VarianceChange = riskAfter.AnnualVariance - riskBefore.AnnualVariance,
            Turnover = riskBefore.NetValue != 0 ? traded / riskBefore.NetValue : 0,
            LeverageChange = riskAfter.GrossLeverage - riskBefore.GrossLeverage,
        };
        foreach (var loan in request.Loans)
        {
            var health = await inputs.LoanRiskAsync(loan, settings.HorizonDays, lookback, history: request.History);
            response.Before.Loans.Add(health);
            response.After.Loans.Add(health);
        }

        var changes = request.Trades.Select(t => new ValueChange(unit[KeyOf(t)].Factor, (double)t.QuantityChange.ToDecimal() * unit[KeyOf(t)].UnitExposure)).ToArray();
        var contributions = TradeImpact.Contributions(before.Exposures, changes, returns);
        for (var i = 0; i < request.Trades.Count; i++)
        {
            response.Contributions.Add(new Wire.TradeRiskContribution
            {
                InstrumentId = request.Trades[i].InstrumentId,
                Venue = request.Trades[i].Venue,
                VarianceContribution = contributions[i].AnnualVarianceContribution,
            });
        }

        return response;
    }
}
