using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.ServiceDefaults;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>
/// Models in Redis: each model's current version (<c>pln:model:{id}</c>), the ids in order (<c>pln:models</c>), the
/// portfolios linked to each (<c>pln:model-links:{id}</c>, kept in the transaction that writes the portfolio's policy),
/// and the models whose latest version has not reached every linked portfolio yet (<c>pln:model-rollouts</c>).
/// </summary>
public sealed class ModelStore(IConnectionMultiplexer redis, PlanningStore store, TimeProvider time)
{
    private static RedisKey ModelKey(string id) => "pln:model:" + id;

    private static RedisKey LinksKey(string id) => "pln:model-links:" + id;

    private static readonly RedisKey ModelsKey = "pln:models";

    /// <summary>Models whose latest version is still being made into their linked portfolios' policies.</summary>
    public static readonly RedisKey RolloutsKey = "pln:model-rollouts";

    private IDatabase Db => redis.GetDatabase();

    public async Task<Model?> GetAsync(string modelId)
    {
        var data = await Db.StringGetAsync(ModelKey(modelId));
        return data.IsNull ? null : Model.Parser.ParseFrom((byte[])data!);
    }

    /// <summary>Stores a new model at version 1; a model of that id is a conflict.</summary>
    public async Task<Model> CreateAsync(Model model, string caller)
    {
        var stored = Stamp(model, 1, caller);
        var write = new RedisCheckedWrite()
            .KeyNotExists(ModelKey(model.ModelId))
            .StringSet(ModelKey(model.ModelId), stored.ToByteArray())
            .SortedSetAdd(ModelsKey, model.ModelId, 0);
        return await write.ExecuteAsync(Db)
            ? stored
            : throw new DomainException(DomainErrorKind.Conflict, $"Model '{model.ModelId}' exists already; change it with UpdateModel.");
    }

    /// <summary>
    /// Stores the model's next version if it is still at <paramref name="expectedVersion"/>, and marks it for rollout to
    /// its linked portfolios in the same transaction.
    /// </summary>
    public async Task<Model> UpdateAsync(Model model, long expectedVersion, string caller)
    {
        var raw = await Db.StringGetAsync(ModelKey(model.ModelId));
        var current = raw.IsNull ? throw DomainException.NotFound($"Model '{model.ModelId}'") : Model.Parser.ParseFrom((byte[])raw!);
        if (current.Version != expectedVersion)
        {
            throw new DomainException(DomainErrorKind.Conflict, $"Model '{model.ModelId}' is at version {current.Version}, not {expectedVersion}; read it again and retry.");
        }

        var stored = Stamp(model, current.Version + 1, caller);
        var write = new RedisCheckedWrite()
            .StringEqual(ModelKey(model.ModelId), raw)
            .StringSet(ModelKey(model.ModelId), stored.ToByteArray())
            .SetAdd(RolloutsKey, model.ModelId);
        return await write.ExecuteAsync(Db)
            ? stored
            : throw new DomainException(DomainErrorKind.Conflict, $"Model '{model.ModelId}' changed meanwhile; read it again and retry.");
    }

    /// <summary>One page of models by id: those after <paramref name="after"/> (empty: from the first).</summary>
    public async Task<(IReadOnlyList<Model> Models, string? Next)> ListAsync(string after, int pageSize)
    {
        var ids = await Db.SortedSetRangeByValueAsync(ModelsKey, after.Length == 0 ? default : after, default, after.Length == 0 ? Exclude.None : Exclude.Start, Order.Ascending, 0, pageSize + 1);
        var page = ids.Take(pageSize).ToArray();
        var values = page.Length == 0 ? [] : await Db.StringGetAsync([.. page.Select(id => ModelKey(id.ToString()))]);
        var models = values.Where(v => !v.IsNull).Select(v => Model.Parser.ParseFrom((byte[])v!)).ToArray();
        return (models, ids.Length > pageSize ? page[^1].ToString() : null);
    }

    public Task<long> LinkedCountAsync(string modelId) => Db.SetLengthAsync(LinksKey(modelId));

    public async Task<string[]> LinkedAsync(string modelId) => [.. (await Db.SetMembersAsync(LinksKey(modelId))).Select(v => v.ToString())];

    /// <summary>
    /// Changes a portfolio's policy as <see cref="PlanningStore.ChangePolicyAsync"/> does, moving its link from the model
    /// the stored policy names to the one the new policy names (either may be none) in the same transaction.
    /// </summary>
    public Task<Policy?> ChangeLinkedPolicyAsync(string portfolioId, Func<Policy?, Policy?> change) =>
        store.ChangePolicyAsync(portfolioId, change, (write, read, next) =>
        {
            var previous = read?.ModelLink?.ModelId;
            var following = next.ModelLink?.ModelId;
            if (previous is { Length: > 0 } && previous != following)
            {
                write.SetRemove(LinksKey(previous), portfolioId);
            }

            if (following is { Length: > 0 })
            {
                write.SetAdd(LinksKey(following), portfolioId);
            }
        });

    /// <summary>Drops a portfolio from a model's links (its policy follows another model, or none, now).</summary>
    public Task UnlistAsync(string modelId, string portfolioId) => Db.SetRemoveAsync(LinksKey(modelId), portfolioId);

    /// <summary>Whether the model's latest version has not reached every linked portfolio yet.</summary>
    public Task<bool> RolloutPendingAsync(string modelId) => Db.SetContainsAsync(RolloutsKey, modelId);

    public async Task<string[]> RolloutsAsync() => [.. (await Db.SetMembersAsync(RolloutsKey)).Select(v => v.ToString())];

    /// <summary>Ends a model's rollout, unless a newer version was stored meanwhile (which starts its own).</summary>
    public async Task EndRolloutAsync(Model rolledOut)
    {
        await new RedisCheckedWrite()
            .StringEqual(ModelKey(rolledOut.ModelId), rolledOut.ToByteArray())
            .SetRemove(RolloutsKey, rolledOut.ModelId)
            .ExecuteAsync(Db);
    }

    private Model Stamp(Model model, long version, string caller)
    {
        var stored = model.Clone();
        stored.Version = version;
        stored.UpdatedAt = time.GetUtcNow().ToTimestamp();
        stored.UpdatedBy = caller;
        stored.Policy.PortfolioId = string.Empty;
        stored.Policy.Version = 0;
        stored.Policy.ModelLink = null;
        return stored;
    }
}
