using Google.Protobuf;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.ServiceDefaults;
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
/// <item><c>exe:outbox:reports</c> hash report id → report, and <c>exe:outbox:order</c> sorted set of their ids in commit
/// order: the reports committed with the state they report (an order's fill, a run's journal entry, a plan's end, a
/// venue plugin's liquidation) and not yet published; every report leaves through them. A published report is taken
/// out by its id in O(log n) (the list they replace, <c>exe:outbox</c>, took an LREM scan per report: with thousands of
/// a block's allocations pending, the most expensive command Redis ran). The list is still relayed and emptied, never written.</item>
/// <item>The run queue's keys (<c>exe:runs</c>, <c>exe:run-owners</c>, <c>exe:approved:{plan}</c>, <c>exe:run-attempts</c>): see <see cref="RunQueue"/>.</item>
/// </list>
/// </summary>
public sealed class ExecutionStore(IConnectionMultiplexer redis)
{
    /// <summary>A report in the outbox; <paramref name="LegacyRaw"/> is its stored bytes when it sits in the legacy list.</summary>
    public sealed record OutboxEntry(ExecutionReport Report, RedisValue LegacyRaw);

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

    private static readonly RedisKey OutboxReportsKey = "exe:outbox:reports";

    private static readonly RedisKey OutboxOrderKey = "exe:outbox:order";

    /// <summary>The outbox as a list, as versions before the keyed outbox wrote it: relayed and emptied, never written.</summary>
    private static readonly RedisKey LegacyOutboxKey = "exe:outbox";

    /// <summary>The commit order of this process's outbox entries: increasing, from the time the process started, in µs.</summary>
    private static long _outboxSequence = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000;

    /// <summary>
    /// The oldest reports in the outbox, in the order they were committed (entries of the legacy list first). Each is taken
    /// out by <see cref="RemoveFromOutboxAsync(OutboxEntry)"/>.
    /// </summary>
    public async Task<IReadOnlyList<OutboxEntry>> GetOutboxAsync(int max)
    {
        var entries = (await Db.ListRangeAsync(LegacyOutboxKey, 0, max - 1))
            .Select(raw => new OutboxEntry(ExecutionReport.Parser.ParseFrom((byte[])raw!), raw)).ToList();
        if (entries.Count >= max)
        {
            return entries;
        }

        var ids = await Db.SortedSetRangeByRankAsync(OutboxOrderKey, 0, max - entries.Count - 1);
        var values = ids.Length == 0 ? [] : await Db.HashGetAsync(OutboxReportsKey, ids);
        var dangling = new List<RedisValue>();
        for (var i = 0; i < ids.Length; i++)
        {
            if (values[i].IsNull)
            {
                dangling.Add(ids[i]); // taken out of the hash between the two reads: published meanwhile
            }
            else
            {
                entries.Add(new OutboxEntry(ExecutionReport.Parser.ParseFrom((byte[])values[i]!), RedisValue.Null));
            }
        }

        if (dangling.Count > 0)
        {
            await Db.SortedSetRemoveAsync(OutboxOrderKey, [.. dangling]);
        }

        return entries;
    }

    /// <summary>Takes published reports out of the outbox, by their ids (a report's id names it alone: the same id is the same report).</summary>
    public async Task RemoveFromOutboxAsync(IReadOnlyList<ExecutionReport> reports)
    {
        if (reports.Count == 0)
        {
            return;
        }

        var ids = reports.Select(r => (RedisValue)r.ReportId).Distinct().ToArray();
        var both = Db.CreateTransaction();
        var removed = Task.WhenAll(both.SortedSetRemoveAsync(OutboxOrderKey, ids), both.HashDeleteAsync(OutboxReportsKey, ids));
        await both.ExecuteAsync();
        await removed;
    }

    /// <summary>Takes one relayed entry out of the outbox (an entry of the legacy list by its exact bytes).</summary>
    public Task RemoveFromOutboxAsync(OutboxEntry entry) =>
        entry.LegacyRaw.IsNull ? RemoveFromOutboxAsync([entry.Report]) : Db.ListRemoveAsync(LegacyOutboxKey, entry.LegacyRaw, 1);

    /// <summary>Puts reports in the outbox on their own (tests: the state of a crash between commit and publish).</summary>
    public Task AddToOutboxAsync(IReadOnlyList<ExecutionReport> reports) => AddToOutbox(new RedisCheckedWrite(), reports).ExecuteAsync(Db);

