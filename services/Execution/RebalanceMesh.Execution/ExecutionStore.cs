using Google.Protobuf;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Execution.Core;
using StackExchange.Redis;
using ExecutionReport = RebalanceMesh.Contracts.Events.V1.ExecutionReport;
using Order = RebalanceMesh.Contracts.Execution.V1.Order;

namespace RebalanceMesh.Execution;

/// <summary>
/// The order journal and execution state in Redis. Keys (all under <c>exe:</c>):
/// <list type="bullet">
/// <item><c>exe:order:{client order id}</c> the order; <c>exe:plan-orders:{plan}</c> list of its client order ids.</item>
/// <item><c>exe:plan:{plan}</c> the plan's execution state (<c>PlanExecution</c>: legs, status, how it ended).</item>
/// <item><c>exe:venue:{venue}</c> hash client order id → the venue's execution, so a resent order is not filled twice.</item>
/// <item><c>exe:cancel:{plan}</c> cancel request; <c>exe:halt</c> the trading halt flag; <c>exe:venues-down</c> hash venue → why it is down.</item>
/// <item><c>exe:venue-costs:{venue}</c> hash of realised costs (fills, notional, fees, slippage), counted once per fill.</item>
/// <item><c>exe:lend:{venue}:{portfolio}:{loan}</c> a lending venue's account;
/// <c>exe:lend-ops</c> hash operation id (plan:leg) → "quantity|reject reason", written with the account it changed;
/// <c>exe:lend-by-asset:{asset}</c> set of the accounts that hold or owe the asset (or did: a superset).</item>
/// <item><c>exe:margin:{venue}:{portfolio}</c> a trading venue's margin account; <c>exe:margin-by-asset:{instrument}</c>
/// the accounts holding the contract; <c>exe:margin-ops</c> hash operation id (top-up leg, fill) → outcome, once each.</item>
/// <item><c>exe:outbox</c> list of reports committed with the state they report and not yet published.</item>
/// <item>The run queue's keys (<c>exe:runs</c>, <c>exe:run-owners</c>, <c>exe:approved:{plan}</c>, <c>exe:run-attempts</c>): see <see cref="RunQueue"/>.</item>
/// </list>
/// </summary>
public sealed class ExecutionStore(IConnectionMultiplexer redis)
{
    private IDatabase Db => redis.GetDatabase();

    private static RedisKey OrderKey(string clientOrderId) => "exe:order:" + clientOrderId;

    private static RedisKey PlanOrdersKey(string planId) => "exe:plan-orders:" + planId;

    internal static RedisKey PlanKey(string planId) => "exe:plan:" + planId;

    private static RedisKey VenueKey(string venue) => "exe:venue:" + venue;

    private static RedisKey CancelKey(string planId) => "exe:cancel:" + planId;

    private static RedisKey RunJournalKey(string planId) => "exe:run:" + planId;

    private static readonly System.Text.Json.JsonSerializerOptions JournalJson = new(System.Text.Json.JsonSerializerDefaults.Web);

    private static RedisKey VenueCostsKey(string venue) => "exe:venue-costs:" + venue;

    private static readonly RedisKey HaltKey = "exe:halt";

    private static readonly RedisKey VenuesDownKey = "exe:venues-down";

    /// <summary>Venues taken down at run time, with why.</summary>
    public async Task<IReadOnlyDictionary<string, string>> GetVenuesDownAsync() =>
        (await Db.HashGetAllAsync(VenuesDownKey)).ToDictionary(e => e.Name.ToString(), e => e.Value.ToString(), StringComparer.Ordinal);

    public Task SetVenueDownAsync(string venue, bool down, string reason) =>
        down ? Db.HashSetAsync(VenuesDownKey, venue, reason) : Db.HashDeleteAsync(VenuesDownKey, venue);

    private static readonly RedisKey LendingOpsKey = "exe:lend-ops";

    private static readonly RedisKey MarginOpsKey = "exe:margin-ops";

    private static readonly RedisKey OutboxKey = "exe:outbox";

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
        var transaction = Db.CreateTransaction();
        transaction.AddCondition(Condition.StringEqual(fromKey, fromBefore));
        transaction.AddCondition(Condition.StringEqual(toKey, toBefore));
        transaction.AddCondition(Condition.HashNotExists(MarginOpsKey, operationId));
        _ = transaction.HashSetAsync(MarginOpsKey, operationId, outcome);
        _ = transaction.StringSetAsync(fromKey, fromAfter.ToByteArray());
        _ = transaction.StringSetAsync(toKey, toAfter.ToByteArray());
        return transaction.ExecuteAsync();
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
        var transaction = Db.CreateTransaction();
        _ = transaction.StringSetAsync(key, account.ToByteArray());
        foreach (var index in indexKeys)
        {
            _ = transaction.SetAddAsync(index, key);
        }

