using Google.Protobuf;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.ServiceDefaults;
using StackExchange.Redis;

namespace RebalanceMesh.Execution;

/// <summary>What accepting a delivered plan found.</summary>
public enum PlanAcceptance
{
    /// <summary>New: stored and queued to run.</summary>
    Accepted,

    /// <summary>Accepted before and not ended (a redelivery): queued again if it was not (an upgrade from a version without the queue).</summary>
    AlreadyQueued,

    /// <summary>It has ended (or was cancelled before it started): nothing to run.</summary>
    Ended,
}

/// <summary>
/// The plans execution has accepted and not yet finished, shared by all replicas, each plan under a lease. Keys:
/// <list type="bullet">
/// <item><c>exe:runs</c> sorted set plan → when its lease ends (Unix ms; 0: free to take now).</item>
/// <item><c>exe:run-owners</c> hash plan → the replica holding its lease.</item>
/// <item><c>exe:approved:{plan}</c> hash: the plan as approved (<c>data</c>) and the trace it was accepted in (<c>traceparent</c>).</item>
/// <item><c>exe:run-attempts</c> hash plan → runs that failed (Redis gone, a bug), so a plan that always fails ends instead of looping.</item>
/// </list>
/// A replica takes a plan whose lease has ended (or is its own), renews the leases of the plans it runs while it runs
/// them, and gives each back when it ends (or when it stops). A replica that dies stops renewing: its plans' leases
/// end and another replica takes them, resuming each from its journal.
/// </summary>
public sealed class RunQueue(IConnectionMultiplexer redis)
{
    private static readonly RedisKey RunsKey = "exe:runs";
    private static readonly RedisKey OwnersKey = "exe:run-owners";
    private static readonly RedisKey AttemptsKey = "exe:run-attempts";

    // Takes the plan when it is queued and its lease has ended or is this replica's own.
    private static readonly LuaScript ClaimScript = LuaScript.Prepare("""
        local lease = redis.call('ZSCORE', @runs, @plan)
        if not lease then return 0 end
        local owner = redis.call('HGET', @owners, @plan)
        if tonumber(lease) > tonumber(@now) and owner ~= @me then return 0 end
        redis.call('ZADD', @runs, @until, @plan)
        redis.call('HSET', @owners, @plan, @me)
        return 1
        """);

    // Renews the leases this replica still holds; returns the plans whose lease it has lost (taken by another replica after it
    // ended, or out of the queue). Three commands per 500 plans (HMGET, ZMSCORE, ZADD), not three per plan: a replica
    // running thousands of plans renews them all in one script, and Redis runs nothing else meanwhile.
    private static readonly LuaScript RenewScript = LuaScript.Prepare("""
        local lost = {}
        local plans = {}
        for plan in string.gmatch(@plans, '[^ ]+') do table.insert(plans, plan) end
        for first = 1, #plans, 500 do
          local chunk = {unpack(plans, first, math.min(first + 499, #plans))}
          local owners = redis.call('HMGET', @owners, unpack(chunk))
          local leases = redis.call('ZMSCORE', @runs, unpack(chunk))
          local renewed = {}
          for i, plan in ipairs(chunk) do
            if owners[i] == @me and leases[i] then
              table.insert(renewed, @until)
              table.insert(renewed, plan)
            else
              table.insert(lost, plan)
            end
          end
          if #renewed > 0 then redis.call('ZADD', @runs, 'XX', unpack(renewed)) end
        end
        return lost
        """);

    // Gives a plan back: ended (out of the queue) or to be taken again from @at.
    private static readonly LuaScript ReleaseScript = LuaScript.Prepare("""
        if redis.call('HGET', @owners, @plan) ~= @me then return 0 end
        redis.call('HDEL', @owners, @plan)
        if @ended == '1' then
          redis.call('ZREM', @runs, @plan)
          redis.call('HDEL', @attempts, @plan)
          redis.call('DEL', @approved)
        else
          redis.call('ZADD', @runs, @at, @plan)
        end
        return 1
        """);

    private IDatabase Db => redis.GetDatabase();

    private static RedisKey ApprovedKey(string planId) => "exe:approved:" + planId;

