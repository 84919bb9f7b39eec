using System.Globalization;
using System.Text.Json;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>Configuration section <c>Monitor</c>: how planning replicas share the book.</summary>
public sealed class MonitorOptions
{
    /// <summary>Partitions of the book (fixed for a mesh: changing it moves every portfolio's partition).</summary>
    public int Partitions { get; set; } = Core.MonitorPartitions.Default;

    /// <summary>This replica's name in the membership: Mesh:InstanceId when set, else machine and process.</summary>
    public string ReplicaId { get; set; } = string.Empty;

    /// <summary>How often a replica renews its membership, reads the others' and moves partitions.</summary>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>A replica that has not renewed its membership for this long has left: its partitions go to the others.</summary>
    public TimeSpan MemberTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Automatic plans one replica builds at once (a breach storm is worked through this many at a time).</summary>
    public int MaxConcurrentPlans { get; set; } = 64;

    /// <summary>Market ticks read per round trip (a monitor that fell behind evaluates up to this many ticks in one pass).</summary>
    public int TickBatch { get; set; } = 1_000;

    /// <summary>Approximate length the tick stream is trimmed to.</summary>
    public int TicksKept { get; set; } = 100_000;

    /// <summary>Portfolios whose total drift is exported as a series of its own: the most drifted (the rest are in the drift distribution).</summary>
    public int DriftSeries { get; set; } = 100;
}

/// <summary>What an evaluation asks the automatic planner to consider for a portfolio (its policy is automatic).</summary>
/// <param name="Breaches">The breached rules, "rule:instrument".</param>
public sealed record PlanRequest(bool Breached, bool Emergency, long PortfolioVersion, IReadOnlyList<string> Breaches);

/// <summary>A change a pass commits with its partitions' cursors: a breach raised or cleared, or a plan to consider.</summary>
public abstract record ShardChange(int Partition, string PortfolioId)
{
    public sealed record BreachRaised(int Partition, string PortfolioId) : ShardChange(Partition, PortfolioId);

    public sealed record BreachCleared(int Partition, string PortfolioId) : ShardChange(Partition, PortfolioId);

    public sealed record PlanWanted(int Partition, string PortfolioId, PlanRequest Request) : ShardChange(Partition, PortfolioId);
}

/// <summary>A market tick as the monitor keeps it: its stream id and the instruments whose prices changed.</summary>
public sealed record MarketTick(string Id, IReadOnlyList<string> Instruments, string TraceParent);

/// <summary>
/// The monitor's shared state in Redis, by which planning replicas split the book (docs/README.md, "The monitor"):
/// <list type="bullet">
/// <item><c>pln:monitor:ticks</c> stream: one entry per market.quotes event (the instruments that changed), appended by
/// the replica the event was delivered to and read by every replica.</item>
/// <item><c>pln:monitor:members</c> sorted set replica → when its membership ends (Unix ms), renewed by heartbeats.</item>
/// <item><c>pln:monitor:owners</c> hash partition → the replica holding it.</item>
/// <item><c>pln:monitor:cursors</c> hash partition → the last tick evaluated for it.</item>
/// <item><c>pln:monitor:breached:{p}</c> set: portfolios of partition p breached when last evaluated (each breach is alerted once).</item>
/// <item><c>pln:monitor:to-plan:{p}</c> hash portfolio → <see cref="PlanRequest"/> (JSON): automatic plans to consider.</item>
/// </list>
/// A pass's cursors, breaches and plan requests are committed together, and only for partitions the replica still
/// holds: a replica that lost a partition (it stalled past its membership) writes nothing for it.
/// </summary>
public sealed class MonitorShards(IConnectionMultiplexer redis)
{
    public static readonly RedisKey TicksKey = "pln:monitor:ticks";
    public static readonly RedisKey MembersKey = "pln:monitor:members";
    public static readonly RedisKey OwnersKey = "pln:monitor:owners";
    public static readonly RedisKey CursorsKey = "pln:monitor:cursors";
    public const string BreachedPrefix = "pln:monitor:breached:";
    public const string ToPlanPrefix = "pln:monitor:to-plan:";
    public const string TickChannel = "pln:monitor:tick";

    private const string EventField = "event";
    private const string TraceField = "traceparent";
    private const string InstrumentField = "instrument";

    // Appends a tick unless this event was appended before (a redelivery); returns its id, or false.
    private const string AppendScript = """
        if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 86400) == false then return false end
        local fields = {}
        for i = 2, #ARGV do table.insert(fields, ARGV[i]) end
        return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
        """;

    // Renews a membership, drops ended ones, returns the live members.
    private const string HeartbeatScript = """
        redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
        return redis.call('ZRANGE', KEYS[1], 0, -1)
        """;

