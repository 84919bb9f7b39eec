using Google.Protobuf.WellKnownTypes;
using Google.Protobuf;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.ServiceDefaults;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>
/// Durable planning state in Redis. Keys (all under <c>pln:</c>):
/// <list type="bullet">
/// <item><c>pln:portfolio:{id}</c> hash {version, data}: the portfolio, updated only when the version matches.</item>
/// <item><c>pln:policy:{id}</c> the policy; <c>pln:policies</c> set of portfolios that have one.</item>
/// <item><c>pln:plan:{id}</c> the plan; <c>pln:plans:{portfolio}</c> sorted set of plan ids by creation time.</item>
/// <item><c>pln:idem:{portfolio}:{key}</c> plan id of a submission key; <c>pln:fills:{plan}</c> fill ids applied.</item>
/// <item><c>pln:halt</c> hash {halted, reason, changed_at}.</item>
/// <item><c>pln:batch:{key}</c> a submitted batch's record: the plans it stored.</item>
/// </list>
/// Every read-modify-write is a <see cref="RedisCheckedWrite"/> conditioned on what was read, retried on conflict.
/// </summary>
public sealed class PlanningStore(IConnectionMultiplexer redis, RedisBroadcast<Plan> planUpdates, TimeProvider time)
{
    /// <summary>Redis pub/sub channel on which every replica announces plan changes to its watchers.</summary>
    public const string PlanUpdatesChannel = "pln:plan-updates";

    private const int MaxAttempts = 20;

    private static RedisKey PortfolioKey(string id) => "pln:portfolio:" + id;

    private static RedisKey PolicyKey(string id) => "pln:policy:" + id;

    private static RedisKey PlanKey(string id) => "pln:plan:" + id;

    private static RedisKey PlanIndexKey(string portfolioId) => "pln:plans:" + portfolioId;

    private static RedisKey FillsKey(string planId) => "pln:fills:" + planId;

    private static RedisKey PortfolioEventsKey(string portfolioId) => "pln:portfolio-events:" + portfolioId;

    private static RedisKey IdempotencyKey(string portfolioId, string key) => $"pln:idem:{portfolioId}:{key}";

    private static readonly RedisKey PoliciesKey = "pln:policies";

    private static RedisKey BatchKey(string batchKey) => "pln:batch:" + batchKey;

    /// <summary>
    /// The book's change stream: every write of a portfolio or a policy appends (portfolio id, what changed, its new
    /// version) in the same transaction, so a monitor that follows it misses no change; trimmed to about
    /// <see cref="BookChangesKept"/> entries (a reader that fell further behind reloads the book).
    /// </summary>
    public static readonly RedisKey BookChangesKey = "pln:book-changes";

    public const int BookChangesKept = 100_000;
    private static readonly RedisKey HaltKey = "pln:halt";

    /// <summary>
    /// The outbox of plans.approved: approved plans stored but not yet published, scored by when they were stored (Unix
    /// ms). A plan enters it in the transaction that stores it and leaves it once published (<see cref="PlanSubmitter"/>),
    /// so a replica stopping between the two leaves it here for <see cref="PlanOutbox"/> to publish.
    /// </summary>
    public static readonly RedisKey OutboxKey = "pln:outbox";

    private static RedisKey OutboxClaimKey(string planId) => "pln:outbox-claim:" + planId;

    private IDatabase Db => redis.GetDatabase();

    public async Task<Portfolio?> GetPortfolioAsync(string id)
    {
        var data = await Db.HashGetAsync(PortfolioKey(id), "data");
        return data.IsNull ? null : Portfolio.Parser.ParseFrom((byte[])data!);
    }

    /// <summary>
    /// Creates or replaces a portfolio. <paramref name="expectedVersion"/>: 0 = must not exist, -1 = no check,
    /// otherwise the stored version must match. Returns the stored portfolio with its new version.
    /// </summary>
    public async Task<Portfolio> UpsertPortfolioAsync(Portfolio portfolio, long expectedVersion)
    {
        var key = PortfolioKey(portfolio.PortfolioId);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var current = await Db.HashGetAsync(key, "version");
            var currentVersion = current.IsNull ? 0L : (long)current;
            if (expectedVersion >= 0 && expectedVersion != currentVersion)
            {
                throw new DomainException(DomainErrorKind.Conflict,
                    expectedVersion == 0
                        ? $"Portfolio '{portfolio.PortfolioId}' exists already (version {currentVersion}); pass its version to replace it."
                        : $"Portfolio '{portfolio.PortfolioId}' is at version {currentVersion}, not {expectedVersion}.");
            }

            var stored = portfolio.Clone();
            stored.Version = currentVersion + 1;
            stored.UpdatedAt = time.GetUtcNow().ToTimestamp();
            var write = new RedisCheckedWrite()
                .HashEqual(key, "version", current)
                .HashSet(key, new HashEntry("version", stored.Version), new HashEntry("data", stored.ToByteArray()));
            AnnounceChange(write, portfolio.PortfolioId, BookChange.Portfolio, stored.Version);
            if (await write.ExecuteAsync(Db))
            {
                return stored;
            }
        }

