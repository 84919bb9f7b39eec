using Grpc.Core;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Planning;

/// <summary>Batches: many portfolios' plans at once, on one market snapshot (see <see cref="BatchPlanner"/>).</summary>
public sealed partial class PlanningGrpcService
{
    public override async Task<PreviewBatchRebalanceResponse> PreviewBatchRebalance(PreviewBatchRebalanceRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        switch (request.SelectionCase)
        {
            case PreviewBatchRebalanceRequest.SelectionOneofCase.ModelId:
                check.RequireIdentifier(request.ModelId, "model_id");
                break;
            case PreviewBatchRebalanceRequest.SelectionOneofCase.Portfolios:
                var ids = request.Portfolios.PortfolioIds;
                check.Require(ids.Count > 0, "portfolios.portfolio_ids", "must name at least one portfolio");
                check.RequireCount(ids.Count, BatchPlanner.MaxPortfolios, "portfolios.portfolio_ids");
                for (var i = 0; i < ids.Count && i < BatchPlanner.MaxPortfolios; i++)
                {
                    check.RequireIdentifier(ids[i], $"portfolios.portfolio_ids[{i}]");
                }

                check.Require(ids.Distinct(StringComparer.Ordinal).Count() == ids.Count, "portfolios.portfolio_ids", "must not repeat a portfolio");
                break;
            default:
                check.Require(false, "selection", "set model_id or portfolios");
                break;
        }

        check.Require(System.Enum.IsDefined(request.Filter), "filter", "is not a known filter");
        var concurrency = request.Concurrency == 0 ? 16 : request.Concurrency;
        check.Require(concurrency is >= 1 and <= 64, "concurrency", "must be between 1 and 64");
        check.ThrowIfInvalid();

        IReadOnlyList<string> selected;
        if (request.SelectionCase == PreviewBatchRebalanceRequest.SelectionOneofCase.ModelId)
        {
            _ = await modelStore.GetAsync(request.ModelId) ?? throw DomainException.NotFound($"Model '{request.ModelId}'");
            selected = [.. (await modelStore.LinkedAsync(request.ModelId)).Order(StringComparer.Ordinal)];
            if (selected.Count > BatchPlanner.MaxPortfolios)
            {
                throw new DomainException(DomainErrorKind.ResourceExhausted, $"Model '{request.ModelId}' has {selected.Count:N0} linked portfolios; a batch holds at most {BatchPlanner.MaxPortfolios:N0} (preview a list).");
            }
        }
        else
        {
            selected = request.Portfolios.PortfolioIds;
        }

        var filter = request.Filter == BatchFilter.Unspecified ? BatchFilter.OutOfTolerance : request.Filter;
        var report = await batches.PreviewAsync(selected, filter, concurrency, context.CancellationToken);
        logger.LogInformation("Batch preview of {Selected} portfolios: {Planned} planned, {NoAction} without action, {Failed} failed",
            report.Selected, report.Planned, report.NoAction, report.Failed);
        return report;
    }
}