    /// <summary>
    /// Accepts a delivered plan: stores its execution state (accepted), the plan itself and its trace, and queues it —
    /// in one transaction, and only when the plan has no execution yet. After this the event may be acknowledged: the
    /// plan runs even if this replica dies now.
    /// </summary>
    public async Task<PlanAcceptance> AcceptAsync(PlanApproved plan, PlanExecution accepted, string? traceParent)
    {
        var approved = new HashEntry[] { new("data", plan.ToByteArray()), new("traceparent", traceParent ?? string.Empty) };
        var write = new RedisCheckedWrite()
            .KeyNotExists(ExecutionStore.PlanKey(plan.PlanId))
            .StringSet(ExecutionStore.PlanKey(plan.PlanId), accepted.ToByteArray())
            .HashSet(ApprovedKey(plan.PlanId), approved)
            .SortedSetAdd(RunsKey, plan.PlanId, 0, onlyIfNew: true);
        if (await write.ExecuteAsync(Db))
        {
            return PlanAcceptance.Accepted;
        }

        var raw = await Db.StringGetAsync(ExecutionStore.PlanKey(plan.PlanId));
        if (raw.IsNull || PlanExecutor.IsFinal(PlanExecution.Parser.ParseFrom((byte[])raw!).Status))
        {
            return PlanAcceptance.Ended;
        }

        // Known and not ended: a redelivery (already queued), or a plan a version without this queue was running.
        // Should it end in between, a runner that takes it finds it ended and gives it back.
        await Db.HashSetAsync(ApprovedKey(plan.PlanId), "data", plan.ToByteArray(), When.NotExists);
        await Db.HashSetAsync(ApprovedKey(plan.PlanId), "traceparent", traceParent ?? string.Empty, When.NotExists);
        await Db.SortedSetAddAsync(RunsKey, plan.PlanId, 0, SortedSetWhen.NotExists);
        return PlanAcceptance.AlreadyQueued;
    }

    /// <summary>Takes a plan's lease until <paramref name="until"/> when it is free (or already <paramref name="owner"/>'s).</summary>
    public async Task<bool> TryClaimAsync(string planId, string owner, DateTimeOffset now, DateTimeOffset until) =>
        (int)await ClaimScript.EvaluateAsync(Db, new { runs = RunsKey, owners = OwnersKey, plan = planId, me = owner, now = now.ToUnixTimeMilliseconds(), until = until.ToUnixTimeMilliseconds() }) == 1;

    /// <summary>Extends the leases of <paramref name="planIds"/>; returns those <paramref name="owner"/> no longer holds.</summary>
    public async Task<IReadOnlyList<string>> RenewAsync(IReadOnlyCollection<string> planIds, string owner, DateTimeOffset until)
    {
        if (planIds.Count == 0)
        {
            return [];
        }

        var lost = await RenewScript.EvaluateAsync(Db, new { runs = RunsKey, owners = OwnersKey, plans = string.Join(' ', planIds), me = owner, until = until.ToUnixTimeMilliseconds() });
        return lost.IsNull ? [] : ((RedisResult[])lost!).Select(r => r.ToString()).ToArray();
    }

    /// <summary>Takes an ended plan out of the queue (with its stored plan and failed attempts), if <paramref name="owner"/> holds it.</summary>
    public Task ReleaseEndedAsync(string planId, string owner) => ReleaseAsync(planId, owner, ended: true, DateTimeOffset.UnixEpoch);

    /// <summary>Gives a plan that has not ended back, to be taken (by any replica) from <paramref name="at"/>.</summary>
    public Task ReleaseUnfinishedAsync(string planId, string owner, DateTimeOffset at) => ReleaseAsync(planId, owner, ended: false, at);

    private Task ReleaseAsync(string planId, string owner, bool ended, DateTimeOffset at) =>
        ReleaseScript.EvaluateAsync(Db, new { runs = RunsKey, owners = OwnersKey, attempts = AttemptsKey, approved = ApprovedKey(planId), plan = planId, me = owner, ended = ended ? "1" : "0", at = at.ToUnixTimeMilliseconds() });

    /// <summary>Counts a failed run of a plan; returns how many have failed.</summary>
    public Task<long> CountFailureAsync(string planId) => Db.HashIncrementAsync(AttemptsKey, planId);

    /// <summary>The plans whose lease <paramref name="owner"/> holds (or held, the lease since ended and not taken by another).</summary>
    public async Task<IReadOnlyList<string>> HeldByAsync(string owner) =>
        (await Db.HashGetAllAsync(OwnersKey)).Where(e => e.Value == owner).Select(e => e.Name.ToString()).ToArray();

    /// <summary>Up to <paramref name="max"/> queued plans whose lease has ended by <paramref name="now"/>, the longest free first.</summary>
    public async Task<IReadOnlyList<string>> DueAsync(DateTimeOffset now, int max) =>
        max <= 0 ? [] : (await Db.SortedSetRangeByScoreAsync(RunsKey, double.NegativeInfinity, now.ToUnixTimeMilliseconds(), take: max)).Select(v => v.ToString()).ToArray();

    /// <summary>The plan as it was accepted and the trace it was accepted in; null when it is not stored.</summary>
    public async Task<(PlanApproved Plan, string TraceParent)?> GetApprovedAsync(string planId)
    {
        var fields = await Db.HashGetAsync(ApprovedKey(planId), ["data", "traceparent"]);
        return fields[0].IsNull ? null : (PlanApproved.Parser.ParseFrom((byte[])fields[0]!), fields[1].IsNull ? string.Empty : fields[1].ToString());
    }

    /// <summary>How many plans are queued (running or waiting to run), across replicas.</summary>
    public Task<long> LengthAsync() => Db.SortedSetLengthAsync(RunsKey);
}