        throw new DomainException(DomainErrorKind.Conflict, $"Portfolio '{portfolio.PortfolioId}' is changing too often; retry.");
    }

    public async Task<Policy?> GetPolicyAsync(string portfolioId)
    {
        var data = await Db.StringGetAsync(PolicyKey(portfolioId));
        return data.IsNull ? null : Policy.Parser.ParseFrom((byte[])data!);
    }

    /// <summary>The stored policy, or null when there is none or what is stored does not parse (a write repairs it).</summary>
    public async Task<Policy?> GetReadablePolicyAsync(string portfolioId) => Readable(await Db.StringGetAsync(PolicyKey(portfolioId)));

    private static Policy? Readable(RedisValue stored)
    {
        try
        {
            return stored.IsNull ? null : Policy.Parser.ParseFrom((byte[])stored!);
        }
        catch (InvalidProtocolBufferException)
        {
            return null;
        }
    }

    /// <summary>Stores a portfolio's policy as its next version (and announces it to the book).</summary>
    public async Task<Policy> SetPolicyAsync(Policy policy) => (await ChangePolicyAsync(policy.PortfolioId, _ => policy))!;

    /// <summary>
    /// Changes a portfolio's policy from the stored one, read once per attempt: <paramref name="change"/> gets the stored
    /// policy (null: none, or unreadable) and answers the next one, or null to leave it as it is; the next is stored as
    /// the next version, conditioned on the stored one being what <paramref name="change"/> saw (retried on conflict),
    /// and announced to the book. <paramref name="alongside"/> adds writes to the same transaction from what was read
    /// and what is written (a model link's index). Returns what was stored, or null when nothing was.
    /// </summary>
    public async Task<Policy?> ChangePolicyAsync(string portfolioId, Func<Policy?, Policy?> change, Action<RedisCheckedWrite, Policy?, Policy>? alongside = null)
    {
        var key = PolicyKey(portfolioId);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var current = await Db.StringGetAsync(key);
            var read = Readable(current);
            if (change(read) is not { } next)
            {
                return null;
            }

            var stored = next.Clone();
            stored.Version = VersionOf(current) + 1;
            var write = new RedisCheckedWrite()
                .StringEqual(key, current)
                .StringSet(key, stored.ToByteArray())
                .SetAdd(PoliciesKey, portfolioId);
            AnnounceChange(write, portfolioId, BookChange.Policy, stored.Version);
            alongside?.Invoke(write, read, stored);
            if (await write.ExecuteAsync(Db))
            {
                return stored;
            }
        }

        throw new DomainException(DomainErrorKind.Conflict, $"Policy of '{portfolioId}' is changing too often; retry.");
    }

    private static void AnnounceChange(RedisCheckedWrite write, string portfolioId, BookChange what, long version) =>
        write.StreamAdd(BookChangesKey, [new NameValueEntry("portfolio", portfolioId), new NameValueEntry("what", (int)what), new NameValueEntry("version", version)], BookChangesKept);

    /// <summary>The book's changes after <paramref name="afterId"/> (exclusive; "0" for all kept), oldest first, at most <paramref name="count"/>.</summary>
    public async Task<IReadOnlyList<BookChangeEntry>> ReadBookChangesAsync(string afterId, int count) =>
        (await Db.StreamRangeAsync(BookChangesKey, "(" + afterId, "+", count)).Select(ReadChange).ToArray();

    /// <summary>
    /// Where the change stream stands: the id of its newest change ("0-0" when there has been none), how many changes it
    /// has ever had appended, and how many it keeps (the difference is what trimming removed from its front). Atomic
    /// (XINFO STREAM), so a reader that loads the book after reading it misses nothing appended since.
    /// </summary>
    public async Task<(string LastId, long Added, long Length)> GetBookStreamPositionAsync()
    {
        RedisResult info;
        try
        {
            info = await Db.ExecuteAsync("XINFO", "STREAM", (string)BookChangesKey!);
        }
        catch (RedisServerException ex) when (ex.Message.Contains("no such key", StringComparison.OrdinalIgnoreCase))
        {
            return ("0-0", 0, 0);
        }

        var fields = info.ToDictionary();
        return (fields["last-generated-id"].ToString(), (long)fields["entries-added"], (long)fields["length"]);
    }

    /// <summary>One change as written; an entry that is not one (fields missing or not numbers) is <see cref="BookChange.Unreadable"/>.</summary>
    private static BookChangeEntry ReadChange(StreamEntry entry)
    {
        var portfolio = entry["portfolio"];
        return !portfolio.IsNullOrEmpty && entry["what"].TryParse(out int what) && System.Enum.IsDefined((BookChange)what) && entry["version"].TryParse(out long version)
            ? new BookChangeEntry(entry.Id.ToString(), portfolio.ToString(), (BookChange)what, version)
            : new BookChangeEntry(entry.Id.ToString(), portfolio.IsNullOrEmpty ? string.Empty : portfolio.ToString(), BookChange.Unreadable, 0);
    }

    /// <summary>Portfolios and their policies as stored, raw (a reader decides what an unreadable entry means), in the order asked.</summary>
    public async Task<IReadOnlyList<(RedisValue Portfolio, RedisValue Policy)>> GetBookEntriesAsync(IReadOnlyList<string> portfolioIds)
    {
        if (portfolioIds.Count == 0)
        {
            return [];
        }

        var batch = Db.CreateBatch();
        var portfolios = portfolioIds.Select(id => batch.HashGetAsync(PortfolioKey(id), "data")).ToArray();
        var policies = batch.StringGetAsync(portfolioIds.Select(PolicyKey).ToArray());
        batch.Execute();
        var policyValues = await policies;
        var result = new (RedisValue, RedisValue)[portfolioIds.Count];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = (await portfolios[i], policyValues[i]);
        }

        return result;
    }

    /// <summary>A stored policy's version; 0 when there is none, or when what is stored cannot be read (a write replaces it).</summary>
    private static long VersionOf(RedisValue stored)
    {
        try
        {
            return stored.IsNull ? 0 : Policy.Parser.ParseFrom((byte[])stored!).Version;
        }
        catch (InvalidProtocolBufferException)
        {
            return 0;
        }
    }

    /// <summary>Portfolios that have a policy, for the monitor.</summary>
    public async Task<IReadOnlyList<string>> GetPolicyPortfolioIdsAsync() =>
        (await Db.SetMembersAsync(PoliciesKey)).Select(v => v.ToString()).ToArray();

    public async Task<Plan?> GetPlanAsync(string planId)
    {
        var data = await Db.StringGetAsync(PlanKey(planId));
        return data.IsNull ? null : Plan.Parser.ParseFrom((byte[])data!);
    }

    /// <summary>Plans by id, in order (null where there is none), in one round trip.</summary>
    public async Task<IReadOnlyList<Plan?>> GetPlansAsync(IReadOnlyList<string> planIds)
    {
        if (planIds.Count == 0)
        {
            return [];
        }

        var values = await Db.StringGetAsync(planIds.Select(PlanKey).ToArray());
        return values.Select(v => v.IsNull ? null : Plan.Parser.ParseFrom((byte[])v!)).ToArray();
    }

    /// <summary>Stores a submitted batch's record (a batch submitted again under its key replaces it with the fuller one).</summary>
    public Task SetBatchAsync(BatchRecord record) => Db.StringSetAsync(BatchKey(record.BatchKey), record.ToByteArray());

    /// <summary>A submitted batch's record, or null.</summary>
    public async Task<BatchRecord?> GetBatchAsync(string batchKey)
    {
        var data = await Db.StringGetAsync(BatchKey(batchKey));
        return data.IsNull ? null : BatchRecord.Parser.ParseFrom((byte[])data!);
    }

    /// <summary>The plan id stored under a submission key, if any.</summary>
    public async Task<string?> GetIdempotentPlanIdAsync(string portfolioId, string key)
    {
        var value = await Db.StringGetAsync(IdempotencyKey(portfolioId, key));
        return value.IsNull ? null : value.ToString();
    }

    /// <summary>
    /// Stores a new plan and its idempotency key atomically — unless the key was taken meanwhile, or the portfolio's
    /// newest plan has not ended (one plan executes at a time per portfolio: the next is computed from what it leaves).
    /// </summary>
    public async Task<PlanCreation> CreatePlanAsync(Plan plan, string idempotencyKey)
    {
        var idem = IdempotencyKey(plan.PortfolioId, idempotencyKey);
        var index = PlanIndexKey(plan.PortfolioId);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            // The portfolio's newest plan, read with its bytes and the index's length: the transaction commits only if
            // neither changed, so two submissions cannot both find no plan in flight.
            var countTask = Db.SortedSetLengthAsync(index);
            var newestTask = Db.SortedSetRangeByRankAsync(index, -1, -1);
            var count = await countTask;
            var newest = await newestTask;
            var newestRaw = newest.Length > 0 ? await Db.StringGetAsync(PlanKey(newest[0]!)) : RedisValue.Null;
            if (!newestRaw.IsNull && Plan.Parser.ParseFrom((byte[])newestRaw!) is { } current && !current.Status.IsFinal())
            {
                return PlanCreation.InFlight(current);
            }

            var write = new RedisCheckedWrite()
                .KeyNotExists(idem)
                .SortedSetLengthEqual(index, count);
            if (newest.Length > 0)
            {
                write.StringEqual(PlanKey(newest[0]!), newestRaw);
            }

            write.StringSet(idem, plan.PlanId, TimeSpan.FromDays(7))
                .StringSet(PlanKey(plan.PlanId), plan.ToByteArray())
                .SortedSetAdd(index, plan.PlanId, plan.CreatedAt.ToDateTimeOffset().ToUnixTimeMilliseconds());
            if (plan.Status == PlanStatus.Approved)
            {
                write.SortedSetAdd(OutboxKey, plan.PlanId, time.GetUtcNow().ToUnixTimeMilliseconds());
            }

            if (await write.ExecuteAsync(Db))
            {
                await AnnounceAsync(plan);
                return PlanCreation.Created;
            }

            if (await Db.KeyExistsAsync(idem))
            {
                return PlanCreation.KeyTaken;
            }
        }

        throw new DomainException(DomainErrorKind.Conflict, $"Plans of portfolio '{plan.PortfolioId}' are changing too often; retry.");
    }

    /// <summary>Takes a plan out of the outbox: it was published, or needs publishing no more.</summary>
    public Task ClearOutboxAsync(string planId) => Db.SortedSetRemoveAsync(OutboxKey, planId);

    /// <summary>Plans in the outbox stored before <paramref name="storedBefore"/>, oldest first, at most <paramref name="count"/>.</summary>
    public async Task<string[]> OutboxDueAsync(DateTimeOffset storedBefore, int count) =>
        [.. (await Db.SortedSetRangeByScoreAsync(OutboxKey, double.NegativeInfinity, storedBefore.ToUnixTimeMilliseconds(), take: count)).Select(v => v.ToString())];

    /// <summary>Claims a plan of the outbox for <paramref name="lease"/>: false when another replica holds it.</summary>
    public Task<bool> ClaimOutboxAsync(string planId, string owner, TimeSpan lease) =>
        Db.StringSetAsync(OutboxClaimKey(planId), owner, lease, When.NotExists);

    /// <summary>Applies <paramref name="change"/> to a stored plan (optimistically, retried). Returns the plan after the change.</summary>
    public async Task<Plan> UpdatePlanAsync(string planId, Action<Plan> change)
    {
        var key = PlanKey(planId);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var current = await Db.StringGetAsync(key);
            if (current.IsNull)
            {
                throw DomainException.NotFound($"Plan '{planId}'");
            }

            var plan = Plan.Parser.ParseFrom((byte[])current!);
            change(plan);
            plan.UpdatedAt = time.GetUtcNow().ToTimestamp();
            var write = new RedisCheckedWrite()
                .StringEqual(key, current)
                .StringSet(key, plan.ToByteArray());
            if (await write.ExecuteAsync(Db))
            {
                await AnnounceAsync(plan);
                return plan;
            }
        }

        throw new DomainException(DomainErrorKind.Conflict, $"Plan '{planId}' is changing too often; retry.");
    }

    /// <summary>
    /// Applies a run of execution reports to one plan and its portfolio in one transaction, conditioned on what was read
    /// (retried on a conflict): <paramref name="change"/> gets the plan and the portfolio as stored (null when there is
    /// none: a report that needs it fails with NotFound) and which of
    /// <paramref name="fillIds"/> were applied before, changes the plan in place and says what it did; the fills it
    /// applied are recorded with the change, so each is applied exactly once. Returns the plan as stored after, or null
    /// when the plan is unknown. The caller announces the plans it changed (<see cref="AnnouncePlansAsync"/>), a batch's
    /// in one publish.
    /// </summary>
    /// <param name="portfolioId">The portfolio the reports name, read together with the plan (the plan's own is used when they differ).</param>
    /// <param name="change">Called again on each retry with what was read then: it must depend on nothing else.</param>
    public async Task<Plan?> ApplyToPlanAsync(string planId, string portfolioId, IReadOnlyList<string> fillIds, Func<Plan, Portfolio?, IReadOnlySet<string>, PlanReportChange> change)
    {
        var fillsKey = FillsKey(planId);
        var ids = fillIds.Distinct(StringComparer.Ordinal).Select(id => (RedisValue)id).ToArray();
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            // The three reads go out together.
            var appliedTask = ids.Length == 0 ? Task.FromResult(Array.Empty<bool>()) : Db.SetContainsAsync(fillsKey, ids);
            var planTask = Db.StringGetAsync(PlanKey(planId));
            var portfolioTask = portfolioId.Length > 0 ? Db.HashGetAsync(PortfolioKey(portfolioId), "data") : Task.FromResult(RedisValue.Null);
            var planRaw = await planTask;
            var appliedFlags = await appliedTask;
            var portfolioRaw = await portfolioTask;
            if (planRaw.IsNull)
            {
                return null;
            }

            var plan = Plan.Parser.ParseFrom((byte[])planRaw!);
            if (plan.PortfolioId != portfolioId)
            {
                portfolioRaw = await Db.HashGetAsync(PortfolioKey(plan.PortfolioId), "data");
            }

            var portfolio = portfolioRaw.IsNull ? null : Portfolio.Parser.ParseFrom((byte[])portfolioRaw!);
            var appliedBefore = ids.Where((_, i) => appliedFlags[i]).Select(id => id.ToString()).ToHashSet(StringComparer.Ordinal);
            var outcome = change(plan, portfolio, appliedBefore);
            if (!outcome.Changed)
            {
                return plan;
            }

            var portfolioKey = PortfolioKey(plan.PortfolioId);
            var now = time.GetUtcNow().ToTimestamp();
            plan.UpdatedAt = now;
            var write = new RedisCheckedWrite().StringEqual(PlanKey(planId), planRaw);
            foreach (var fillId in outcome.AppliedFills)
            {
                write.SetNotContains(fillsKey, fillId);
            }

            if (outcome.AppliedFills.Count > 0)
            {
                write.SetAdd(fillsKey, [.. outcome.AppliedFills.Select(id => (RedisValue)id)]);
            }

            if (outcome.Portfolio is { } updated)
            {
                if (portfolio is null)
                {
                    throw new InvalidOperationException("A portfolio cannot change when there is none.");
                }

                updated.Version = portfolio.Version + 1;
                updated.UpdatedAt = now;
                write.HashEqual(portfolioKey, "version", portfolio.Version)
                    .HashSet(portfolioKey, new HashEntry("version", updated.Version), new HashEntry("data", updated.ToByteArray()));
                AnnounceChange(write, plan.PortfolioId, BookChange.Portfolio, updated.Version);
            }

            write.StringSet(PlanKey(planId), plan.ToByteArray());
            if (await write.ExecuteAsync(Db))
            {
                return plan;
            }
        }

        throw new DomainException(DomainErrorKind.Conflict, $"Plan '{planId}' is changing too often; retry.");
    }

    /// <summary>Announces changed plans to every replica's watchers, in few publishes.</summary>
    public Task AnnouncePlansAsync(IReadOnlyCollection<Plan> plans) => plans.Count == 0 ? Task.CompletedTask : planUpdates.PublishAsync(plans);

    /// <summary>
    /// Applies an event that changes a portfolio outside any plan (a lending venue's liquidation) once per event id:
    /// false when it was applied before. Optimistic on the portfolio's version, like fills.
    /// </summary>
    public async Task<bool> ApplyPortfolioEventAsync(string portfolioId, string eventId, Func<Portfolio, Portfolio> change)
    {
        var key = PortfolioKey(portfolioId);
        for (var attempt = 0; attempt < MaxAttempts; attempt++)
        {
            if (await Db.SetContainsAsync(PortfolioEventsKey(portfolioId), eventId))
            {
                return false;
            }

            var data = await Db.HashGetAsync(key, "data");
            if (data.IsNull)
            {
                throw DomainException.NotFound($"Portfolio '{portfolioId}'");
            }

            var portfolio = Portfolio.Parser.ParseFrom((byte[])data!);
            var updated = change(portfolio);
            updated.Version = portfolio.Version + 1;
            updated.UpdatedAt = time.GetUtcNow().ToTimestamp();
            var write = new RedisCheckedWrite()
                .SetNotContains(PortfolioEventsKey(portfolioId), eventId)
                .HashEqual(key, "version", portfolio.Version)
                .SetAdd(PortfolioEventsKey(portfolioId), eventId)
                .HashSet(key, new HashEntry("version", updated.Version), new HashEntry("data", updated.ToByteArray()));
            AnnounceChange(write, portfolioId, BookChange.Portfolio, updated.Version);
            if (await write.ExecuteAsync(Db))
            {
                return true;
            }
        }

        throw new DomainException(DomainErrorKind.Conflict, $"Portfolio '{portfolioId}' is changing too often; retry.");
    }

    /// <summary>A page of a portfolio's plans, newest first. The page token is the offset.</summary>
    public async Task<(IReadOnlyList<Plan> Plans, int? Next)> ListPlansAsync(string portfolioId, int offset, int pageSize)
    {
        var ids = await Db.SortedSetRangeByRankAsync(PlanIndexKey(portfolioId), offset, offset + pageSize, Order.Descending);
        var page = ids.Take(pageSize).ToArray();
        var values = page.Length == 0 ? [] : await Db.StringGetAsync(page.Select(id => PlanKey(id.ToString())).ToArray());
        var plans = values.Where(v => !v.IsNull).Select(v => Plan.Parser.ParseFrom((byte[])v!)).ToArray();
        return (plans, ids.Length > pageSize ? offset + pageSize : null);
    }

    public async Task<(bool Halted, string Reason, DateTimeOffset ChangedAt)> GetHaltAsync()
    {
        var entries = (await Db.HashGetAllAsync(HaltKey)).ToDictionary(e => e.Name.ToString(), e => e.Value);
        var halted = entries.TryGetValue("halted", out var h) && h == "1";
        var reason = entries.TryGetValue("reason", out var r) ? r.ToString() : string.Empty;
        var changed = entries.TryGetValue("changed_at", out var c) && long.TryParse(c.ToString(), out var ms) ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : DateTimeOffset.UnixEpoch;
        return (halted, reason, changed);
    }

    public async Task<DateTimeOffset> SetHaltAsync(bool halted, string reason)
    {
        var now = time.GetUtcNow();
        await Db.HashSetAsync(HaltKey, [new HashEntry("halted", halted ? "1" : "0"), new HashEntry("reason", reason), new HashEntry("changed_at", now.ToUnixTimeMilliseconds())]);
        return now;
    }

    private Task AnnounceAsync(Plan plan) => planUpdates.PublishAsync(plan);
}

