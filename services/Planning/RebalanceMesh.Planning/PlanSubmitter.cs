using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.EventBus;

namespace RebalanceMesh.Planning;

/// <summary>
/// Submits a rebalance: idempotent by key, refused while trading is halted, built by the plan pipeline, stored, then
/// published on plans.approved. Shared by SubmitRebalance and the monitor's automatic submissions.
/// </summary>
public sealed class PlanSubmitter(PlanningStore store, PlanPipeline pipeline, IEventBus bus, TimeProvider time, ILogger<PlanSubmitter> logger)
{
    private static readonly System.Diagnostics.Metrics.Meter Meter = new("RebalanceMesh.Planning.Plans");
    private static readonly System.Diagnostics.Metrics.Counter<long> Submitted = Meter.CreateCounter<long>(
        "rebalancemesh.planning.plans.submitted", description: "Plans stored by SubmitRebalance and the monitor, by status (approved or no_action) and whether guard legs lead them.");

    private static readonly System.Diagnostics.Metrics.Counter<long> Recovered = Meter.CreateCounter<long>(
        "rebalancemesh.planning.plans.outbox_sent", description: "Approved plans a replica stored but never published, sent to execution from the outbox.");

    /// <param name="batch">In a batch: the batch's market snapshot and shared estimates (<see cref="BatchPlanner"/>).</param>
    public async Task<Plan> SubmitAsync(string portfolioId, bool force, string idempotencyKey, CancellationToken cancellationToken, BatchMarket? batch = null)
    {
        // The three checks read at once: a plan under this key already, a halt, a plan of the portfolio still running.
        var existingTask = store.GetIdempotentPlanIdAsync(portfolioId, idempotencyKey);
        var haltTask = store.GetHaltAsync();
        var newestTask = store.ListPlansAsync(portfolioId, 0, 1);
        if (await existingTask is { } existingId && await store.GetPlanAsync(existingId) is { } existing)
        {
            return existing;
        }

        var halt = await haltTask;
        if (halt.Halted)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Trading is halted: {halt.Reason}");
        }

        // One plan executes at a time per portfolio (checked again, atomically, when the new plan is stored).
        var (newest, _) = await newestTask;
        if (newest is [{ } last] && !last.Status.IsFinal())
        {
            throw StillExecuting(last);
        }

        var plan = await pipeline.BuildAsync(portfolioId, force, batch, cancellationToken);
        if (plan.Status == PlanStatus.Preview)
        {
            plan.Status = PlanStatus.Approved;
        }

        var policyTask = plan.Status == PlanStatus.Approved ? store.GetPolicyAsync(plan.PortfolioId) : Task.FromResult<Policy?>(null); // for execution's settings, read alongside
        var created = await store.CreatePlanAsync(plan, idempotencyKey);
        if (created.Executing is { } executing)
        {
            throw StillExecuting(executing);
        }

        if (created.KeyIsTaken)
        {
            // A concurrent retry with the same key won; return its plan.
            var winner = await store.GetIdempotentPlanIdAsync(portfolioId, idempotencyKey);
            return winner is null ? plan : await store.GetPlanAsync(winner) ?? plan;
        }

        if (plan.Status != PlanStatus.Approved)
        {
            return plan;
        }

        try
        {
            await bus.PublishAsync(Topics.PlansApproved, ToApproved(plan, await policyTask), cancellationToken);
        }
        catch (Exception ex) when (ex is not DomainException)
        {
            // Stored but not published: say so on the plan instead of leaving it approved forever.
            logger.LogError(ex, "Plan {PlanId} could not be published", plan.PlanId);
            await store.UpdatePlanAsync(plan.PlanId, p =>
            {
                p.Status = PlanStatus.Failed;
                p.StatusMessage = "could not be published for execution: " + ex.Message;
            });
            await store.ClearOutboxAsync(plan.PlanId);
            throw new RpcException(new Status(StatusCode.Unavailable, "The plan was stored but could not be sent to execution; it is marked FAILED. Retry with a new idempotency key."));
        }

        await ClearOutboxAsync(plan.PlanId);

