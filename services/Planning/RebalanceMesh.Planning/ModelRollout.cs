using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Planning;

/// <summary>
/// Makes a model's latest version every linked portfolio's policy (<see cref="ModelPolicies.For"/>, with each
/// portfolio's own overrides), <see cref="Concurrency"/> at a time. UpdateModel starts it and waits a few seconds; what
/// is left — a large book, a replica that stopped — this background service finishes: every <see cref="Interval"/> it
/// rolls out each model still marked (<see cref="ModelStore.RolloutsKey"/>). A portfolio is rewritten only while its
/// stored policy still follows the model at an older version (checked atomically with the write), so a rollout never
/// undoes a link changed meanwhile, and two replicas rolling out the same version write each portfolio once.
/// </summary>
public sealed class ModelRollout(ModelStore models, TimeProvider time, ILogger<ModelRollout> logger) : PeriodicWork(Interval, time, logger)
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(5);

    /// <summary>Portfolios rewritten at once.</summary>
    public const int Concurrency = 16;

    private static readonly Meter Meter = new("RebalanceMesh.Planning.Models");
    private static readonly Counter<long> Updated = Meter.CreateCounter<long>("rebalancemesh.planning.model_rollout.portfolios", description: "Linked portfolios whose policy a model change rewrote.");

    /// <summary>
    /// Rolls <paramref name="model"/> out until done or <paramref name="budget"/> ends. Returns the portfolios rewritten
    /// and those still to do (the background rounds finish them).
    /// </summary>
    public async Task<(long Updated, long Pending)> RollOutAsync(Model model, TimeSpan budget, CancellationToken cancellationToken)
    {
        using var activity = PlanPipeline.ActivitySource.StartActivity("model rollout");
        activity?.SetTag("planning.model.id", model.ModelId);
        activity?.SetTag("planning.model.version", model.Version);
        using var timeout = new CancellationTokenSource(budget, Time);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var linked = await models.LinkedAsync(model.ModelId);
        long updated = 0, done = 0;
        try
        {
            await Parallel.ForEachAsync(linked, new ParallelOptions { MaxDegreeOfParallelism = Concurrency, CancellationToken = stop.Token }, async (portfolioId, _) =>
            {
                // One read of the stored policy, checked and rewritten atomically (unreadable: relinking repairs it).
                var following = true;
                var rewritten = await models.ChangeLinkedPolicyAsync(portfolioId, current =>
                {
                    following = current?.ModelLink?.ModelId == model.ModelId;
                    return following && current!.ModelLink.ModelVersion < model.Version ? ModelPolicies.For(model, portfolioId, current.ModelLink.Overrides) : null;
                });
                if (!following)
                {
                    await models.UnlistAsync(model.ModelId, portfolioId); // relinked or unlinked since the set was read
                }
                else if (rewritten is not null)
                {
                    Interlocked.Increment(ref updated);
                }

                Interlocked.Increment(ref done);
            });
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // Out of time: the background rounds finish it.
        }

        Updated.Add(updated);
        var pending = linked.Length - done;
        if (pending == 0)
        {
            await models.EndRolloutAsync(model);
        }

        activity?.SetTag("planning.model_rollout.updated", updated);
        activity?.SetTag("planning.model_rollout.pending", pending);
        return (updated, pending);
    }

    protected override string Name => "model rollout";

    protected override Task RunRoundAsync(CancellationToken cancellationToken) => RoundAsync(cancellationToken);

    /// <summary>One background round: every model still marked for rollout, at its latest version.</summary>
    public async Task RoundAsync(CancellationToken cancellationToken)
    {
        foreach (var modelId in await models.RolloutsAsync())
        {
            if (await models.GetAsync(modelId) is { } model)
            {
                var (updated, pending) = await RollOutAsync(model, TimeSpan.FromMinutes(1), cancellationToken);
                logger.LogInformation("Model {ModelId} version {Version}: {Updated} linked portfolios rewritten, {Pending} left", modelId, model.Version, updated, pending);
            }
        }
    }
}