        await transaction.ExecuteAsync();
    }

    private Task<bool> TryUpdateAccountAsync(string key, RedisValue before, IMessage after, IEnumerable<RedisKey> indexKeys, RedisKey opsKey, string? operationId, string? outcome, IReadOnlyList<ExecutionReport>? reports)
    {
        var transaction = Db.CreateTransaction();
        transaction.AddCondition(Condition.StringEqual(key, before));
        if (operationId is not null)
        {
            transaction.AddCondition(Condition.HashNotExists(opsKey, operationId));
            _ = transaction.HashSetAsync(opsKey, operationId, outcome);
        }

        _ = transaction.StringSetAsync(key, after.ToByteArray());
        foreach (var index in indexKeys)
        {
            _ = transaction.SetAddAsync(index, key);
        }

        if (reports is { Count: > 0 })
        {
            _ = transaction.ListRightPushAsync(OutboxKey, reports.Select(r => (RedisValue)r.ToByteArray()).ToArray());
        }

        return transaction.ExecuteAsync();
    }

    private async Task<string?> GetOperationAsync(RedisKey opsKey, string operationId)
    {
        var value = await Db.HashGetAsync(opsKey, operationId);
        return value.IsNull ? null : value.ToString();
    }

    /// <summary>The oldest reports in the outbox, each with its stored bytes (what <see cref="RemoveFromOutboxAsync"/> takes).</summary>
    public async Task<IReadOnlyList<(ExecutionReport Report, RedisValue Raw)>> GetOutboxAsync(int max) =>
        (await Db.ListRangeAsync(OutboxKey, 0, max - 1)).Select(raw => (ExecutionReport.Parser.ParseFrom((byte[])raw!), raw)).ToArray();

    /// <summary>Removes one published report (by its exact bytes, so replicas relaying the same outbox never drop another's).</summary>
    public Task RemoveFromOutboxAsync(RedisValue raw) => Db.ListRemoveAsync(OutboxKey, raw, 1);

    /// <summary>Puts reports in the outbox on their own (tests: the state of a crash between commit and publish).</summary>
    public Task AddToOutboxAsync(IReadOnlyList<ExecutionReport> reports) =>
        Db.ListRightPushAsync(OutboxKey, reports.Select(r => (RedisValue)r.ToByteArray()).ToArray());

    public async Task<Order?> GetOrderAsync(string clientOrderId)
    {
        var data = await Db.StringGetAsync(OrderKey(clientOrderId));
        return data.IsNull ? null : Order.Parser.ParseFrom((byte[])data!);
    }

    /// <summary>Journals an order; the first write also appends it to its plan's order list.</summary>
    public async Task SaveOrderAsync(Order order)
    {
        var created = await Db.StringSetAsync(OrderKey(order.ClientOrderId), order.ToByteArray(), when: When.NotExists);
        if (created)
        {
            await Db.ListRightPushAsync(PlanOrdersKey(order.PlanId), order.ClientOrderId);
        }
        else
        {
            await Db.StringSetAsync(OrderKey(order.ClientOrderId), order.ToByteArray());
        }
    }

    public async Task<IReadOnlyList<Order>> GetPlanOrdersAsync(string planId)
    {
        var ids = await Db.ListRangeAsync(PlanOrdersKey(planId));
        if (ids.Length == 0)
        {
            return [];
        }

        var values = await Db.StringGetAsync(ids.Select(id => OrderKey(id.ToString())).ToArray());
        return values.Where(v => !v.IsNull).Select(v => Order.Parser.ParseFrom((byte[])v!)).ToArray();
    }

    public async Task<PlanExecution?> GetExecutionAsync(string planId)
    {
        var data = await Db.StringGetAsync(PlanKey(planId));
        return data.IsNull ? null : PlanExecution.Parser.ParseFrom((byte[])data!);
    }

    public Task SaveExecutionAsync(PlanExecution execution) =>
        Db.StringSetAsync(PlanKey(execution.PlanId), execution.ToByteArray());

    /// <summary>Stores an execution only when the plan has none yet; false when it has one.</summary>
    public Task<bool> TryCreateExecutionAsync(PlanExecution execution) =>
        Db.StringSetAsync(PlanKey(execution.PlanId), execution.ToByteArray(), when: When.NotExists);

    // Records an execution once (HSETNX) and, the first time only, adds a fill's costs to the venue's totals; returns
    // the recorded outcome. One script, so replicas recording on one venue at once never abort each other (a WATCHed
    // transaction on the venue's hash would).
    private static readonly LuaScript RecordExecutionScript = LuaScript.Prepare("""
        if redis.call('HSETNX', @venue, @order, @value) == 0 then
          return redis.call('HGET', @venue, @order)
        end
        if @filled == '1' then
          redis.call('HINCRBY', @costs, 'fills', 1)
          redis.call('HINCRBYFLOAT', @costs, 'notional', @notional)
          redis.call('HINCRBYFLOAT', @costs, 'fees', @fee)
          redis.call('HINCRBYFLOAT', @costs, 'slippage', @slippage)
        end
        return @value
        """);

    /// <summary>
    /// Records a venue's execution of a client order once (a resent order keeps the first outcome) and, atomically with
    /// it, adds a fill's realised costs to the venue's totals: notional, fee, and the price paid beyond the arrival mid
    /// (<paramref name="slippageCost"/>).
    /// </summary>
    public async Task<VenueExecution> RecordVenueExecutionAsync(VenueExecution execution, decimal slippageCost = 0)
    {
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        var value = string.Join('|', execution.Accepted ? "1" : "0", execution.FilledQuantity.ToString(invariant), execution.Price.ToString(invariant), execution.Fee.ToString(invariant), execution.RejectReason);
        var stored = (string)(await RecordExecutionScript.EvaluateAsync(Db, new
        {
            venue = VenueKey(execution.VenueId),
            costs = VenueCostsKey(execution.VenueId),
            order = execution.ClientOrderId,
            value,
            filled = execution.Accepted && execution.FilledQuantity > 0 ? "1" : "0",
            notional = ((double)(execution.FilledQuantity * execution.Price)).ToString("R", invariant),
            fee = ((double)execution.Fee).ToString("R", invariant),
            slippage = ((double)slippageCost).ToString("R", invariant),
        }))!;
        var parts = stored.Split('|', 5);
        return execution with
        {
            Accepted = parts[0] == "1",
            FilledQuantity = decimal.Parse(parts[1], invariant),
            Price = decimal.Parse(parts[2], invariant),
            Fee = decimal.Parse(parts[3], invariant),
            RejectReason = parts[4],
        };
    }

    /// <summary>Realised costs of a venue: fills, notional, fees and slippage (zeros before its first fill).</summary>
    public async Task<(long Fills, double Notional, double Fees, double Slippage)> GetVenueCostsAsync(string venue)
    {
        var fields = (await Db.HashGetAllAsync(VenueCostsKey(venue))).ToDictionary(e => e.Name.ToString(), e => (double)e.Value);
        return ((long)fields.GetValueOrDefault("fills"), fields.GetValueOrDefault("notional"), fields.GetValueOrDefault("fees"), fields.GetValueOrDefault("slippage"));
    }

    /// <summary>A plan run's journal: every answer its host gave, in order (a restarted run replays them).</summary>
    public async Task<IReadOnlyList<Core.Runs.RunObservation>> GetRunJournalAsync(string planId)
    {
        var entries = await Db.ListRangeAsync(RunJournalKey(planId));
        return entries.Select(e => System.Text.Json.JsonSerializer.Deserialize<Core.Runs.RunObservation>((string)e!, JournalJson)!).ToArray();
    }

    /// <summary>Appends one answer to a plan run's journal.</summary>
    public Task AppendRunJournalAsync(string planId, Core.Runs.RunObservation observation) =>
        Db.ListRightPushAsync(RunJournalKey(planId), System.Text.Json.JsonSerializer.Serialize(observation, JournalJson));

    public Task RequestCancelAsync(string planId, string reason) => Db.StringSetAsync(CancelKey(planId), reason, TimeSpan.FromDays(7));

    public async Task<string?> GetCancelReasonAsync(string planId)
    {
        var value = await Db.StringGetAsync(CancelKey(planId));
        return value.IsNull ? null : value.ToString();
    }

    public Task SetHaltAsync(bool halted, string reason) =>
        halted ? Db.StringSetAsync(HaltKey, reason) : Db.KeyDeleteAsync(HaltKey);

    public async Task<string?> GetHaltReasonAsync()
    {
        var value = await Db.StringGetAsync(HaltKey);
        return value.IsNull ? null : value.ToString();
    }

    /// <summary>
    /// The stop a plan has pending, as it will read in the plan's outcome: a trading halt first ("trading halted: …"),
    /// then a cancel of the plan ("cancelled: …"); null when none.
    /// </summary>
    public async Task<string?> GetPendingStopAsync(string planId)
    {
        if (await GetHaltReasonAsync() is { } halt)
        {
            return "trading halted: " + halt;
        }

        return await GetCancelReasonAsync(planId) is { } cancel ? "cancelled: " + cancel : null;
    }
}