    // Takes each partition whose holder is gone or is this replica; returns [p, cursor, …] for those taken. A partition
    // never held starts at 0-0: its first pass evaluates all its portfolios.
    private const string TakeScript = """
        local me, now = ARGV[1], tonumber(ARGV[2])
        local taken = {}
        for i = 3, #ARGV do
          local p = ARGV[i]
          local owner = redis.call('HGET', KEYS[1], p)
          local free = (not owner) or owner == me
          if not free then
            local ends = redis.call('ZSCORE', KEYS[3], owner)
            free = (not ends) or tonumber(ends) <= now
          end
          if free then
            redis.call('HSET', KEYS[1], p, me)
            local cursor = redis.call('HGET', KEYS[2], p)
            if not cursor then
              cursor = '0-0'
              redis.call('HSET', KEYS[2], p, cursor)
            end
            table.insert(taken, p)
            table.insert(taken, cursor)
          end
        end
        return taken
        """;

    private const string ReleaseScript = """
        for i = 2, #ARGV do
          if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
        end
        return 1
        """;

    // ARGV: me, tick, n, p1..pn, then (op, partition, portfolio, value) quadruples. Returns the partitions not held.
    private const string CommitScript = """
        local me, tick, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
        local held, lost = {}, {}
        for i = 4, 3 + n do
          local p = ARGV[i]
          if redis.call('HGET', KEYS[1], p) == me then
            held[p] = true
            if tick ~= '' then redis.call('HSET', KEYS[2], p, tick) end
          else
            table.insert(lost, p)
          end
        end
        local i = 4 + n
        while i <= #ARGV do
          local op, p, id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
          if held[p] then
            if op == 'b+' then redis.call('SADD', KEYS[3] .. p, id)
            elseif op == 'b-' then redis.call('SREM', KEYS[3] .. p, id)
            else redis.call('HSET', KEYS[4] .. p, id, ARGV[i + 3]) end
          end
          i = i + 4
        end
        return lost
        """;

    // Takes a plan request out if it is still the one read (a newer evaluation's stays).
    private const string DoneScript = """
        if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) return 1 end
        return 0
        """;

    private IDatabase Db => redis.GetDatabase();

    /// <summary>
    /// Appends a market event's changed instruments to the tick stream, once per event id (a redelivered event is not
    /// appended again), and wakes every replica. Returns the tick's id, or null when the event was appended before.
    /// </summary>
    public async Task<string?> AppendTickAsync(string eventId, IEnumerable<string> instruments, string traceParent, int ticksKept)
    {
        var values = new List<RedisValue> { ticksKept, EventField, eventId, TraceField, traceParent };
        foreach (var instrument in instruments.Distinct(StringComparer.Ordinal))
        {
            values.Add(InstrumentField);
            values.Add(instrument);
        }

        var result = await Db.ScriptEvaluateAsync(AppendScript, [TicksKey, "pln:monitor:tick-seen:" + eventId], [.. values]);
        if (result.IsNull)
        {
            return null;
        }

        await redis.GetSubscriber().PublishAsync(RedisChannel.Literal(TickChannel), result.ToString());
        return result.ToString();
    }

    /// <summary>Ticks after <paramref name="afterId"/>, oldest first.</summary>
    public async Task<IReadOnlyList<MarketTick>> ReadTicksAsync(string afterId, int count) =>
        (await Db.StreamRangeAsync(TicksKey, "(" + afterId, "+", count)).Select(ReadTick).ToArray();

    /// <summary>The oldest tick the stream still keeps, or null when it is empty.</summary>
    public async Task<string?> GetOldestTickIdAsync() =>
        (await Db.StreamRangeAsync(TicksKey, "-", "+", 1)) is [var first] ? first.Id.ToString() : null;

    private static MarketTick ReadTick(StreamEntry entry)
    {
        var instruments = new List<string>();
        var trace = string.Empty;
        foreach (var field in entry.Values)
        {
            if (field.Name == InstrumentField)
            {
                instruments.Add(field.Value.ToString());
            }
            else if (field.Name == TraceField)
            {
                trace = field.Value.ToString();
            }
        }

        return new MarketTick(entry.Id.ToString(), instruments, trace);
    }

    /// <summary>Renews this replica's membership until <paramref name="until"/>, drops the ended ones; returns the live members.</summary>
    public async Task<IReadOnlyList<string>> HeartbeatAsync(string me, DateTimeOffset now, DateTimeOffset until)
    {
        var result = await Db.ScriptEvaluateAsync(HeartbeatScript, [MembersKey], [me, until.ToUnixTimeMilliseconds(), now.ToUnixTimeMilliseconds()]);
        return ((RedisResult[])result!).Select(r => r.ToString()).ToArray();
    }

    /// <summary>Leaves the membership at once (a replica stopping), so the others take its partitions at their next heartbeat.</summary>
    public Task LeaveAsync(string me) => Db.SortedSetRemoveAsync(MembersKey, me);

