using Grpc.Core;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>Batches: many portfolios' plans at once, on one market snapshot (see <see cref="BatchPlanner"/>).</summary>
public sealed partial class PlanningGrpcService
{
    public override async Task<PreviewBatchRebalanceResponse> PreviewBatchRebalance(PreviewBatchRebalanceRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        var modelId = request.SelectionCase == PreviewBatchRebalanceRequest.SelectionOneofCase.ModelId ? request.ModelId : null;
        var (filter, concurrency) = ValidateBatch(check, modelId, request.Portfolios, request.Filter, request.Concurrency);
        check.ThrowIfInvalid();
        var selected = await SelectedAsync(modelId, request.Portfolios);
        RequireOmittedPlans(selected, request.OmitPlans);
        var report = await batches.PreviewAsync(selected, filter, concurrency, request.OmitPlans, context.CancellationToken);
        logger.LogInformation("Batch preview of {Selected} portfolios: {Planned} planned, {NoAction} without action, {Failed} failed",
            report.Selected, report.Planned, report.NoAction, report.Failed);
        return report;
    }

    public override async Task<SubmitBatchRebalanceResponse> SubmitBatchRebalance(SubmitBatchRebalanceRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        var modelId = request.SelectionCase == SubmitBatchRebalanceRequest.SelectionOneofCase.ModelId ? request.ModelId : null;
        var (filter, concurrency) = ValidateBatch(check, modelId, request.Portfolios, request.Filter, request.Concurrency);
        check.RequireNotEmpty(request.BatchKey, "batch_key", 100);
        check.ThrowIfInvalid();
        var selected = await SelectedAsync(modelId, request.Portfolios);
        RequireOmittedPlans(selected, request.OmitPlans);
        var report = await batches.SubmitAsync(selected, filter, concurrency, request.BatchKey, MeshAuth.CallerOf(context.GetHttpContext().User), request.OmitPlans, context.CancellationToken);
        logger.LogInformation("Batch {BatchKey} of {Selected} portfolios submitted: {Planned} plans, {NoAction} without action, {Failed} failed",
            request.BatchKey, report.Selected, report.Planned, report.NoAction, report.Failed);
        return report;
    }

    /// <summary>How often WatchBatch writes at most, and re-reads the plans it has not heard of for a while.</summary>
    private static readonly TimeSpan BatchWatchInterval = TimeSpan.FromMilliseconds(200);

    private static readonly TimeSpan BatchWatchReread = TimeSpan.FromSeconds(5);

    public override async Task WatchBatch(WatchBatchRequest request, IServerStreamWriter<WatchBatchResponse> responseStream, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireNotEmpty(request.BatchKey, "batch_key", 100);
        check.ThrowIfInvalid();

        // Subscribe before reading the plans so no change in between is missed; a change missed anyway (a replica's
        // broadcast lost) is caught by re-reading the open plans now and then.
        using var subscription = planUpdates.Subscribe();
        var record = await store.GetBatchAsync(request.BatchKey) ?? throw DomainException.NotFound($"Batch '{request.BatchKey}'");
        var progress = new BatchWatch(record);
        progress.Apply(await store.GetPlansAsync(record.Plans.Select(p => p.PlanId).ToArray()));
        try
        {
            while (true)
            {
                if (progress.Next(time.GetUtcNow()) is { } message)
                {
                    await responseStream.WriteAsync(new WatchBatchResponse { Progress = message }, context.CancellationToken);
                    if (message.Done)
                    {
                        return;
                    }

                    await Task.Delay(BatchWatchInterval, time, context.CancellationToken);
                }

                using var wait = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
                wait.CancelAfter(BatchWatchReread);
                try
                {
                    await subscription.Reader.WaitToReadAsync(wait.Token);
                    while (subscription.Reader.TryRead(out var plan))
                    {
                        progress.Apply([plan]);
                    }
                }
                catch (OperationCanceledException) when (!context.CancellationToken.IsCancellationRequested)
                {
                    progress.Apply(await store.GetPlansAsync(progress.OpenPlanIds));
                }
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The watcher went away.
        }
    }

    /// <summary>The selection (a model, or a list: exactly one), the filter and the concurrency of a batch request.</summary>
    private static (BatchFilter Filter, int Concurrency) ValidateBatch(RequestValidator check, string? modelId, PortfolioList? portfolios, BatchFilter filter, int concurrency)
    {
        if (modelId is not null)
        {
            check.RequireIdentifier(modelId, "model_id");
        }
        else if (portfolios is not null)
        {
            var ids = portfolios.PortfolioIds;
            check.Require(ids.Count > 0, "portfolios.portfolio_ids", "must name at least one portfolio");
            check.RequireCount(ids.Count, BatchPlanner.MaxPortfolios, "portfolios.portfolio_ids");
            for (var i = 0; i < ids.Count && i < BatchPlanner.MaxPortfolios; i++)
            {
                check.RequireIdentifier(ids[i], $"portfolios.portfolio_ids[{i}]");
            }

            check.Require(ids.Distinct(StringComparer.Ordinal).Count() == ids.Count, "portfolios.portfolio_ids", "must not repeat a portfolio");
        }
        else
        {
            check.Require(false, "selection", "set model_id or portfolios");
        }

        check.Require(System.Enum.IsDefined(filter), "filter", "is not a known filter");
        var workers = concurrency == 0 ? 16 : concurrency;
        check.Require(workers is >= 1 and <= BatchPlanner.MaxConcurrency, "concurrency", $"must be between 1 and {BatchPlanner.MaxConcurrency}");
        return (filter == BatchFilter.Unspecified ? BatchFilter.OutOfTolerance : filter, workers);
    }

    /// <summary>A batch of more than <see cref="BatchPlanner.MaxPlansInReport"/> accounts leaves its plans out of the report (checked before anything is built).</summary>
    private static void RequireOmittedPlans(IReadOnlyList<string> selected, bool omitPlans)
    {
        var check = new RequestValidator();
        check.Require(omitPlans || selected.Count <= BatchPlanner.MaxPlansInReport, "omit_plans",
            $"must be set for a batch of more than {BatchPlanner.MaxPlansInReport:N0} accounts ({selected.Count:N0} selected): their plans do not fit one response");
        check.ThrowIfInvalid();
    }

    /// <summary>The portfolios a validated selection names: the model's linked ones (by id), or the list.</summary>
    private async Task<IReadOnlyList<string>> SelectedAsync(string? modelId, PortfolioList? portfolios)
    {
        if (modelId is null)
        {
            return portfolios!.PortfolioIds;
        }

        _ = await modelStore.GetAsync(modelId) ?? throw DomainException.NotFound($"Model '{modelId}'");
        var linked = (await modelStore.LinkedAsync(modelId)).Order(StringComparer.Ordinal).ToArray();
        return linked.Length <= BatchPlanner.MaxPortfolios
            ? linked
            : throw new DomainException(DomainErrorKind.ResourceExhausted, $"Model '{modelId}' has {linked.Length:N0} linked portfolios; a batch holds at most {BatchPlanner.MaxPortfolios:N0} (select a list).");
    }
}
