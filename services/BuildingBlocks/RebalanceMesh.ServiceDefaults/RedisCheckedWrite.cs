using System.Globalization;
using StackExchange.Redis;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// An optimistic write to Redis: conditions on what was read, and the writes that follow from it, checked and applied
/// atomically on the server by one Lua script (writes without conditions: one MULTI/EXEC) — one round trip, all or
/// nothing (a condition that does not hold writes nothing). It replaces StackExchange.Redis' conditional transactions (<c>ITransaction.AddCondition</c>): those send
/// WATCH and each condition's read, then hold the connection's writer until the replies are back to choose EXEC or
/// UNWATCH, so every other command of the process waits a round trip per transaction (a dotnet-trace of planning booking
/// reports found its writer parked there). Conditions mean what StackExchange.Redis' <c>Condition</c> of the same name
/// means, a null value included ("absent").
/// </summary>
/// <remarks>
/// Writes are Redis commands on one key each, run in the order added after every condition held. A write that fails on
/// the server (a key of the wrong type: a bug) raises an error after the writes before it were applied (with
/// conditions, the script stops there; without, MULTI/EXEC runs the writes after it too). Variadic writes are split
/// into commands of at most <see cref="MaxValuesPerCommand"/> values (Lua's unpack has a stack limit).
/// <para>
/// A string condition sends the value read whole. Comparing by digest instead (<c>redis.sha1hex</c>) was tried and
/// measured: it saves the bytes but costs Redis more CPU than they do (about 57 against 48 µs for a plan's booking,
/// redis-benchmark on this script), and Redis is the shared, single-threaded part. What a script costs is mostly its
/// arguments (each becomes a Lua string): a 4 kB value adds about 13 µs, an empty script takes 4 µs. Writes without
/// conditions therefore go as MULTI/EXEC, which Redis runs without the Lua strings: an execution journal entry with
/// eight 1 kB reports into the outbox took Redis 14 µs as a transaction against 43 µs as the script.
/// </para>
/// </remarks>
public sealed class RedisCheckedWrite
{
    /// <summary>The most values one command of the script carries; longer writes become several commands.</summary>
    public const int MaxValuesPerCommand = 1000;

    // ARGV: the number of conditions, each as (kind, key index, operands…); then the number of writes, each as
    // (command, key index, argument count, arguments…).
    private const string Script = """
        local a = 1
        local function nextArg() local v = ARGV[a]; a = a + 1; return v end
        for _ = 1, tonumber(nextArg()) do
          local kind = nextArg()
          local key = KEYS[tonumber(nextArg())]
          local held
          if kind == 'absent' then
            held = redis.call('EXISTS', key) == 0
          elseif kind == 'equal' then
            local expected = nextArg()
            held = redis.call('GET', key) == expected
          elseif kind == 'field-absent' then
            held = redis.call('HEXISTS', key, nextArg()) == 0
          elseif kind == 'field-equal' then
            local field = nextArg()
            local expected = nextArg()
            held = redis.call('HGET', key, field) == expected
          elseif kind == 'not-member' then
            held = redis.call('SISMEMBER', key, nextArg()) == 0
          elseif kind == 'zcard' then
            held = redis.call('ZCARD', key) == tonumber(nextArg())
          else
            return redis.error_reply('unknown condition ' .. tostring(kind))
          end
          if not held then return 0 end
        end
        for _ = 1, tonumber(nextArg()) do
          local command = nextArg()
          local key = KEYS[tonumber(nextArg())]
          local count = tonumber(nextArg())
          redis.call(command, key, unpack(ARGV, a, a + count - 1))
          a = a + count
        end
        return 1
        """;

    private readonly List<RedisKey> _keys = [];
    private readonly Dictionary<RedisKey, int> _keyIndex = [];
    private readonly List<RedisValue> _conditions = [];
    private readonly List<RedisValue> _writes = [];
    private int _conditionCount;
    private int _writeCount;

    /// <summary>Holds when <paramref name="key"/> does not exist.</summary>
    public RedisCheckedWrite KeyNotExists(RedisKey key) => Condition("absent", key);

    /// <summary>Holds when the string at <paramref name="key"/> is exactly <paramref name="value"/> (null: the key does not exist).</summary>
    public RedisCheckedWrite StringEqual(RedisKey key, RedisValue value) =>
        value.IsNull ? KeyNotExists(key) : Condition("equal", key, value);

    /// <summary>Holds when the hash field is exactly <paramref name="value"/> (null: the field does not exist).</summary>
    public RedisCheckedWrite HashEqual(RedisKey key, RedisValue field, RedisValue value) =>
        value.IsNull ? HashNotExists(key, field) : Condition("field-equal", key, field, value);

    /// <summary>Holds when the hash has no field <paramref name="field"/>.</summary>
    public RedisCheckedWrite HashNotExists(RedisKey key, RedisValue field) => Condition("field-absent", key, field);

    /// <summary>Holds when the set does not contain <paramref name="member"/>.</summary>
    public RedisCheckedWrite SetNotContains(RedisKey key, RedisValue member) => Condition("not-member", key, member);

    /// <summary>Holds when the sorted set has exactly <paramref name="length"/> members (0: also when it does not exist).</summary>
    public RedisCheckedWrite SortedSetLengthEqual(RedisKey key, long length) => Condition("zcard", key, length);

    /// <summary>SET, with an expiry when given.</summary>
    public RedisCheckedWrite StringSet(RedisKey key, RedisValue value, TimeSpan? expiry = null) =>
        expiry is { } ttl
            ? Command("SET", key, value, "PX", (long)Math.Ceiling(ttl.TotalMilliseconds))
            : Command("SET", key, value);

