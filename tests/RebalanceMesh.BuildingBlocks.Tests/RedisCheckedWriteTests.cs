using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;
using StackExchange.Redis;

namespace RebalanceMesh.BuildingBlocks.Tests;

/// <summary>
/// <see cref="RedisCheckedWrite"/> against a real redis-server: each condition held and not held (a condition that does
/// not hold writes nothing, wherever it stands), each write as Redis stores it, and racing writers.
/// </summary>
public sealed class RedisCheckedWriteTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    private ConnectionMultiplexer _connection = null!;

    private IDatabase Db => _connection.GetDatabase();

    public async Task InitializeAsync() => _connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);

    public async Task DisposeAsync() => await _connection.DisposeAsync();

    private static string Key(string name) => $"tests:checked:{name}:{Guid.NewGuid():N}";

    [Fact]
    public async Task KeyNotExists_holds_only_while_the_key_is_absent()
    {
        var key = Key("absent");
        Assert.True(await new RedisCheckedWrite().KeyNotExists(key).StringSet(key, "first").ExecuteAsync(Db));
        Assert.False(await new RedisCheckedWrite().KeyNotExists(key).StringSet(key, "second").ExecuteAsync(Db));
        Assert.Equal("first", (string?)await Db.StringGetAsync(key));
    }

    [Fact]
    public async Task StringEqual_compares_binary_values_exactly()
    {
        var key = Key("equal");
        byte[] stored = [0, 1, 2, 0xFF, 0, 0x80];
        await Db.StringSetAsync(key, stored);

        byte[] differsInLastByte = [0, 1, 2, 0xFF, 0, 0x81];
        Assert.False(await new RedisCheckedWrite().StringEqual(key, differsInLastByte).StringSet(key, "changed").ExecuteAsync(Db));
        Assert.False(await new RedisCheckedWrite().StringEqual(key, stored[..5]).StringSet(key, "changed").ExecuteAsync(Db)); // a prefix is not equal
        Assert.Equal(stored, (byte[]?)await Db.StringGetAsync(key));

        Assert.True(await new RedisCheckedWrite().StringEqual(key, stored).StringSet(key, "changed").ExecuteAsync(Db));
        Assert.Equal("changed", (string?)await Db.StringGetAsync(key));
    }

    [Fact]
    public async Task StringEqual_to_null_means_the_key_is_absent_as_in_StackExchange_Redis()
    {
        var key = Key("equal-null");
        Assert.True(await new RedisCheckedWrite().StringEqual(key, RedisValue.Null).StringSet(key, "created").ExecuteAsync(Db));
        Assert.False(await new RedisCheckedWrite().StringEqual(key, RedisValue.Null).StringSet(key, "again").ExecuteAsync(Db));
        Assert.Equal("created", (string?)await Db.StringGetAsync(key));

        // An empty string is a value, not absence.
        var empty = Key("equal-empty");
        Assert.False(await new RedisCheckedWrite().StringEqual(empty, RedisValue.EmptyString).StringSet(empty, "x").ExecuteAsync(Db));
        await Db.StringSetAsync(empty, RedisValue.EmptyString);
        Assert.True(await new RedisCheckedWrite().StringEqual(empty, RedisValue.EmptyString).StringSet(empty, "x").ExecuteAsync(Db));
    }

    [Fact]
    public async Task Hash_conditions_compare_one_field()
    {
        var key = Key("hash");
        Assert.True(await new RedisCheckedWrite().HashNotExists(key, "version").HashSet(key, new HashEntry("version", 1), new HashEntry("data", "a")).ExecuteAsync(Db));
        Assert.False(await new RedisCheckedWrite().HashNotExists(key, "version").HashSet(key, new HashEntry("data", "b")).ExecuteAsync(Db));
        Assert.False(await new RedisCheckedWrite().HashEqual(key, "version", 2).HashSet(key, new HashEntry("data", "b")).ExecuteAsync(Db));
        Assert.True(await new RedisCheckedWrite().HashEqual(key, "version", 1).HashSet(key, new HashEntry("version", 2), new HashEntry("data", "c")).ExecuteAsync(Db));
        Assert.Equal("c", (string?)await Db.HashGetAsync(key, "data"));
        Assert.Equal(2, (long)await Db.HashGetAsync(key, "version"));

        // Null: the field is absent (the hash has "version", not "other").
        Assert.False(await new RedisCheckedWrite().HashEqual(key, "version", RedisValue.Null).HashSet(key, new HashEntry("data", "d")).ExecuteAsync(Db));
        Assert.True(await new RedisCheckedWrite().HashEqual(key, "other", RedisValue.Null).HashSet(key, new HashEntry("other", "e")).ExecuteAsync(Db));
        Assert.Equal("c", (string?)await Db.HashGetAsync(key, "data"));
        Assert.Equal("e", (string?)await Db.HashGetAsync(key, "other"));
    }

    [Fact]
    public async Task Set_and_sorted_set_conditions_hold_as_named()
    {
        var set = Key("set");
        await Db.SetAddAsync(set, "fill-1");
        Assert.False(await new RedisCheckedWrite().SetNotContains(set, "fill-1").SetAdd(set, "fill-2").ExecuteAsync(Db));
        Assert.True(await new RedisCheckedWrite().SetNotContains(set, "fill-2").SetAdd(set, "fill-2", "fill-3").ExecuteAsync(Db));
        Assert.Equal(["fill-1", "fill-2", "fill-3"], (await Db.SetMembersAsync(set)).Select(v => v.ToString()).Order());
        Assert.True(await new RedisCheckedWrite().SetRemove(set, "fill-1", "fill-3").ExecuteAsync(Db));
        Assert.Equal(["fill-2"], (await Db.SetMembersAsync(set)).Select(v => v.ToString()));

        var sorted = Key("zset");
        Assert.True(await new RedisCheckedWrite().SortedSetLengthEqual(sorted, 0).SortedSetAdd(sorted, "p1", 10).ExecuteAsync(Db)); // absent: length 0
        Assert.False(await new RedisCheckedWrite().SortedSetLengthEqual(sorted, 0).SortedSetAdd(sorted, "p2", 20).ExecuteAsync(Db));
        Assert.True(await new RedisCheckedWrite().SortedSetLengthEqual(sorted, 1).SortedSetAdd(sorted, "p2", 20.5).ExecuteAsync(Db));
        Assert.Equal(20.5, await Db.SortedSetScoreAsync(sorted, "p2"));

        // NX keeps an existing member's score and adds a new one.
        Assert.True(await new RedisCheckedWrite().SortedSetAdd(sorted, "p1", 99, onlyIfNew: true).SortedSetAdd(sorted, "p3", 30, onlyIfNew: true).ExecuteAsync(Db));
        Assert.Equal(10, await Db.SortedSetScoreAsync(sorted, "p1"));
        Assert.Equal(30, await Db.SortedSetScoreAsync(sorted, "p3"));
    }

    [Fact]
    public async Task A_condition_that_does_not_hold_anywhere_in_the_list_writes_nothing()
    {
        var taken = Key("taken");
        await Db.StringSetAsync(taken, "x");
        var (a, b, list, hash) = (Key("a"), Key("b"), Key("list"), Key("h"));

        var write = new RedisCheckedWrite()
            .KeyNotExists(a)
            .KeyNotExists(b)
            .KeyNotExists(taken) // the last condition fails
            .StringSet(a, "1")
            .ListRightPush(list, "r1", "r2")
            .HashSet(hash, new HashEntry("f", "v"))
            .StringSet(b, "2");

        Assert.False(await write.ExecuteAsync(Db));
        Assert.False(await Db.KeyExistsAsync(a));
        Assert.False(await Db.KeyExistsAsync(b));
        Assert.False(await Db.KeyExistsAsync(list));
        Assert.False(await Db.KeyExistsAsync(hash));
    }

    [Fact]
    public async Task Writes_land_as_written_expiry_list_order_and_stream_trimming()
    {
        var (withTtl, list, stream) = (Key("ttl"), Key("list"), Key("stream"));
        Assert.True(await new RedisCheckedWrite()
            .StringSet(withTtl, "leased", TimeSpan.FromSeconds(30))
            .ListRightPush(list, "first", "second")
            .ListRightPush(list, "third")
            .ExecuteAsync(Db));
        var ttl = await Db.KeyTimeToLiveAsync(withTtl);
        Assert.NotNull(ttl);
        Assert.InRange(ttl!.Value.TotalSeconds, 25, 30);
        Assert.Equal(["first", "second", "third"], (await Db.ListRangeAsync(list)).Select(v => v.ToString()));

        for (var i = 0; i < 300; i++)
        {
            await new RedisCheckedWrite().StreamAdd(stream, [new NameValueEntry("n", i), new NameValueEntry("what", "x")], maxLength: 100).ExecuteAsync(Db);
        }

        var entries = await Db.StreamRangeAsync(stream);
        Assert.InRange(entries.Length, 100, 299); // MAXLEN ~ trims by whole nodes: about 100, never all 300
        Assert.Equal(299, (int)entries[^1]["n"]);
        Assert.Equal("x", entries[^1]["what"].ToString());
    }

    [Fact]
    public async Task A_long_variadic_write_is_split_and_keeps_every_value_in_order()
    {
        var list = Key("long");
        var values = Enumerable.Range(0, (RedisCheckedWrite.MaxValuesPerCommand * 2) + 7).Select(i => (RedisValue)i).ToArray();
        Assert.True(await new RedisCheckedWrite().KeyNotExists(list).ListRightPush(list, values).ExecuteAsync(Db));
        Assert.Equal(values.Select(v => (int)v), (await Db.ListRangeAsync(list)).Select(v => (int)v));

        // Scored members too (two values each): large integer scores land exactly.
        var ranked = Key("ranked");
        var entries = Enumerable.Range(0, RedisCheckedWrite.MaxValuesPerCommand + 3).Select(i => new SortedSetEntry($"m{i}", 1_800_000_000_000_000d + (3 * i))).ToArray();
        Assert.True(await new RedisCheckedWrite().SortedSetAdd(ranked, entries).ExecuteAsync(Db));
        Assert.Equal(entries.Select(e => (e.Element.ToString(), e.Score)), (await Db.SortedSetRangeByRankWithScoresAsync(ranked)).Select(e => (e.Element.ToString(), e.Score)));
    }

    [Fact]
    public async Task Of_twenty_writers_racing_on_one_version_exactly_one_commits()
    {
        var key = Key("race");
        var log = Key("race-log");
        await Db.HashSetAsync(key, "version", 1);
        await using var other = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);

        var writers = Enumerable.Range(0, 20).Select(i =>
            new RedisCheckedWrite()
                .HashEqual(key, "version", 1)
                .HashSet(key, new HashEntry("version", 2), new HashEntry("winner", i))
                .ListRightPush(log, i)
                .ExecuteAsync((i % 2 == 0 ? _connection : other).GetDatabase()));
        var outcomes = await Task.WhenAll(writers);

        Assert.Equal(1, outcomes.Count(o => o));
        var winner = Array.IndexOf(outcomes, true);
        Assert.Equal(winner, (int)await Db.HashGetAsync(key, "winner"));
        Assert.Equal([winner], (await Db.ListRangeAsync(log)).Select(v => (int)v));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // no condition: sent as MULTI/EXEC instead of the script, with the same outcome
    public async Task A_write_that_fails_on_the_server_raises_its_error_after_the_writes_before_it(bool withCondition)
    {
        var (before, wrongType, after) = (Key("before"), Key("wrong-type"), Key("after"));
        await Db.StringSetAsync(wrongType, "a string, not a list");
        var write = withCondition ? new RedisCheckedWrite().KeyNotExists(before) : new RedisCheckedWrite();
        write.StringSet(before, "1").ListRightPush(wrongType, "x").StringSet(after, "2");

        var error = await Assert.ThrowsAsync<RedisServerException>(() => write.ExecuteAsync(Db));

        Assert.Contains("WRONGTYPE", error.Message, StringComparison.Ordinal);
        Assert.Equal("1", (string?)await Db.StringGetAsync(before));
        Assert.Equal("a string, not a list", (string?)await Db.StringGetAsync(wrongType));
        // The script stops at the error; MULTI/EXEC runs every queued command.
        Assert.Equal(withCondition ? null : "2", (string?)await Db.StringGetAsync(after));
    }

    [Fact]
    public async Task A_write_without_conditions_always_applies_and_an_empty_one_does_nothing()
    {
        var key = Key("plain");
        Assert.True(await new RedisCheckedWrite().Command("INCRBY", key, 5).Command("INCRBY", key, 2).ExecuteAsync(Db));
        Assert.Equal(7, (long)await Db.StringGetAsync(key));
        Assert.True(await new RedisCheckedWrite().ExecuteAsync(Db));
    }
}
