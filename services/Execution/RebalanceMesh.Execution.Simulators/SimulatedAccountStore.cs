using Google.Protobuf;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.ServiceDefaults;
using StackExchange.Redis;
using ExecutionReport = RebalanceMesh.Contracts.Events.V1.ExecutionReport;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// The simulated venues' accounts in Redis (the key names are those execution used before the simulators became a
/// plugin, so a running mesh keeps its accounts):
/// <list type="bullet">
/// <item><c>exe:lend:{venue}:{portfolio}:{loan}</c> a lending venue's account;
/// <c>exe:lend-ops</c> hash operation id (plan:leg) → "quantity|reject reason", written with the account it changed;
/// <c>exe:lend-by-asset:{asset}</c> set of the accounts that hold or owe the asset (or did: a superset).</item>
/// <item><c>exe:margin:{venue}:{portfolio}</c> a trading venue's margin account; <c>exe:margin-by-asset:{instrument}</c>
/// the accounts holding the contract; <c>exe:margin-ops</c> hash operation id (top-up leg, fill) → outcome, once each.</item>
/// <item><c>exe:sim-exec:{client order id}</c> what the venue answered an order (or a resting order's fill) the first
/// time: a resend under the same id gets the same answer, as from a real venue.</item>
/// </list>
/// Liquidation reports are committed with the accounts they change into execution's outbox.
/// </summary>
public sealed class SimulatedAccountStore(IConnectionMultiplexer redis)
{
    private static readonly TimeSpan AnswerKept = TimeSpan.FromDays(7);

    private static readonly System.Text.Json.JsonSerializerOptions AnswerJson = new(System.Text.Json.JsonSerializerDefaults.Web);

    /// <summary>Keeps the first answer under its id; returns the answer that stands (an earlier one, when there is).</summary>
    private static readonly LuaScript FirstAnswer = LuaScript.Prepare(
        "local first = redis.call('GET', @key) if first then return first end " +
        "redis.call('SET', @key, @answer, 'PX', @keepMs) return false");

    private IDatabase Db => redis.GetDatabase();

    private static RedisKey AnswerKey(string clientOrderId) => "exe:sim-exec:" + clientOrderId;

    /// <summary>
    /// The venue's answer to a client order id (or a resting order's fill id): <paramref name="answer"/> the first time,
    /// the first answer on a resend — as a real venue answers a duplicate client order id.
    /// </summary>
    public async Task<Core.VenueExecution> AnswerOnceAsync(Core.VenueExecution answer)
    {
        var first = await Db.ScriptEvaluateAsync(FirstAnswer, new
        {
            key = AnswerKey(answer.ClientOrderId),
            answer = (RedisValue)System.Text.Json.JsonSerializer.Serialize(answer, AnswerJson),
            keepMs = (long)AnswerKept.TotalMilliseconds,
        });
        return first.IsNull ? answer : System.Text.Json.JsonSerializer.Deserialize<Core.VenueExecution>((string)first!, AnswerJson)!;
    }

    private static readonly RedisKey LendingOpsKey = "exe:lend-ops";

    private static readonly RedisKey MarginOpsKey = "exe:margin-ops";

    public static string LendingKey(string venue, string portfolioId, string loanId) => $"exe:lend:{venue}:{portfolioId}:{loanId}";

    public static string MarginKey(string venue, string portfolioId) => $"exe:margin:{venue}:{portfolioId}";

    private static RedisKey LendingAssetKey(string asset) => "exe:lend-by-asset:" + asset;

    private static RedisKey MarginAssetKey(string instrument) => "exe:margin-by-asset:" + instrument;

    /// <summary>A lending account and its stored bytes (the optimistic-concurrency token of <see cref="TryUpdateLendingAsync"/>).</summary>
    public Task<(LendingAccount? Account, RedisValue Raw)> GetLendingAsync(string key) => GetAccountAsync(key, LendingAccount.Parser);

    /// <summary>The accounts that hold or owe any of <paramref name="assets"/> (possibly a few that no longer do).</summary>
    public Task<IReadOnlyList<string>> GetLendingKeysAsync(IEnumerable<string> assets) => KeysByAssetAsync(assets.Select(LendingAssetKey));

    /// <summary>Opens (or replaces) an account.</summary>
    public Task SaveLendingAsync(LendingAccount account) =>
        SaveAccountAsync(LendingKey(account.Venue, account.PortfolioId, account.LoanId), account, LendingAssets(account).Select(LendingAssetKey));

    /// <summary>
    /// Replaces an account if it still holds <paramref name="before"/>; with an operation id, records the operation's
    /// outcome in the same transaction, and only if it was not recorded before; with reports, puts them in the outbox in
    /// the same transaction (nothing committed goes unreported). False when either changed meanwhile.
    /// </summary>
    public Task<bool> TryUpdateLendingAsync(string key, RedisValue before, LendingAccount after, string? operationId = null, string? outcome = null, IReadOnlyList<ExecutionReport>? reports = null) =>
        TryUpdateAccountAsync(key, before, after, LendingAssets(after).Select(LendingAssetKey), LendingOpsKey, operationId, outcome, reports);

