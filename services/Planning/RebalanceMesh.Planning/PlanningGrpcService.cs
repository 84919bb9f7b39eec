using Google.Protobuf.WellKnownTypes;
using System.Globalization;
using Grpc.Core;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.EventBus;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>The public gRPC API of planning (models and links: PlanningGrpcService.Models.cs).</summary>
public sealed partial class PlanningGrpcService(
    PlanningStore store,
    PlanPipeline pipeline,
    PlanSubmitter submitter,
    ModelWeightCache models,
    ModelStore modelStore,
    ModelRollout rollout,
    BatchPlanner batches,
    RedisBroadcast<Plan> planUpdates,
    RedisBroadcast<PolicyAlert> alerts,
    IEventBus bus,
    TimeProvider time,
    ILogger<PlanningGrpcService> logger) : PlanningService.PlanningServiceBase
{
    public override async Task<UpsertPortfolioResponse> UpsertPortfolio(UpsertPortfolioRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        PlanningMapping.ValidatePortfolio(check, request.Portfolio, "portfolio");
        check.Require(request.ExpectedVersion >= -1, "expected_version", "must be -1, 0 or a stored version");
        check.ThrowIfInvalid();
        var stored = await store.UpsertPortfolioAsync(request.Portfolio, request.ExpectedVersion);
        logger.LogInformation("Portfolio {PortfolioId} stored at version {Version}", stored.PortfolioId, stored.Version);
        return new UpsertPortfolioResponse { Portfolio = stored };
    }

    public override async Task<GetPortfolioResponse> GetPortfolio(GetPortfolioRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        check.ThrowIfInvalid();
        var (portfolio, policy) = await pipeline.LoadAsync(request.PortfolioId);
        var response = new GetPortfolioResponse { Portfolio = portfolio, Policy = policy };
        if (request.SkipValuation)
        {
            return response;
        }

        // The stored policy never breaks this read: a model that cannot size its universe now is reported, and the
        // portfolio is valued without drift against targets nobody can compute.
        var snapshot = portfolio.ToDomain();
        TargetPolicy? targetPolicy = null;
        if (policy is not null)
        {
            (targetPolicy, response.ComputedTargets) = await ResolveForReadAsync(request.PortfolioId, policy, context.CancellationToken);
        }

        try
        {
            var (marked, marks) = await pipeline.MarkAsync(snapshot, targetPolicy ?? policy?.ToDomain(), context.CancellationToken);
            response.Valuation = marked.ToWire(targetPolicy, time.GetUtcNow(), marks.Kinds);
            response.Valuation.Loans.AddRange(snapshot.LoanList.Select(loan =>
                MarkedLoan.Mark(loan, asset => asset == portfolio.BaseCurrency ? 1m : marks.Marks[asset].UnitPrice).ToWire()));
        }
        catch (DomainException ex) when (ex.Kind == DomainErrorKind.FailedPrecondition)
        {
            // The portfolio is still returned; the valuation is left empty, with why (missing, stale or crossed prices).
            response.ValuationUnavailableReason = ex.Message;
            logger.LogInformation("Portfolio {PortfolioId} returned without valuation: {Reason}", request.PortfolioId, ex.Message);
        }
        catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            // Pricing is down: the stored portfolio is still the truth; only its valuation is missing.
            response.ValuationUnavailableReason = "pricing is unavailable: " + ex.Status.Detail;
            logger.LogWarning("Portfolio {PortfolioId} returned without valuation: pricing unavailable ({Detail})", request.PortfolioId, ex.Status.Detail);
        }

        return response;
    }

    /// <summary>
    /// The policy resolved by its model (cached per version and day, shared with the monitor) and what the model
    /// computed; when it cannot be resolved now, no targets and the reason why.
    /// </summary>
    private async Task<(TargetPolicy? Policy, ComputedTargets? Computed)> ResolveForReadAsync(string portfolioId, Policy policy, CancellationToken cancellationToken)
    {
        try
        {
            var resolved = await models.GetResolvedAsync(portfolioId, policy, () => pipeline.ResolvePolicyAsync(policy, null, cancellationToken));
            return (resolved.Policy, resolved.ToComputedTargets());
        }
        catch (DomainException ex) when (ex.Kind == DomainErrorKind.FailedPrecondition)
        {
            return (null, PlanningMapping.UnavailableTargets(policy, ex.Message));
        }
        catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            return (null, PlanningMapping.UnavailableTargets(policy, "risk is unavailable: " + ex.Status.Detail));
        }
    }

    public override async Task<SetPolicyResponse> SetPolicy(SetPolicyRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        PlanningMapping.ValidatePolicy(check, request.Policy, "policy");
        check.ThrowIfInvalid();
        _ = await store.GetPortfolioAsync(request.Policy.PortfolioId) ?? throw DomainException.NotFound($"Portfolio '{request.Policy.PortfolioId}'");

        // A computed model is sized now: parameters no long-only portfolio can reach are refused as the fields they are.
        // Whatever the market cannot tell yet (no history, risk unreachable) is stored and reported, not refused.
        (TargetPolicy Policy, IReadOnlyList<Contracts.Planning.V1.DriftReason> Reasons)? resolved = null;
        string? unavailable = null;
        if (PlanningMapping.HasComputedModel(request.Policy))
        {
            try
            {
                resolved = await pipeline.ResolvePolicyAsync(request.Policy, null, context.CancellationToken);
            }
            catch (DomainException ex) when (ex.InnerException is InfeasibleModelException infeasible)
            {
                throw DomainException.Invalid("policy." + PlanningMapping.FieldOf(infeasible.Parameter), infeasible.Message);
            }
            catch (DomainException ex) when (ex.Kind == DomainErrorKind.FailedPrecondition)
            {
                unavailable = ex.Message;
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
            {
                unavailable = "risk is unavailable: " + ex.Status.Detail;
            }
        }

        // A portfolio that follows a model takes its policy from the model (LinkPortfolio with no model to stop).
        var policy = request.Policy.Clone();
        policy.ModelLink = null;
        var stored = await store.ChangePolicyAsync(policy.PortfolioId, current => current?.ModelLink is not { ModelId.Length: > 0 } ? policy : null)
            ?? throw new DomainException(DomainErrorKind.FailedPrecondition,
                $"Portfolio '{policy.PortfolioId}' follows a model; change the model (UpdateModel), or unlink it first (LinkPortfolio without a model).");
        var response = new SetPolicyResponse { Policy = stored };
        if (resolved is { } done)
        {
            response.ComputedTargets = models.Put(stored.PortfolioId, stored.Version, done.Policy, done.Reasons).ToComputedTargets();
        }
        else if (unavailable is not null)
        {
            response.ComputedTargets = PlanningMapping.UnavailableTargets(stored, unavailable);
        }

        return response;
    }

    public override async Task<PreviewRebalanceResponse> PreviewRebalance(PreviewRebalanceRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        check.ThrowIfInvalid();
        return new PreviewRebalanceResponse { Plan = await pipeline.BuildAsync(request.PortfolioId, request.Force, context.CancellationToken) };
    }

    public override async Task<SubmitRebalanceResponse> SubmitRebalance(SubmitRebalanceRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        check.RequireNotEmpty(request.IdempotencyKey, "idempotency_key", 128);
        check.ThrowIfInvalid();

        return new SubmitRebalanceResponse { Plan = await submitter.SubmitAsync(request.PortfolioId, request.Force, request.IdempotencyKey, context.CancellationToken) };
    }

    public override async Task<CancelPlanResponse> CancelPlan(CancelPlanRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PlanId, "plan_id");
        check.RequireReason(request.Reason);
        check.ThrowIfInvalid();
        var plan = await store.GetPlanAsync(request.PlanId) ?? throw DomainException.NotFound($"Plan '{request.PlanId}'");
        if (plan.Status.IsFinal() || plan.Status == PlanStatus.Preview)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Plan '{plan.PlanId}' has ended ({plan.Status}); there is nothing to cancel.");
        }

        var caller = MeshAuth.CallerOf(context.GetHttpContext().User);
        var updated = await submitter.CancelAsync(plan, caller, request.Reason.Length > 0 ? request.Reason : "cancelled by " + caller, context.CancellationToken);
        return new CancelPlanResponse { Plan = updated };
    }

    public override async Task<GetPlanResponse> GetPlan(GetPlanRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PlanId, "plan_id");
        check.ThrowIfInvalid();
        var plan = await store.GetPlanAsync(request.PlanId) ?? throw DomainException.NotFound($"Plan '{request.PlanId}'");
        return new GetPlanResponse { Plan = plan };
    }

    public override async Task<ListPlansResponse> ListPlans(ListPlansRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        var pageSize = request.PageSize == 0 ? 20 : request.PageSize;
        check.Require(pageSize is >= 1 and <= 100, "page_size", "must be between 1 and 100");
        var offset = 0;
        check.Require(
            request.PageToken.Length == 0 || (int.TryParse(request.PageToken, NumberStyles.None, CultureInfo.InvariantCulture, out offset) && offset >= 0),
            "page_token",
            "is not a token this service issued");
        check.ThrowIfInvalid();
        var (plans, next) = await store.ListPlansAsync(request.PortfolioId, offset, pageSize);
        var response = new ListPlansResponse { NextPageToken = next?.ToString(CultureInfo.InvariantCulture) ?? string.Empty };
        response.Plans.AddRange(plans);
        return response;
    }

    public override async Task WatchPlans(WatchPlansRequest request, IServerStreamWriter<WatchPlansResponse> responseStream, ServerCallContext context)
    {
        var check = new RequestValidator();
        if (request.PlanId.Length > 0)
        {
            check.RequireIdentifier(request.PlanId, "plan_id");
        }
        else
        {
            check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        }

        check.ThrowIfInvalid();

        // Subscribe before reading the current state so no change in between is missed.
        using var subscription = planUpdates.Subscribe();
        try
        {
            if (request.PlanId.Length > 0)
            {
                var plan = await store.GetPlanAsync(request.PlanId) ?? throw DomainException.NotFound($"Plan '{request.PlanId}'");
                await responseStream.WriteAsync(new WatchPlansResponse { Plan = plan }, context.CancellationToken);
                if (plan.Status.IsFinal())
                {
                    return;
                }
            }
            else
            {
                var (plans, _) = await store.ListPlansAsync(request.PortfolioId, 0, 20);
                foreach (var plan in plans.Reverse())
                {
                    await responseStream.WriteAsync(new WatchPlansResponse { Plan = plan }, context.CancellationToken);
                }
            }

            await subscription.Reader.RelayAsync(responseStream,
                plan => (request.PlanId.Length > 0 ? plan.PlanId == request.PlanId : plan.PortfolioId == request.PortfolioId) ? new WatchPlansResponse { Plan = plan } : null,
                context.CancellationToken,
                last: plan => request.PlanId.Length > 0 && plan.PlanId == request.PlanId && plan.Status.IsFinal());
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The watcher went away.
        }
    }

    public override async Task WatchAlerts(WatchAlertsRequest request, IServerStreamWriter<WatchAlertsResponse> responseStream, ServerCallContext context)
    {
        var check = new RequestValidator();
        if (request.PortfolioId.Length > 0)
        {
            check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        }

        check.ThrowIfInvalid();
        using var subscription = alerts.Subscribe();
        try
        {
            await subscription.Reader.RelayAsync(responseStream,
                alert => request.PortfolioId.Length == 0 || alert.PortfolioId == request.PortfolioId ? new WatchAlertsResponse { Alert = alert } : null,
                context.CancellationToken);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The watcher went away.
        }
    }

    public override async Task<SetTradingHaltResponse> SetTradingHalt(SetTradingHaltRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        if (request.Halted)
        {
            check.RequireNotEmpty(request.Reason, "reason", RequestValidator.MaxReasonLength);
        }
        else
        {
            check.RequireReason(request.Reason);
        }

        check.ThrowIfInvalid();
        var changedAt = await store.SetHaltAsync(request.Halted, request.Reason);
        await bus.PublishAsync(Topics.PlansHalted, new TradingHaltChanged { Halted = request.Halted, Reason = request.Reason, ChangedAt = changedAt.ToTimestamp() }, context.CancellationToken);
        logger.LogWarning("Trading halt set to {Halted}: {Reason}", request.Halted, request.Reason);
        return new SetTradingHaltResponse { Halted = request.Halted, Reason = request.Reason, ChangedAt = changedAt.ToTimestamp() };
    }
}
