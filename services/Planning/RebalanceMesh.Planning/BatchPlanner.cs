using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>
/// Previews or submits the plans of many portfolios at once: every instrument they need valued once (one market
/// snapshot for the whole batch), covariance estimated once per universe (a model's portfolios share it), the plans
/// built a few at a time through the same pipeline as a single preview (and stored as a single submission stores
/// them), and a report per account and per instrument. An account that cannot be planned carries the status its own
/// call would have had; the others are planned.
/// </summary>
public sealed class BatchPlanner(PlanningStore store, PlanPipeline pipeline, PlanSubmitter submitter, TimeProvider time)
{
    /// <summary>Portfolios one batch holds at most.</summary>
    public const int MaxPortfolios = 10_000;

    /// <summary>
    /// Plans a batch builds at once at most: a plan waits mostly on Redis, pricing and risk, so concurrency, not the CPU,
    /// bounds a batch up to well past the cores (risk calls of concurrent plans are batched together).
    /// </summary>
    public const int MaxConcurrency = 256;

    /// <summary>Accounts a report carries full plans for at most (beyond, the caller sets omit_plans).</summary>
    public const int MaxPlansInReport = 1_000;

    /// <summary>Each account's preview, on one snapshot.</summary>
    public async Task<PreviewBatchRebalanceResponse> PreviewAsync(IReadOnlyList<string> portfolioIds, BatchFilter filter, int concurrency, bool omitPlans, CancellationToken cancellationToken)
    {
        var report = await RunAsync("batch preview", portfolioIds, filter, concurrency, submits: false, (id, market, token) => pipeline.BuildAsync(id, force: filter != BatchFilter.OutOfTolerance, market, token), cancellationToken);
        if (omitPlans)
        {
            OmitPlans(report.Accounts);
        }

        return report;
    }

    /// <summary>Takes the full plans out of a report's accounts (their ids and figures stay).</summary>
    private static void OmitPlans(IEnumerable<BatchAccount> accounts)
    {
        foreach (var account in accounts)
        {
            account.Plan = null;
        }
    }

    /// <summary>
    /// Each account's plan submitted under "batch:" + <paramref name="batchKey"/>, on one snapshot; the batch's plans
    /// are recorded under its key (for WatchBatch).
    /// </summary>
    public async Task<SubmitBatchRebalanceResponse> SubmitAsync(IReadOnlyList<string> portfolioIds, BatchFilter filter, int concurrency, string batchKey, string caller, bool omitPlans, CancellationToken cancellationToken)
    {
        var report = await RunAsync("batch submit", portfolioIds, filter, concurrency, submits: true,
            (id, market, token) => submitter.SubmitAsync(id, force: filter != BatchFilter.OutOfTolerance, "batch:" + batchKey, token, market), cancellationToken);
        var response = new SubmitBatchRebalanceResponse
        {
            BatchKey = batchKey,
            Selected = report.Selected,
            Planned = report.Planned,
            NoAction = report.NoAction,
            Failed = report.Failed,
            EstimatedCost = report.EstimatedCost,
        };
        response.Accounts.AddRange(report.Accounts);
        response.Instruments.AddRange(report.Instruments);
        var record = new BatchRecord { BatchKey = batchKey, SubmittedAt = time.GetUtcNow().ToTimestamp(), SubmittedBy = caller };
        record.Plans.AddRange(report.Accounts.Where(a => a.Plan is { PlanId.Length: > 0 } && a.Status != PlanStatus.NoAction)
            .Select(a => new BatchPlanState { PortfolioId = a.PortfolioId, PlanId = a.Plan.PlanId, Status = a.Plan.Status, StatusMessage = a.Plan.StatusMessage }));
        await store.SetBatchAsync(record);
        if (omitPlans)
        {
            OmitPlans(response.Accounts);
        }

        return response;
    }

    private async Task<PreviewBatchRebalanceResponse> RunAsync(
        string name, IReadOnlyList<string> portfolioIds, BatchFilter filter, int concurrency, bool submits, Func<string, BatchMarket, CancellationToken, Task<Plan>> build, CancellationToken cancellationToken)
    {
        using var activity = PlanPipeline.ActivitySource.StartActivity(name);
        activity?.SetTag("planning.batch.portfolios", portfolioIds.Count);
        activity?.SetTag("planning.batch.filter", filter.ToString());

        // One snapshot over everything the selected portfolios hold or target (read in one round trip).
        var entries = await store.GetBookEntriesAsync(portfolioIds);
        var instruments = new HashSet<string>(StringComparer.Ordinal);
        var policies = new Policy?[portfolioIds.Count];
        for (var i = 0; i < portfolioIds.Count; i++)
        {
            if (entries[i].Portfolio.IsNull)
            {
                continue;
            }

            var portfolio = Portfolio.Parser.ParseFrom((byte[])entries[i].Portfolio!).ToDomain();
            policies[i] = entries[i].Policy.IsNull ? null : Policy.Parser.ParseFrom((byte[])entries[i].Policy!);
            instruments.UnionWith(PlanPipeline.InstrumentsOf(portfolio, policies[i]?.ToDomain()));
        }

        var snapshot = await pipeline.GetMarketSnapshotAsync(instruments, cancellationToken);
        var market = new BatchMarket(snapshot, new SharedMarketData(pipeline.MarketData()));
        var accounts = new BatchAccount[portfolioIds.Count];
        await Parallel.ForEachAsync(
            Enumerable.Range(0, portfolioIds.Count),
            new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellationToken },
            async (i, token) => accounts[i] = filter == BatchFilter.NewCash
                ? await NewCashAccountAsync(portfolioIds[i], policies[i], market, submits ? build : null, token)
                : await AccountAsync(portfolioIds[i], market, build, token));