    /// <summary>
    /// Puts reports in the outbox within <paramref name="write"/> — committed with the state they report (a plan's end, a
    /// block's allocation, a venue plugin's liquidation and its account) — for <see cref="ReportOutbox"/> to publish.
    /// Each is kept under its id, in commit order.
    /// </summary>
    public static RedisCheckedWrite AddToOutbox(RedisCheckedWrite write, IReadOnlyList<ExecutionReport> reports) =>
        reports.Count == 0
            ? write
            : write.HashSet(OutboxReportsKey, [.. reports.Select(r => new HashEntry(r.ReportId, r.ToByteArray()))])
                .SortedSetAdd(OutboxOrderKey, [.. reports.Select(r => new SortedSetEntry(r.ReportId, NextOutboxSequence()))]);

    private static double NextOutboxSequence() => Interlocked.Increment(ref _outboxSequence);

    public async Task<Order?> GetOrderAsync(string clientOrderId)
    {
        var data = await Db.StringGetAsync(OrderKey(clientOrderId));
        return data.IsNull ? null : Order.Parser.ParseFrom((byte[])data!);
    }

    // Journals an order (the first write also appends it to its plan's order list) and, with a report, puts the report
    // in the outbox: one round trip, one atomic step.
    private static readonly LuaScript SaveOrderScript = LuaScript.Prepare("""
        if not redis.call('SET', @order, @data, 'NX') then
          redis.call('SET', @order, @data)
        else
          redis.call('RPUSH', @planOrders, @id)
        end
        if @report ~= '' then
          redis.call('HSET', @outboxReports, @reportId, @report)
          redis.call('ZADD', @outboxOrder, @sequence, @reportId)
        end
        return 1
        """);

    /// <summary>
    /// Journals an order; the first write also appends it to its plan's order list. With <paramref name="report"/> (the
    /// fill the order's new state reports), the report is committed with it into the outbox.
    /// </summary>
    public Task SaveOrderAsync(Order order, ExecutionReport? report = null) =>
        Db.ScriptEvaluateAsync(SaveOrderScript, new
        {
            order = OrderKey(order.ClientOrderId),
            planOrders = PlanOrdersKey(order.PlanId),
            outboxReports = OutboxReportsKey,
            outboxOrder = OutboxOrderKey,
            id = (RedisValue)order.ClientOrderId,
            data = (RedisValue)order.ToByteArray(),
            report = report is null ? RedisValue.EmptyString : (RedisValue)report.ToByteArray(),
            reportId = (RedisValue)(report?.ReportId ?? string.Empty),
            sequence = (RedisValue)(report is null ? 0L : (long)NextOutboxSequence()),
        });

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

    /// <summary>Saves a plan's execution state and commits the report of it (its end) into the outbox, in one transaction.</summary>
    public Task SaveExecutionAsync(PlanExecution execution, ExecutionReport report) =>
        AddToOutbox(new RedisCheckedWrite().StringSet(PlanKey(execution.PlanId), execution.ToByteArray()), [report]).ExecuteAsync(Db);

    /// <summary>
    /// Stores an execution only when the plan has none yet, with the report of it committed into the outbox in the same
    /// transaction; false (nothing written) when it has one.
    /// </summary>
    public Task<bool> TryCreateExecutionAsync(PlanExecution execution, ExecutionReport report)
    {
        var write = new RedisCheckedWrite()
            .KeyNotExists(PlanKey(execution.PlanId))
            .StringSet(PlanKey(execution.PlanId), execution.ToByteArray());
        return AddToOutbox(write, [report]).ExecuteAsync(Db);
    }

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

    /// <summary>
    /// Appends answers to a plan run's journal, in order; the reports they made (Report commands') are committed into the
    /// outbox in the same transaction, so a replayed run never reports twice and a crash never loses one.
    /// </summary>
    public Task AppendRunJournalAsync(string planId, IReadOnlyList<Core.Runs.RunObservation> observations, IReadOnlyList<ExecutionReport> reports)
    {
        var entries = observations.Select(o => (RedisValue)System.Text.Json.JsonSerializer.Serialize(o, JournalJson)).ToArray();
        if (reports.Count == 0)
        {
            return Db.ListRightPushAsync(RunJournalKey(planId), entries);
        }

        return AddToOutbox(new RedisCheckedWrite().ListRightPush(RunJournalKey(planId), entries), reports).ExecuteAsync(Db);
    }

    private static RedisKey BlockKey(string blockId) => "exe:block:" + blockId;

    private static RedisKey BlockMemberKey(string memberId) => "exe:block-member:" + memberId;

    private static RedisKey BlockLockKey(string blockId) => "exe:block-lock:" + blockId;

    private static readonly RedisKey BlocksKey = "exe:blocks";