    /// <summary>HSET of every entry.</summary>
    public RedisCheckedWrite HashSet(RedisKey key, params HashEntry[] entries)
    {
        foreach (var chunk in entries.Chunk(MaxValuesPerCommand / 2))
        {
            Command("HSET", key, [.. chunk.SelectMany(e => new[] { e.Name, e.Value })]);
        }

        return this;
    }

    /// <summary>SADD of every member.</summary>
    public RedisCheckedWrite SetAdd(RedisKey key, params RedisValue[] members) => Variadic("SADD", key, members);

    /// <summary>SREM of every member.</summary>
    public RedisCheckedWrite SetRemove(RedisKey key, params RedisValue[] members) => Variadic("SREM", key, members);

    /// <summary>RPUSH of every value, in order.</summary>
    public RedisCheckedWrite ListRightPush(RedisKey key, params RedisValue[] values) => Variadic("RPUSH", key, values);

    /// <summary>ZADD of one member; with <paramref name="onlyIfNew"/> (NX) an existing member keeps its score.</summary>
    public RedisCheckedWrite SortedSetAdd(RedisKey key, RedisValue member, double score, bool onlyIfNew = false) =>
        onlyIfNew
            ? Command("ZADD", key, "NX", score.ToString("R", CultureInfo.InvariantCulture), member)
            : Command("ZADD", key, score.ToString("R", CultureInfo.InvariantCulture), member);

    /// <summary>ZADD of every entry (each member at its score).</summary>
    public RedisCheckedWrite SortedSetAdd(RedisKey key, params SortedSetEntry[] entries)
    {
        foreach (var chunk in entries.Chunk(MaxValuesPerCommand / 2))
        {
            Command("ZADD", key, [.. chunk.SelectMany(e => new RedisValue[] { e.Score.ToString("R", CultureInfo.InvariantCulture), e.Element })]);
        }

        return this;
    }

    /// <summary>XADD of one entry with an auto id, trimming the stream to about <paramref name="maxLength"/> entries.</summary>
    public RedisCheckedWrite StreamAdd(RedisKey key, NameValueEntry[] fields, long maxLength) =>
        Command("XADD", key, ["MAXLEN", "~", maxLength, "*", .. fields.SelectMany(f => new[] { f.Name, f.Value })]);

    /// <summary>Any Redis command on one key: <paramref name="name"/> <paramref name="key"/> <paramref name="arguments"/>.</summary>
    public RedisCheckedWrite Command(string name, RedisKey key, params RedisValue[] arguments)
    {
        if (arguments.Length > MaxValuesPerCommand * 2)
        {
            throw new ArgumentException($"A command of the script carries at most {MaxValuesPerCommand * 2} arguments; split it.", nameof(arguments));
        }

        _writes.Add(name);
        _writes.Add(IndexOf(key));
        _writes.Add(arguments.Length);
        _writes.AddRange(arguments);
        _writeCount++;
        return this;
    }

    /// <summary>
    /// Checks the conditions and, when every one holds, applies the writes — atomically, in one round trip. False when a
    /// condition did not hold (nothing was written). Writes without conditions go as a MULTI/EXEC transaction instead of
    /// the script: as atomic, and Redis runs them without turning each argument into a Lua string first (an execution
    /// report's outbox entry with its journal: about a third of the script's cost, see the remarks).
    /// </summary>
    public async Task<bool> ExecuteAsync(IDatabase db)
    {
        if (_conditionCount == 0)
        {
            return await ExecuteUnconditionedAsync(db);
        }

        var args = new RedisValue[_conditions.Count + _writes.Count + 2];
        args[0] = _conditionCount;
        _conditions.CopyTo(args, 1);
        args[_conditions.Count + 1] = _writeCount;
        _writes.CopyTo(args, _conditions.Count + 2);
        return (long)await db.ScriptEvaluateAsync(Script, [.. _keys], args) == 1;
    }

    /// <summary>The writes as one MULTI/EXEC (no WATCH: nothing to check, so nothing waits for a reply before EXEC).</summary>
    private async Task<bool> ExecuteUnconditionedAsync(IDatabase db)
    {
        if (_writeCount == 0)
        {
            return true;
        }

        var transaction = db.CreateTransaction();
        var results = new Task<RedisResult>[_writeCount];
        var at = 0;
        for (var w = 0; w < _writeCount; w++)
        {
            var name = (string)_writes[at]!;
            var key = _keys[(int)_writes[at + 1] - 1];
            var count = (int)_writes[at + 2];
            var arguments = new object[count + 1];
            arguments[0] = key;
            for (var i = 0; i < count; i++)
            {
                arguments[i + 1] = _writes[at + 3 + i];
            }

            results[w] = transaction.ExecuteAsync(name, arguments);
            at += 3 + count;
        }

        var committed = await transaction.ExecuteAsync();
        await Task.WhenAll(results); // a write that failed on the server raises its error, as in the script
        return committed;
    }

    private RedisCheckedWrite Variadic(string name, RedisKey key, RedisValue[] values)
    {
        foreach (var chunk in values.Chunk(MaxValuesPerCommand))
        {
            Command(name, key, chunk);
        }

        return this;
    }

    private RedisCheckedWrite Condition(string kind, RedisKey key, params RedisValue[] operands)
    {
        _conditions.Add(kind);
        _conditions.Add(IndexOf(key));
        _conditions.AddRange(operands);
        _conditionCount++;
        return this;
    }

    private int IndexOf(RedisKey key)
    {
        if (!_keyIndex.TryGetValue(key, out var index))
        {
            _keys.Add(key);
            index = _keys.Count; // Lua's KEYS is 1-based
            _keyIndex[key] = index;
        }

        return index;
    }
}
