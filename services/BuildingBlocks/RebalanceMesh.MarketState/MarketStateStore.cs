using System.Globalization;
using Google.Protobuf;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using StackExchange.Redis;

namespace RebalanceMesh.MarketState;

/// <summary>Configuration section <c>MarketState</c>.</summary>
public sealed class MarketStateOptions
{
    /// <summary>A consolidated price whose newest quote is older than this is flagged stale.</summary>
    public TimeSpan StaleAfter { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A venue's quote more than this older than the instrument's newest quote leaves the consolidated book (it stays
    /// readable as that venue's last quote); pricing also refuses live ticks older than this.
    /// </summary>
    public TimeSpan VenueStaleAfter { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Daily closes kept per instrument (about 20 years of business days by default).</summary>
    public int MaxDailyCloses { get; set; } = 5_200;

    /// <summary>Consolidated mids kept per instrument in the intraday ring.</summary>
    public int MaxIntradayPoints { get; set; } = 5_000;
}

/// <summary>One business day's closing price. <paramref name="Day"/> counts days since 1970-01-01 (UTC).</summary>
public readonly record struct DailyClose(int Day, double Close)
{
    public static int DayOf(DateTimeOffset time) => (int)(time.UtcDateTime.Date - DateTime.UnixEpoch).TotalDays;

    public DateOnly Date => DateOnly.FromDateTime(DateTime.UnixEpoch.AddDays(Day));
}

/// <summary>
/// Market state in Redis. Keys (all under <c>mkt:</c>):
/// <list type="bullet">
/// <item><c>mkt:instruments</c> set of instruments with quotes.</item>
/// <item><c>mkt:quote:{instrument}</c> hash venue → serialized <see cref="Quote"/>.</item>
/// <item><c>mkt:quarantine:{instrument}</c> hash venue → serialized <see cref="Quote"/> held out of the book as an outlier.</item>
/// <item><c>mkt:price:{instrument}</c> serialized <see cref="ConsolidatedPrice"/> (best bid / best ask across venues).</item>
/// <item><c>mkt:daily:{instrument}</c> sorted set, score = day number, member = "day:close".</item>
/// <item><c>mkt:daily-version:{instrument}</c> counter raised whenever a day other than today changes (imports,
/// seeding): readers that cache closed days compare it.</item>
/// <item><c>mkt:intraday:{instrument}</c> list (newest first) of "unix-ms:mid", bounded.</item>
/// <item><c>mkt:instrument:{id}</c> serialized registered <see cref="Instrument"/>; <c>mkt:registry</c> their ids.</item>
/// <item><c>mkt:vol:{underlying}</c> serialized volatility surface.</item>
/// </list>
/// Redis persistence (AOF) makes it survive a pricing restart.
/// </summary>
public sealed class MarketStateStore(IConnectionMultiplexer redis, IOptions<MarketStateOptions> options, TimeProvider time)
{
    private const string InstrumentsKey = "mkt:instruments";

    // Replace the close of one day atomically, then trim the oldest beyond the limit.
    private const string UpsertCloseScript = """
        redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])
        redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[3]) + 1))
        return 1
        """;

    // Upsert many days' closes (ARGV: day, member pairs, then the limit), trim, raise the history version; returns
    // {days replaced, closes kept}.
    private const string UpsertClosesScript = """
        local replaced = 0
        for i = 1, #ARGV - 1, 2 do
          replaced = replaced + redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[i], ARGV[i])
          redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
        end
        redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[#ARGV]) + 1))
        redis.call('INCR', KEYS[2])
        return {replaced, redis.call('ZCARD', KEYS[1])}
        """;

    private static RedisKey QuoteKey(string instrument) => "mkt:quote:" + instrument;

    private static RedisKey QuarantineKey(string instrument) => "mkt:quarantine:" + instrument;

    private static RedisKey HistoryVersionKey(string instrument) => "mkt:daily-version:" + instrument;

    private static RedisKey PriceKey(string instrument) => "mkt:price:" + instrument;

    private static RedisKey DailyKey(string instrument) => "mkt:daily:" + instrument;

    private static RedisKey IntradayKey(string instrument) => "mkt:intraday:" + instrument;

    private static RedisKey InstrumentKey(string instrument) => "mkt:instrument:" + instrument;

    private static RedisKey VolSurfaceKey(string underlying) => "mkt:vol:" + underlying;

    private const string RegistryKey = "mkt:registry";

    /// <summary>
    /// Stores quotes that passed pricing's checks: the latest per venue; the quarantine of each instrument in
    /// <paramref name="quarantine"/> (replaced whole; empty clears it); and for each instrument quoted, the new
    /// consolidated price over the venues in the book, today's close and an intraday point. Returns the consolidated
    /// prices written.
    /// </summary>
    public async Task<IReadOnlyList<ConsolidatedPrice>> WriteQuotesAsync(IReadOnlyList<Quote> quotes, IReadOnlyDictionary<string, IReadOnlyList<Quote>>? quarantine = null)
    {
        var db = redis.GetDatabase();
        var writes = new List<Task>(quotes.Count + 2);
        foreach (var (instrument, held) in quarantine ?? new Dictionary<string, IReadOnlyList<Quote>>())
        {
            var transaction = db.CreateTransaction();
            writes.Add(transaction.KeyDeleteAsync(QuarantineKey(instrument)));
            if (held.Count > 0)
            {
                writes.Add(transaction.HashSetAsync(QuarantineKey(instrument), held.Select(q => new HashEntry(q.Venue, q.ToByteArray())).ToArray()));
            }

            writes.Add(transaction.ExecuteAsync());
        }

        if (quotes.Count == 0)
        {
            await Task.WhenAll(writes);
            return [];
        }

        foreach (var quote in quotes)
        {
            writes.Add(db.HashSetAsync(QuoteKey(quote.InstrumentId), quote.Venue, quote.ToByteArray()));
        }

        var instruments = quotes.Select(q => q.InstrumentId).Distinct(StringComparer.Ordinal).ToArray();
        writes.Add(db.SetAddAsync(InstrumentsKey, instruments.Select(i => (RedisValue)i).ToArray()));
        await Task.WhenAll(writes);

        var today = DailyClose.DayOf(time.GetUtcNow());
        var prices = new List<ConsolidatedPrice>(instruments.Length);
        var followUps = new List<Task>(instruments.Length * 4);
        // Every instrument's venue quotes read at once (pipelined), not one round trip after another.
        var books = Array.ConvertAll(instruments, instrument => db.HashGetAllAsync(QuoteKey(instrument)));
        for (var k = 0; k < instruments.Length; k++)
        {
            var instrument = instruments[k];
            var venues = await books[k];
            var price = Consolidate(instrument, venues.Select(v => Quote.Parser.ParseFrom((byte[])v.Value!)), options.Value.VenueStaleAfter);
            if (price is null)
            {
                continue;
            }

            prices.Add(price);
            followUps.Add(db.StringSetAsync(PriceKey(instrument), price.ToByteArray()));
            var day = DailyClose.DayOf(price.Timestamp.ToDateTimeOffset());
            var mid = (double)price.Mid.ToDecimal();
            followUps.Add(UpsertCloseAsync(db, instrument, new DailyClose(day, mid)));
            if (day != today)
            {
                followUps.Add(db.StringIncrementAsync(HistoryVersionKey(instrument))); // a quote stamped just before midnight closes yesterday
            }

            var point = price.Timestamp.ToDateTimeOffset().ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture) + ":" + mid.ToString("R", CultureInfo.InvariantCulture);
            followUps.Add(db.ListLeftPushAsync(IntradayKey(instrument), point));
            followUps.Add(db.ListTrimAsync(IntradayKey(instrument), 0, options.Value.MaxIntradayPoints - 1));
        }

        await Task.WhenAll(followUps);
        return prices;
    }

    /// <summary>
    /// Best bid and best ask over the venues in the book: those whose quote is at most <paramref name="venueStaleAfter"/>
    /// older than the newest quote (a venue that stopped quoting leaves the book while the others go on). The timestamp
    /// is the newest quote's; crossed when the best bid is above the best ask.
    /// </summary>
    public static ConsolidatedPrice? Consolidate(string instrument, IEnumerable<Quote> venueQuotes, TimeSpan venueStaleAfter)
    {
        var quotes = new List<(decimal Bid, decimal Ask, Google.Protobuf.WellKnownTypes.Timestamp Time)>();
        foreach (var quote in venueQuotes)
        {
            if (DecimalValue.TryParse(quote.Bid, out var bid) && DecimalValue.TryParse(quote.Ask, out var ask) && quote.Timestamp is not null)
            {
                quotes.Add((bid, ask, quote.Timestamp));
            }
        }

        if (quotes.Count == 0)
        {
            return null;
        }

        var newest = quotes.MaxBy(q => q.Time.ToDateTimeOffset()).Time;
        var fresh = newest.ToDateTimeOffset() - venueStaleAfter;
        var inBook = quotes.Where(q => q.Time.ToDateTimeOffset() >= fresh).ToArray();
        var bestBid = inBook.Max(q => q.Bid);
        var bestAsk = inBook.Min(q => q.Ask);
        return new ConsolidatedPrice
        {
            InstrumentId = instrument,
            Bid = bestBid,
            Ask = bestAsk,
            Mid = (bestBid + bestAsk) / 2m,
            Timestamp = newest,
            Crossed = bestBid > bestAsk,
        };
    }

    /// <summary>Each instrument's latest quote per venue and its quarantined quotes (empty lists when it has none).</summary>
    public async Task<IReadOnlyDictionary<string, (IReadOnlyList<Quote> Quotes, IReadOnlyList<Quote> Quarantined)>> GetBooksAsync(IReadOnlyCollection<string> instruments)
    {
        var db = redis.GetDatabase();
        var reads = instruments.Select(i => (Instrument: i, Quotes: db.HashGetAllAsync(QuoteKey(i)), Held: db.HashGetAllAsync(QuarantineKey(i)))).ToArray();
        await Task.WhenAll(reads.SelectMany(r => new Task[] { r.Quotes, r.Held }));
        return reads.ToDictionary(
            r => r.Instrument,
            r => ((IReadOnlyList<Quote>)Parse(r.Quotes.Result), (IReadOnlyList<Quote>)Parse(r.Held.Result)),
            StringComparer.Ordinal);

        static Quote[] Parse(HashEntry[] entries) => entries.Select(e => Quote.Parser.ParseFrom((byte[])e.Value!)).ToArray();
    }

    /// <summary>Quotes held in quarantine, of the instruments given or of every instrument with quotes.</summary>
    public async Task<IReadOnlyList<Quote>> GetQuarantinedAsync(IReadOnlyCollection<string> instruments)
    {
        var db = redis.GetDatabase();
        var names = instruments.Count > 0 ? instruments : await GetQuotedInstrumentsAsync();
        var results = await Task.WhenAll(names.Select(i => db.HashGetAllAsync(QuarantineKey(i))));
        return results.SelectMany(r => r.Select(v => Quote.Parser.ParseFrom((byte[])v.Value!)))
            .OrderBy(q => q.InstrumentId, StringComparer.Ordinal).ThenBy(q => q.Venue, StringComparer.Ordinal)
            .ToArray();
    }

    /// <summary>Latest quote per venue of each instrument; all instruments when <paramref name="instruments"/> is empty.</summary>
    public async Task<IReadOnlyList<Quote>> GetQuotesAsync(IReadOnlyCollection<string> instruments)
    {
        var db = redis.GetDatabase();
        var names = instruments.Count > 0 ? instruments : await GetQuotedInstrumentsAsync();
        var tasks = names.Select(i => db.HashGetAllAsync(QuoteKey(i))).ToArray();
        var results = await Task.WhenAll(tasks);
        return results.SelectMany(r => r.Select(v => Quote.Parser.ParseFrom((byte[])v.Value!)))
            .OrderBy(q => q.InstrumentId, StringComparer.Ordinal).ThenBy(q => q.Venue, StringComparer.Ordinal)
            .ToArray();
    }

    /// <summary>Consolidated prices, flagged stale by age; instruments without quotes are absent.</summary>
    public async Task<IReadOnlyList<ConsolidatedPrice>> GetPricesAsync(IReadOnlyCollection<string> instruments)
    {
        var db = redis.GetDatabase();
        var names = instruments.Count > 0 ? instruments.ToArray() : (await GetQuotedInstrumentsAsync()).ToArray();
        if (names.Length == 0)
        {
            return [];
        }

        var values = await db.StringGetAsync(names.Select(PriceKey).ToArray());
        var now = time.GetUtcNow();
        var staleAfter = options.Value.StaleAfter;
        var prices = new List<ConsolidatedPrice>(names.Length);
        foreach (var value in values)
        {
            if (value.IsNull)
            {
                continue;
            }

            var price = ConsolidatedPrice.Parser.ParseFrom((byte[])value!);
            price.Stale = now - price.Timestamp.ToDateTimeOffset() > staleAfter;
            prices.Add(price);
        }

        return prices;
    }

    /// <summary>Instruments that have at least one quote.</summary>
    public async Task<IReadOnlyList<string>> GetQuotedInstrumentsAsync()
    {
        var members = await redis.GetDatabase().SetMembersAsync(InstrumentsKey);
        return members.Select(m => m.ToString()).Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>
    /// Writes daily closes in one atomic step (a later write of the same day replaces the earlier one), keeps the most
    /// recent <see cref="MarketStateOptions.MaxDailyCloses"/>, and raises the instrument's history version. Returns how
    /// many days already had a close, and how many closes the instrument has now.
    /// </summary>
    public async Task<(int Replaced, int Total)> UpsertDailyClosesAsync(string instrument, IEnumerable<DailyClose> closes)
    {
        var arguments = new List<RedisValue>();
        foreach (var close in closes)
        {
            arguments.Add(close.Day);
            arguments.Add(FormatMember(close));
        }

        if (arguments.Count == 0)
        {
            return (0, (int)await redis.GetDatabase().SortedSetLengthAsync(DailyKey(instrument)));
        }

        arguments.Add(options.Value.MaxDailyCloses);
        var result = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(UpsertClosesScript, [DailyKey(instrument), HistoryVersionKey(instrument)], arguments.ToArray()))!;
        return ((int)result[0], (int)result[1]);
    }

    /// <summary>
    /// The instrument's history version: it changes whenever a closed day's close does (an import, a correction), so a
    /// reader caching closed days knows when to read them again.
    /// </summary>
    public async Task<long> GetHistoryVersionAsync(string instrument)
    {
        var value = await redis.GetDatabase().StringGetAsync(HistoryVersionKey(instrument));
        return value.IsNull ? 0 : (long)value;
    }

    /// <summary>The most recent <paramref name="maxCount"/> daily closes, oldest first.</summary>
    public async Task<IReadOnlyList<DailyClose>> GetDailyClosesAsync(string instrument, int maxCount)
    {
        var members = await redis.GetDatabase().SortedSetRangeByRankAsync(DailyKey(instrument), -maxCount, -1);
        var closes = new DailyClose[members.Length];
        for (var i = 0; i < members.Length; i++)
        {
            closes[i] = ParseMember(members[i].ToString());
        }

        return closes;
    }

    /// <summary>Daily closes from <paramref name="fromDay"/> on, oldest first.</summary>
    public async Task<IReadOnlyList<DailyClose>> GetDailyClosesFromAsync(string instrument, int fromDay)
    {
        var members = await redis.GetDatabase().SortedSetRangeByScoreAsync(DailyKey(instrument), fromDay, double.PositiveInfinity);
        return members.Select(m => ParseMember(m.ToString())).ToArray();
    }

    /// <summary>The most recent <paramref name="maxCount"/> intraday consolidated mids, oldest first.</summary>
    public async Task<IReadOnlyList<(DateTimeOffset Time, double Mid)>> GetIntradayAsync(string instrument, int maxCount)
    {
        if (maxCount <= 0)
        {
            return [];
        }

        var values = await redis.GetDatabase().ListRangeAsync(IntradayKey(instrument), 0, maxCount - 1);
        var points = new (DateTimeOffset, double)[values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            var text = values[i].ToString();
            var colon = text.IndexOf(':', StringComparison.Ordinal);
            points[values.Length - 1 - i] = (
                DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(text.AsSpan(0, colon), CultureInfo.InvariantCulture)),
                double.Parse(text.AsSpan(colon + 1), CultureInfo.InvariantCulture));
        }

        return points;
    }

    /// <summary>Registers or replaces instruments and their terms.</summary>
    public async Task UpsertInstrumentsAsync(IReadOnlyList<Instrument> instruments)
    {
        var db = redis.GetDatabase();
        var batch = db.CreateBatch();
        var tasks = instruments.Select(i => (Task)batch.StringSetAsync(InstrumentKey(i.InstrumentId), i.ToByteArray())).ToList();
        tasks.Add(batch.SetAddAsync(RegistryKey, instruments.Select(i => (RedisValue)i.InstrumentId).ToArray()));
        batch.Execute();
        await Task.WhenAll(tasks);
    }

    /// <summary>Registered instruments, ordered by id.</summary>
    public async Task<IReadOnlyList<Instrument>> GetRegisteredInstrumentsAsync()
    {
        var db = redis.GetDatabase();
        var ids = await db.SetMembersAsync(RegistryKey);
        if (ids.Length == 0)
        {
            return [];
        }

        return (await GetRegisteredInstrumentsAsync(Array.ConvertAll(ids, id => id.ToString()))).OfType<Instrument>().OrderBy(i => i.InstrumentId, StringComparer.Ordinal).ToArray();
    }

    /// <summary>One registered instrument, or null.</summary>
    public async Task<Instrument?> GetRegisteredInstrumentAsync(string instrumentId) => (await GetRegisteredInstrumentsAsync([instrumentId]))[0];

    /// <summary>Registered instruments in the order of <paramref name="instrumentIds"/>, null where one is not registered: one MGET.</summary>
    public async Task<Instrument?[]> GetRegisteredInstrumentsAsync(IReadOnlyList<string> instrumentIds)
    {
        if (instrumentIds.Count == 0)
        {
            return [];
        }

        var values = await redis.GetDatabase().StringGetAsync(instrumentIds.Select(InstrumentKey).ToArray());
        return Array.ConvertAll(values, v => v.IsNull ? null : Instrument.Parser.ParseFrom((byte[])v!));
    }

    public Task SetVolSurfaceAsync(RebalanceMesh.Contracts.Pricing.V1.VolSurface surface) =>
        redis.GetDatabase().StringSetAsync(VolSurfaceKey(surface.UnderlyingId), surface.ToByteArray());

    public async Task<RebalanceMesh.Contracts.Pricing.V1.VolSurface?> GetVolSurfaceAsync(string underlying)
    {
        var value = await redis.GetDatabase().StringGetAsync(VolSurfaceKey(underlying));
        return value.IsNull ? null : RebalanceMesh.Contracts.Pricing.V1.VolSurface.Parser.ParseFrom((byte[])value!);
    }

    private Task UpsertCloseAsync(IDatabaseAsync db, string instrument, DailyClose close) =>
        db.ScriptEvaluateAsync(
            UpsertCloseScript,
            [DailyKey(instrument)],
            [close.Day, FormatMember(close), options.Value.MaxDailyCloses]);

    private static string FormatMember(DailyClose close) =>
        close.Day.ToString(CultureInfo.InvariantCulture) + ":" + close.Close.ToString("R", CultureInfo.InvariantCulture);

    private static DailyClose ParseMember(string member)
    {
        var colon = member.IndexOf(':', StringComparison.Ordinal);
        return new DailyClose(
            int.Parse(member.AsSpan(0, colon), CultureInfo.InvariantCulture),
            double.Parse(member.AsSpan(colon + 1), CultureInfo.InvariantCulture));
    }
}