        var response = Report(accounts);
        activity?.SetTag("planning.batch.planned", response.Planned);
        activity?.SetTag("planning.batch.failed", response.Failed);
        activity?.SetTag("planning.covariance_fetches", market.Market.Fetches);
        return response;
    }

    /// <summary>
    /// The new-cash filter: the account's forced preview on the batch's snapshot says its cash and net value; an account
    /// with new cash (<see cref="BatchSelection.NewCashShortfall"/>) is submitted with <paramref name="submit"/> — or, in a
    /// preview (null), that forced preview is its plan — the others are left out as NO_ACTION, saying why.
    /// </summary>
    private async Task<BatchAccount> NewCashAccountAsync(string portfolioId, Policy? policy, BatchMarket market, Func<string, BatchMarket, CancellationToken, Task<Plan>>? submit, CancellationToken cancellationToken)
    {
        var preview = await AccountAsync(portfolioId, market, (id, m, token) => pipeline.BuildAsync(id, force: true, m, token), cancellationToken);
        if (preview.Error is not null)
        {
            return preview;
        }

        var invested = policy?.Targets.Sum(t => t.Weight) ?? 0;
        if (BatchSelection.NewCashShortfall(preview.CashBefore.ToDecimal(), preview.NetValue.ToDecimal(), invested, policy?.AbsoluteBand ?? 0) is { } reason)
        {
            return new BatchAccount
            {
                PortfolioId = portfolioId,
                Status = PlanStatus.NoAction,
                TotalDrift = preview.TotalDrift,
                EstimatedCost = 0m,
                CashBefore = preview.CashBefore,
                CashAfter = preview.CashBefore,
                NetValue = preview.NetValue,
                FilteredOut = reason,
            };
        }

        return submit is null ? preview : await AccountAsync(portfolioId, market, submit, cancellationToken);
    }

    private static async Task<BatchAccount> AccountAsync(string portfolioId, BatchMarket market, Func<string, BatchMarket, CancellationToken, Task<Plan>> build, CancellationToken cancellationToken)
    {
        try
        {
            var plan = await build(portfolioId, market, cancellationToken);
            return new BatchAccount
            {
                PortfolioId = portfolioId,
                Status = plan.Status,
                TotalDrift = plan.TotalDrift,
                Trades = plan.Legs.Count,
                EstimatedCost = plan.EstimatedCost,
                CashBefore = plan.CashBefore,
                CashAfter = CashAfter(plan),
                NetValue = plan.NetValue,
                Plan = plan,
                PlanId = plan.PlanId,
            };
        }
        catch (Exception ex) when (ErrorStatusInterceptor.ItemStatus(ex, cancellationToken) is { } status)
        {
            return new BatchAccount { PortfolioId = portfolioId, Error = new AccountError { Code = status.Code, Message = status.Message } };
        }
    }

    /// <summary>
    /// Base-currency cash once every leg has traded at its reference price: trades pay or receive their notional (a
    /// margined contract's notional moves no cash) and their estimated cost; loan and collateral legs move what they say.
    /// </summary>
    public static decimal CashAfter(Plan plan)
    {
        var cash = plan.CashBefore.ToDecimal();
        foreach (var leg in plan.Legs)
        {
            if (leg.Kind.IsTrade())
            {
                if (!leg.IsMargined())
                {
                    var notional = leg.EstimatedNotional.ToDecimal();
                    cash += leg.Side == Side.Sell ? notional : -notional;
                }

                cash -= leg.EstimatedCost?.ToDecimal() ?? 0m;
            }
            else
            {
                cash += leg.CashChange?.ToDecimal() ?? 0m;
            }
        }

        return cash;
    }

    /// <summary>The report: accounts by portfolio id, instruments by id with what every account's legs trade in them.</summary>
    public static PreviewBatchRebalanceResponse Report(IReadOnlyList<BatchAccount> accounts)
    {
        var response = new PreviewBatchRebalanceResponse { Selected = accounts.Count };
        response.Accounts.AddRange(accounts.OrderBy(a => a.PortfolioId, StringComparer.Ordinal));
        response.Planned = accounts.Count(a => a.Error is null && a.Status != PlanStatus.NoAction);
        response.NoAction = accounts.Count(a => a.Error is null && a.Status == PlanStatus.NoAction);
        response.Failed = accounts.Count(a => a.Error is not null);
        response.EstimatedCost = accounts.Where(a => a.Error is null).Sum(a => a.EstimatedCost.ToDecimal());
        var trades = accounts.Where(a => a.Plan is not null)
            .SelectMany(a => a.Plan.Legs.Where(l => l.Kind.IsTrade()).Select(l => (Account: a.PortfolioId, Leg: l)));
        foreach (var instrument in trades.GroupBy(t => t.Leg.InstrumentId, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var bought = instrument.Where(t => t.Leg.Side == Side.Buy).Sum(t => t.Leg.Quantity.ToDecimal());
            var sold = instrument.Where(t => t.Leg.Side == Side.Sell).Sum(t => t.Leg.Quantity.ToDecimal());
            response.Instruments.Add(new BatchInstrument
            {
                InstrumentId = instrument.Key,
                Bought = bought,
                Sold = sold,
                Net = bought - sold,
                GrossNotional = instrument.Sum(t => Math.Abs(t.Leg.EstimatedNotional.ToDecimal())),
                EstimatedCost = instrument.Sum(t => t.Leg.EstimatedCost?.ToDecimal() ?? 0m),
                Accounts = instrument.Select(t => t.Account).Distinct(StringComparer.Ordinal).Count(),
            });
        }

        return response;
    }
}