    /// <summary>How long a slice's block stays findable by its member id: longer than any plan can wait to resume.</summary>
    private static readonly TimeSpan BlockMemberTtl = TimeSpan.FromDays(7);

    /// <summary>
    /// Records a new block and, for each member, which block it is in — only when no member is in another block yet
    /// (a plan resumed on another replica may have joined one there). Returns the members already in a block, with
    /// theirs; empty when the block was recorded.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, string>> CreateBlockAsync(Core.Blocks.BlockOrder block, DateTimeOffset at)
    {
        var write = new RedisCheckedWrite();
        foreach (var member in block.Members)
        {
            write.KeyNotExists(BlockMemberKey(member.MemberId));
        }

        write.HashSet(BlockKey(block.BlockId), new HashEntry("order", System.Text.Json.JsonSerializer.Serialize(block, JournalJson)))
            .SortedSetAdd(BlocksKey, block.BlockId, at.ToUnixTimeMilliseconds());
        foreach (var member in block.Members)
        {
            write.StringSet(BlockMemberKey(member.MemberId), block.BlockId, BlockMemberTtl);
        }

        if (await write.ExecuteAsync(Db))
        {
            return new Dictionary<string, string>();
        }

        var keys = block.Members.Select(m => BlockMemberKey(m.MemberId)).ToArray();
        var values = await Db.StringGetAsync(keys);
        return block.Members.Zip(values).Where(x => !x.Second.IsNull).ToDictionary(x => x.First.MemberId, x => x.Second.ToString(), StringComparer.Ordinal);
    }

    /// <summary>The block a slice joined, or null.</summary>
    public async Task<string?> GetBlockOfMemberAsync(string memberId)
    {
        var value = await Db.StringGetAsync(BlockMemberKey(memberId));
        return value.IsNull ? null : value.ToString();
    }

    /// <summary>A block as recorded and, once allocated, its outcome; null when there is no such block.</summary>
    public async Task<(Core.Blocks.BlockOrder Order, Core.Blocks.BlockOutcome? Outcome)?> GetBlockAsync(string blockId)
    {
        var fields = await Db.HashGetAsync(BlockKey(blockId), ["order", "outcome"]);
        if (fields[0].IsNull)
        {
            return null;
        }

        var order = System.Text.Json.JsonSerializer.Deserialize<Core.Blocks.BlockOrder>((string)fields[0]!, JournalJson)!;
        return (order, fields[1].IsNull ? null : System.Text.Json.JsonSerializer.Deserialize<Core.Blocks.BlockOutcome>((string)fields[1]!, JournalJson));
    }

    /// <summary>The most recent blocks' ids, newest first.</summary>
    public async Task<IReadOnlyList<string>> GetRecentBlocksAsync(int max) =>
        (await Db.SortedSetRangeByRankAsync(BlocksKey, 0, max - 1, StackExchange.Redis.Order.Descending)).Select(v => v.ToString()).ToArray();

    /// <summary>
    /// Commits a block's allocation with the members' fill reports (into the outbox), once: false when the block was
    /// allocated already (by another replica that resumed it).
    /// </summary>
    public Task<bool> CompleteBlockAsync(string blockId, Core.Blocks.BlockOutcome outcome, IReadOnlyList<ExecutionReport> reports)
    {
        var write = new RedisCheckedWrite()
            .HashNotExists(BlockKey(blockId), "outcome")
            .HashSet(BlockKey(blockId), new HashEntry("outcome", System.Text.Json.JsonSerializer.Serialize(outcome, JournalJson)));
        return AddToOutbox(write, reports).ExecuteAsync(Db);
    }

    /// <summary>
    /// Takes (or renews, when it is <paramref name="owner"/>'s) the right to run a block for <paramref name="lease"/>: one
    /// replica at a time. Renewal and release are checked writes, not StackExchange.Redis' LockExtend/LockRelease, whose
    /// conditional transactions hold the connection's writer a round trip each.
    /// </summary>
    public async Task<bool> TryLockBlockAsync(string blockId, string owner, TimeSpan lease) =>
        await Db.StringSetAsync(BlockLockKey(blockId), owner, lease, When.NotExists)
        || await new RedisCheckedWrite().StringEqual(BlockLockKey(blockId), owner).StringSet(BlockLockKey(blockId), owner, lease).ExecuteAsync(Db);

    /// <summary>Gives a block's lock back, if <paramref name="owner"/> holds it.</summary>
    public Task UnlockBlockAsync(string blockId, string owner) =>
        new RedisCheckedWrite().StringEqual(BlockLockKey(blockId), owner).Command("DEL", BlockLockKey(blockId)).ExecuteAsync(Db);

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