    /// <summary>Takes the partitions whose holder has given them back or left; returns each one taken with its cursor.</summary>
    public async Task<IReadOnlyList<(int Partition, string Cursor)>> TakeAsync(string me, DateTimeOffset now, IReadOnlyList<int> partitions)
    {
        if (partitions.Count == 0)
        {
            return [];
        }

        var values = new List<RedisValue> { me, now.ToUnixTimeMilliseconds() };
        values.AddRange(partitions.Select(p => (RedisValue)p));
        var result = (RedisResult[])(await Db.ScriptEvaluateAsync(TakeScript, [OwnersKey, CursorsKey, MembersKey], [.. values]))!;
        return Enumerable.Range(0, result.Length / 2).Select(i => ((int)result[2 * i], result[(2 * i) + 1].ToString())).ToArray();
    }

    /// <summary>Gives partitions back (those this replica still holds).</summary>
    public async Task ReleaseAsync(string me, IReadOnlyList<int> partitions)
    {
        if (partitions.Count > 0)
        {
            await Db.ScriptEvaluateAsync(ReleaseScript, [OwnersKey], [me, .. partitions.Select(p => (RedisValue)p)]);
        }
    }

    /// <summary>The portfolios of a partition breached when last evaluated.</summary>
    public async Task<IReadOnlyList<string>> GetBreachedAsync(int partition) =>
        (await Db.SetMembersAsync(BreachedPrefix + partition.ToString(CultureInfo.InvariantCulture))).Select(v => v.ToString()).ToArray();

    /// <summary>The partitions' holders, as Redis has them (partition → replica).</summary>
    public async Task<IReadOnlyDictionary<int, string>> GetOwnersAsync() =>
        (await Db.HashGetAllAsync(OwnersKey)).ToDictionary(e => (int)e.Name, e => e.Value.ToString());

    /// <summary>
    /// Commits a pass: the partitions' cursor moves to <paramref name="tick"/> (none when empty) with the pass's breach
    /// changes and plan requests — only for the partitions this replica still holds. Returns those it no longer holds.
    /// </summary>
    public async Task<IReadOnlyList<int>> CommitAsync(string me, string tick, IReadOnlyCollection<int> partitions, IEnumerable<ShardChange> changes)
    {
        var values = new List<RedisValue> { me, tick, partitions.Count };
        values.AddRange(partitions.Select(p => (RedisValue)p));
        foreach (var change in changes)
        {
            var (op, value) = change switch
            {
                ShardChange.BreachRaised => ("b+", string.Empty),
                ShardChange.BreachCleared => ("b-", string.Empty),
                ShardChange.PlanWanted wanted => ("q", JsonSerializer.Serialize(wanted.Request)),
                _ => throw new ArgumentOutOfRangeException(nameof(changes)),
            };
            values.Add(op);
            values.Add(change.Partition);
            values.Add(change.PortfolioId);
            values.Add(value);
        }

        var lost = (RedisResult[])(await Db.ScriptEvaluateAsync(CommitScript, [OwnersKey, CursorsKey, BreachedPrefix, ToPlanPrefix], [.. values]))!;
        return lost.Select(r => (int)r).ToArray();
    }

    /// <summary>Those of <paramref name="partitions"/> that have plan requests (one pipelined round trip).</summary>
    public async Task<IReadOnlyList<int>> WithPlanRequestsAsync(IReadOnlyList<int> partitions)
    {
        var lengths = await Task.WhenAll(partitions.Select(p => Db.HashLengthAsync(ToPlanPrefix + p.ToString(CultureInfo.InvariantCulture))));
        return partitions.Where((_, i) => lengths[i] > 0).ToArray();
    }

    /// <summary>Up to <paramref name="count"/> plan requests of a partition, each with the text it was stored as.</summary>
    public async Task<IReadOnlyList<(string PortfolioId, PlanRequest? Request, string Raw)>> GetPlanRequestsAsync(int partition, int count)
    {
        var entries = new List<(string, PlanRequest?, string)>();
        await foreach (var entry in Db.HashScanAsync(ToPlanPrefix + partition.ToString(CultureInfo.InvariantCulture), pageSize: count))
        {
            PlanRequest? request;
            try
            {
                request = JsonSerializer.Deserialize<PlanRequest>(entry.Value.ToString());
            }
            catch (JsonException)
            {
                request = null;
            }

            entries.Add((entry.Name.ToString(), request, entry.Value.ToString()));
            if (entries.Count >= count)
            {
                break;
            }
        }

        return entries;
    }

    /// <summary>Takes a plan request out, unless a newer evaluation replaced it meanwhile.</summary>
    public Task PlanRequestDoneAsync(int partition, string portfolioId, string raw) =>
        Db.ScriptEvaluateAsync(DoneScript, [ToPlanPrefix + partition.ToString(CultureInfo.InvariantCulture)], [portfolioId, raw]);
}