        Submitted.Add(1, new KeyValuePair<string, object?>("status", plan.Status == PlanStatus.Approved ? "approved" : "no_action"),
            new KeyValuePair<string, object?>("guard", plan.Legs.Any(l => l.Kind.ToLoanAction() is not null)));
        logger.LogInformation("Plan {PlanId} for {PortfolioId} approved with {Legs} legs", plan.PlanId, plan.PortfolioId, plan.Legs.Count);
        return plan;
    }

    /// <summary>
    /// Publishes the approved plans a replica stored but never published (it stopped between the two): those in the
    /// outbox for longer than <see cref="PlanOutbox.Grace"/>, each claimed first so one replica sends it. A plan that has
    /// moved on (executing, ended, failed) leaves the outbox unsent. Execution ignores a plan it already has, so a
    /// publish that did happen and is sent again changes nothing. Returns the plans sent.
    /// </summary>
    public async Task<int> PublishOutboxAsync(string owner, CancellationToken cancellationToken)
    {
        var sent = 0;
        foreach (var planId in await store.OutboxDueAsync(time.GetUtcNow() - PlanOutbox.Grace, PlanOutbox.BatchSize))
        {
            if (!await store.ClaimOutboxAsync(planId, owner, PlanOutbox.Grace))
            {
                continue; // another replica sends it
            }

            if (await store.GetPlanAsync(planId) is { Status: PlanStatus.Approved } plan)
            {
                var policy = await store.GetPolicyAsync(plan.PortfolioId);
                await bus.PublishAsync(Topics.PlansApproved, ToApproved(plan, policy), cancellationToken);
                logger.LogWarning("Plan {PlanId} of {PortfolioId} was stored but never sent to execution (its replica stopped between the two): sent now", plan.PlanId, plan.PortfolioId);
                Recovered.Add(1);
                sent++;
            }

            await store.ClearOutboxAsync(planId);
        }

        return sent;
    }

    /// <summary>Clears a published plan from the outbox; a failure only means the plan is sent again later (and ignored).</summary>
    private async Task ClearOutboxAsync(string planId)
    {
        try
        {
            await store.ClearOutboxAsync(planId);
        }
        catch (StackExchange.Redis.RedisException ex)
        {
            logger.LogWarning(ex, "Plan {PlanId} published but still in the outbox: it will be sent again, and ignored", planId);
        }
    }

    /// <summary>
    /// Asks execution to stop a plan that has not ended (plans.cancelled) and records the request on the plan. Shared by
    /// CancelPlan and the monitor's pre-emption of a rebalance by an emergency.
    /// </summary>
    public async Task<Plan> CancelAsync(Plan plan, string caller, string reason, CancellationToken cancellationToken)
    {
        await bus.PublishAsync(Topics.PlansCancelled, new PlanCancelRequested
        {
            PlanId = plan.PlanId,
            PortfolioId = plan.PortfolioId,
            Reason = reason,
            RequestedBy = caller,
            RequestedAt = time.GetUtcNow().ToTimestamp(),
        }, cancellationToken);
        var updated = await store.UpdatePlanAsync(plan.PlanId, p =>
        {
            if (!p.Status.IsFinal())
            {
                p.StatusMessage = $"cancel requested by {caller}: {reason}";
                p.CancelRequest = new CancelRequest { RequestedBy = caller, Reason = reason, RequestedAt = time.GetUtcNow().ToTimestamp() };
            }
        });
        logger.LogWarning("Plan {PlanId} of {PortfolioId}: cancel requested by {Caller}: {Reason}", plan.PlanId, plan.PortfolioId, caller, reason);
        return updated;
    }

    private static DomainException StillExecuting(Plan executing) => new(DomainErrorKind.FailedPrecondition,
        $"Plan '{executing.PlanId}' of portfolio '{executing.PortfolioId}' has not ended ({executing.Status}); submit again once it has, or cancel it (CancelPlan).");

    /// <summary>The event execution acts on: legs, and the policy's limit-price protection and execution style.</summary>
    private PlanApproved ToApproved(Plan plan, Policy? policy)
    {
        var approved = new PlanApproved
        {
            PlanId = plan.PlanId,
            PortfolioId = plan.PortfolioId,
            ApprovedAt = time.GetUtcNow().ToTimestamp(),
            MaxSlippageBps = policy?.MaxSlippageBps ?? 0,
            TwapSlices = policy?.ExecutionStyle?.TwapSlices ?? 0,
            TwapDurationSeconds = policy?.ExecutionStyle?.TwapDurationSeconds ?? 0,
            PovRate = policy?.ExecutionStyle?.PovRate ?? 0,
            PovIntervalSeconds = policy?.ExecutionStyle?.PovIntervalSeconds ?? 0,
            MakerWaitSeconds = policy?.ExecutionStyle?.MakerWaitSeconds ?? 0,
            CashBudget = plan.CashBefore,
            BlockTrading = policy?.ExecutionStyle?.BlockTrading ?? BlockTrading.Unspecified,
        };
        approved.Legs.AddRange(plan.Legs.Select(l => new ApprovedLeg
        {
            LegId = l.LegId,
            Sequence = l.Sequence,
            InstrumentId = l.InstrumentId,
            Side = l.Side,
            Quantity = l.Quantity,
            ReferencePrice = l.ReferencePrice,
            Kind = l.Kind,
            LoanId = l.LoanId,
            Venue = l.Venue,
            FundedByLegId = l.FundedByLegId,
            HedgesLegId = l.HedgesLegId,
            FromVenue = l.FromVenue,
            CashChange = l.CashChange,
            Purpose = l.Purpose,
            Margined = l.IsMargined(),
            LotSize = policy is not null && policy.LotSizes.TryGetValue(l.InstrumentId, out var lot) ? lot : null,
        }));
        return approved;
    }
}
