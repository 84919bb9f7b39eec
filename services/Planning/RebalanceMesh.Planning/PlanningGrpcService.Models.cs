using Grpc.Core;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>Models: a policy many portfolios follow, each with overrides of its own (see <see cref="ModelPolicies"/>).</summary>
public sealed partial class PlanningGrpcService
{
    /// <summary>How long UpdateModel rewrites linked portfolios itself before leaving the rest to the background rounds.</summary>
    private static readonly TimeSpan RolloutBudget = TimeSpan.FromSeconds(5);

    public override async Task<CreateModelResponse> CreateModel(CreateModelRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        ModelPolicies.ValidateModel(check, request.Model, "model");
        check.ThrowIfInvalid();
        var stored = await modelStore.CreateAsync(request.Model, MeshAuth.CallerOf(context.GetHttpContext().User));
        logger.LogInformation("Model {ModelId} created by {Caller}", stored.ModelId, stored.UpdatedBy);
        return new CreateModelResponse { Model = stored };
    }

    public override async Task<UpdateModelResponse> UpdateModel(UpdateModelRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        ModelPolicies.ValidateModel(check, request.Model, "model");
        check.Require(request.ExpectedVersion >= 1, "expected_version", "must be the version the change was made from (1 or more)");
        check.ThrowIfInvalid();
        var stored = await modelStore.UpdateAsync(request.Model, request.ExpectedVersion, MeshAuth.CallerOf(context.GetHttpContext().User));
        var remaining = context.Deadline == DateTime.MaxValue ? RolloutBudget : context.Deadline - DateTime.UtcNow - TimeSpan.FromSeconds(1);
        var budget = remaining < RolloutBudget ? remaining : RolloutBudget;
        var (updated, pending) = budget > TimeSpan.Zero
            ? await rollout.RollOutAsync(stored, budget, context.CancellationToken)
            : (0, await modelStore.LinkedCountAsync(stored.ModelId));
        logger.LogInformation("Model {ModelId} version {Version} stored by {Caller}: {Updated} linked portfolios rewritten, {Pending} left to the background",
            stored.ModelId, stored.Version, stored.UpdatedBy, updated, pending);
        return new UpdateModelResponse { Model = stored, PortfoliosUpdated = updated, PortfoliosPending = pending };
    }

    public override async Task<GetModelResponse> GetModel(GetModelRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.ModelId, "model_id");
        check.ThrowIfInvalid();
        var model = await modelStore.GetAsync(request.ModelId) ?? throw DomainException.NotFound($"Model '{request.ModelId}'");
        return new GetModelResponse
        {
            Model = model,
            LinkedPortfolios = await modelStore.LinkedCountAsync(model.ModelId),
            RolloutPending = await modelStore.RolloutPendingAsync(model.ModelId),
        };
    }

    public override async Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        var pageSize = request.PageSize == 0 ? 20 : request.PageSize;
        check.Require(pageSize is >= 1 and <= 100, "page_size", "must be between 1 and 100");
        if (request.PageToken.Length > 0)
        {
            check.RequireIdentifier(request.PageToken, "page_token");
        }

        check.ThrowIfInvalid();
        var (page, next) = await modelStore.ListAsync(request.PageToken, pageSize);
        var response = new ListModelsResponse { NextPageToken = next ?? string.Empty };
        response.Models.AddRange(page);
        return response;
    }

    public override async Task<LinkPortfolioResponse> LinkPortfolio(LinkPortfolioRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        if (request.ModelId.Length > 0)
        {
            check.RequireIdentifier(request.ModelId, "model_id");
        }
        else
        {
            check.Require(request.Overrides is null, "overrides", "must be empty when unlinking (no model_id)");
        }

        ModelPolicies.ValidateOverrides(check, request.Overrides, "overrides");
        check.ThrowIfInvalid();
        _ = await store.GetPortfolioAsync(request.PortfolioId) ?? throw DomainException.NotFound($"Portfolio '{request.PortfolioId}'");
        var current = await store.GetReadablePolicyAsync(request.PortfolioId);
        var following = current?.ModelLink?.ModelId ?? string.Empty;
        Policy next;
        if (request.ModelId.Length > 0)
        {
            var model = await modelStore.GetAsync(request.ModelId) ?? throw DomainException.NotFound($"Model '{request.ModelId}'");
            next = ModelPolicies.For(model, request.PortfolioId, request.Overrides);
        }
        else
        {
            // Unlinked, the portfolio keeps the policy it had, as its own.
            next = current?.Clone() ?? throw new DomainException(DomainErrorKind.FailedPrecondition, $"Portfolio '{request.PortfolioId}' has no policy and follows no model.");
            next.ModelLink = null;
        }

        var stored = await modelStore.ChangeLinkedPolicyAsync(request.PortfolioId, stored => (stored?.ModelLink?.ModelId ?? string.Empty) == following ? next : null)
            ?? throw new DomainException(DomainErrorKind.Conflict, $"Portfolio '{request.PortfolioId}' was linked or unlinked meanwhile; retry.");
        logger.LogInformation("Portfolio {PortfolioId} now follows {Model} (was {Previous})", request.PortfolioId,
            request.ModelId.Length > 0 ? request.ModelId : "its own policy", following.Length > 0 ? following : "its own policy");
        return new LinkPortfolioResponse { Policy = stored };
    }
}