/// <summary>What applying a run of reports to a plan did (<see cref="PlanningStore.ApplyToPlanAsync"/>).</summary>
/// <param name="Changed">Whether anything changed (false: every report had been applied before; nothing is written).</param>
/// <param name="Portfolio">The portfolio after, or null when it did not change.</param>
/// <param name="AppliedFills">The fill ids applied now, recorded with the change.</param>
public sealed record PlanReportChange(bool Changed, Portfolio? Portfolio, IReadOnlyList<string> AppliedFills);

/// <summary>
/// What storing a new plan did: stored it; found its idempotency key taken (a concurrent retry won); or found another
/// plan of the portfolio still executing (<see cref="Executing"/>), and stored nothing.
/// </summary>
public sealed record PlanCreation(bool Stored, bool KeyIsTaken, Plan? Executing)
{
    public static PlanCreation Created { get; } = new(true, false, null);

    public static PlanCreation KeyTaken { get; } = new(false, true, null);

    public static PlanCreation InFlight(Plan executing) => new(false, false, executing);
}

/// <summary>What a book change changed.</summary>
public enum BookChange
{
    /// <summary>An entry that is not a change as written (a reader reloads what it can: the portfolio it names, else everything).</summary>
    Unreadable = 0,
    Portfolio = 1,
    Policy = 2,
}

/// <summary>One entry of the book's change stream.</summary>
public sealed record BookChangeEntry(string Id, string PortfolioId, BookChange What, long Version);