    /// <summary>Records a refused operation once (the account is unchanged).</summary>
    public Task RecordLendingOperationAsync(string operationId, string outcome) => Db.HashSetAsync(LendingOpsKey, operationId, outcome, When.NotExists);

    /// <summary>The recorded outcome of a lending operation, "quantity|reject reason", or null before it ran.</summary>
    public Task<string?> GetLendingOperationAsync(string operationId) => GetOperationAsync(LendingOpsKey, operationId);

    /// <summary>A venue margin account and its stored bytes (the token of <see cref="TryUpdateMarginAsync"/>).</summary>
    public Task<(VenueMarginAccount? Account, RedisValue Raw)> GetMarginAsync(string key) => GetAccountAsync(key, VenueMarginAccount.Parser);

    /// <summary>The margin accounts holding any of <paramref name="instruments"/> (possibly a few that no longer do).</summary>
    public Task<IReadOnlyList<string>> GetMarginKeysAsync(IEnumerable<string> instruments) => KeysByAssetAsync(instruments.Select(MarginAssetKey));

    public Task SaveMarginAsync(VenueMarginAccount account) =>
        SaveAccountAsync(MarginKey(account.Venue, account.PortfolioId), account, account.Positions.Select(p => MarginAssetKey(p.InstrumentId)));

    /// <summary>As <see cref="TryUpdateLendingAsync"/>, for margin accounts (operations: top-up legs and fills, once each).</summary>
    public Task<bool> TryUpdateMarginAsync(string key, RedisValue before, VenueMarginAccount after, string? operationId = null, string? outcome = null, IReadOnlyList<ExecutionReport>? reports = null) =>
        TryUpdateAccountAsync(key, before, after, after.Positions.Select(p => MarginAssetKey(p.InstrumentId)), MarginOpsKey, operationId, outcome, reports);

    /// <summary>
    /// Moves collateral between two margin accounts in one transaction, if neither changed meanwhile and the operation
    /// was not recorded before (it is recorded with the move). False when any of them changed.
    /// </summary>
    public Task<bool> TryTransferMarginAsync(string fromKey, RedisValue fromBefore, VenueMarginAccount fromAfter, string toKey, RedisValue toBefore, VenueMarginAccount toAfter, string operationId, string outcome)
    {
        var write = new RedisCheckedWrite()
            .StringEqual(fromKey, fromBefore)
            .StringEqual(toKey, toBefore)
            .HashNotExists(MarginOpsKey, operationId)
            .HashSet(MarginOpsKey, new HashEntry(operationId, outcome))
            .StringSet(fromKey, fromAfter.ToByteArray())
            .StringSet(toKey, toAfter.ToByteArray());
        return write.ExecuteAsync(Db);
    }

    public Task RecordMarginOperationAsync(string operationId, string outcome) => Db.HashSetAsync(MarginOpsKey, operationId, outcome, When.NotExists);

    public Task<string?> GetMarginOperationAsync(string operationId) => GetOperationAsync(MarginOpsKey, operationId);

    private static IEnumerable<string> LendingAssets(LendingAccount account) =>
        account.Collateral.Select(c => c.Asset).Append(account.DebtAsset).Where(a => a.Length > 0).Distinct(StringComparer.Ordinal);

    private async Task<(T? Account, RedisValue Raw)> GetAccountAsync<T>(string key, MessageParser<T> parser)
        where T : class, IMessage<T>
    {
        var raw = await Db.StringGetAsync(key);
        return (raw.IsNull ? null : parser.ParseFrom((byte[])raw!), raw);
    }

    private async Task<IReadOnlyList<string>> KeysByAssetAsync(IEnumerable<RedisKey> indexKeys)
    {
        var keys = indexKeys.ToArray();
        return keys.Length == 0 ? [] : (await Db.SetCombineAsync(SetOperation.Union, keys)).Select(v => v.ToString()).ToArray();
    }

    private async Task SaveAccountAsync(string key, IMessage account, IEnumerable<RedisKey> indexKeys)
    {
        var write = new RedisCheckedWrite().StringSet(key, account.ToByteArray());
        foreach (var index in indexKeys)
        {
            write.SetAdd(index, key);
        }

        await write.ExecuteAsync(Db);
    }

    private Task<bool> TryUpdateAccountAsync(string key, RedisValue before, IMessage after, IEnumerable<RedisKey> indexKeys, RedisKey opsKey, string? operationId, string? outcome, IReadOnlyList<ExecutionReport>? reports)
    {
        var write = new RedisCheckedWrite().StringEqual(key, before);
        if (operationId is not null)
        {
            write.HashNotExists(opsKey, operationId)
                .HashSet(opsKey, new HashEntry(operationId, outcome ?? string.Empty));
        }

        write.StringSet(key, after.ToByteArray());
        foreach (var index in indexKeys)
        {
            write.SetAdd(index, key);
        }

        return ExecutionStore.AddToOutbox(write, reports ?? []).ExecuteAsync(Db);
    }

    private async Task<string?> GetOperationAsync(RedisKey opsKey, string operationId)
    {
        var value = await Db.HashGetAsync(opsKey, operationId);
        return value.IsNull ? null : value.ToString();
    }
}
