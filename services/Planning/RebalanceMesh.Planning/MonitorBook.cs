using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Google.Protobuf;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Planning.Core;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>
/// The monitor's book in memory: every portfolio that has a policy, with its policy, its domain snapshot and the
/// instruments it is marked over, and an index from instrument to portfolios. Redis stays the source of truth; the book
/// follows the store's change stream (<see cref="PlanningStore.BookChangesKey"/>, written in the same transaction as
/// each change), catching up before each evaluation, so it never evaluates a portfolio older than the last write before
/// the event. A reader that fell behind the stream's trimming (more changes trimmed away than it had applied, counted
/// from the stream's entries-added) reloads the whole book. An entry Redis holds that cannot
/// be read (corrupt bytes) is logged, counted and left out, and is read again at its next change — it never stops the
/// monitor.
/// </summary>
public sealed class MonitorBook(PlanningStore store, Microsoft.Extensions.Options.IOptions<MonitorOptions> options, ILogger<MonitorBook> logger) : IDisposable
{
    private static readonly Meter Meter = new("RebalanceMesh.Planning.Monitor");
    private static readonly Counter<long> Loads = Meter.CreateCounter<long>("rebalancemesh.planning.book.loads", description: "Whole-book loads of the monitor's book (at start, and when it fell behind the change stream).");
    private static readonly Counter<long> Changes = Meter.CreateCounter<long>("rebalancemesh.planning.book.changes", description: "Book changes applied from the change stream.");
    private static readonly Counter<long> Unreadable = Meter.CreateCounter<long>("rebalancemesh.planning.book.unreadable", description: "Portfolios, policies or change entries the book could not read (an entry left out until its next change; an unreadable change reloads what it names, or the whole book).");

    /// <summary>Entries read per round trip.</summary>
    private const int Batch = 1_000;

    private readonly ConcurrentDictionary<string, MonitoredPortfolio> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _byInstrument = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ConcurrentDictionary<string, int> _slots = new(StringComparer.Ordinal);
    private string? _lastChange;

    /// <summary>How many changes the stream had had appended up to <see cref="_lastChange"/>.</summary>
    private long _position;

    /// <summary>Portfolios in the book.</summary>
    public int Count => _entries.Count;

    /// <summary>Instruments numbered so far (see <see cref="SlotOf"/>).</summary>
    public int SlotCount => _slots.Count;

    /// <summary>The instrument's number in the book's price arrays (<see cref="BandScreen"/>), numbering it on first sight.</summary>
    public int SlotOf(string instrument)
    {
        if (_slots.TryGetValue(instrument, out var known))
        {
            return known;
        }

        lock (_slots)
        {
            return _slots.TryGetValue(instrument, out var slot) ? slot : _slots[instrument] = _slots.Count;
        }
    }

    /// <summary>Each numbered instrument with its slot.</summary>
    public IEnumerable<KeyValuePair<string, int>> Slots => _slots;

    /// <summary>The portfolio as the book holds it, or null.</summary>
    public MonitoredPortfolio? Get(string portfolioId) => _entries.GetValueOrDefault(portfolioId);

    /// <summary>The portfolios marked over any of <paramref name="instruments"/>, each once.</summary>
    public IReadOnlyList<MonitoredPortfolio> Affected(IEnumerable<string> instruments)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var instrument in instruments)
        {
            if (_byInstrument.TryGetValue(instrument, out var holders))
            {
                ids.UnionWith(holders.Keys);
            }
        }

        return ids.Select(id => _entries.GetValueOrDefault(id)).OfType<MonitoredPortfolio>().ToArray();
    }

    /// <summary>Every portfolio of these partitions.</summary>
    public IReadOnlyList<MonitoredPortfolio> InPartitions(IReadOnlySet<int> partitions) =>
        _entries.Values.Where(e => partitions.Contains(e.Partition)).ToArray();

    /// <summary>
    /// Brings the book up to the store's last change: the whole book the first time (and after falling behind the
    /// stream's trimming), else the changes since the last one applied. One at a time.
    /// </summary>
    public async Task CatchUpAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_lastChange is null)
            {
                await LoadAsync();
                return;
            }

            while (true)
            {
                var changes = await store.ReadBookChangesAsync(_lastChange, Batch);
                if (changes.Count == 0)
                {
                    return;
                }

                // Trimming removed (added − length) changes from the front: past this reader's position, it missed some.
                var (_, added, length) = await store.GetBookStreamPositionAsync();
                if (added - length > _position)
                {
                    logger.LogWarning("The monitor's book fell behind the change stream (applied {Position} changes, {Trimmed} trimmed away); reloading it", _position, added - length);
                    await LoadAsync();
                    return;
                }

                var unreadable = changes.Where(c => c.What == BookChange.Unreadable).ToArray();
                if (unreadable.Length > 0)
                {
                    Unreadable.Add(unreadable.Length);
                    logger.LogError("Monitor book: {Count} change entries cannot be read (first {Id}); reloading what they name, or the whole book", unreadable.Length, unreadable[0].Id);
                    if (unreadable.Any(c => c.PortfolioId.Length == 0))
                    {
                        await LoadAsync();
                        return;
                    }
                }

                await ReloadAsync(changes.Select(c => c.PortfolioId).Distinct(StringComparer.Ordinal).ToArray());
                Changes.Add(changes.Count);
                _lastChange = changes[^1].Id;
                _position += changes.Count;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The whole book: the change stream's position first, so no change made during the load is missed.</summary>
    private async Task LoadAsync()
    {
        var (from, position, _) = await store.GetBookStreamPositionAsync();
        _entries.Clear();
        _byInstrument.Clear();
        await ReloadAsync(await store.GetPolicyPortfolioIdsAsync());
        _lastChange = from;
        _position = position;
        Loads.Add(1);
        logger.LogInformation("Monitor book loaded: {Count} portfolios with a policy", _entries.Count);
    }

    /// <summary>Reads these portfolios and their policies again and puts them in the book (or out, when gone).</summary>
    private async Task ReloadAsync(IReadOnlyList<string> portfolioIds)
    {
        for (var start = 0; start < portfolioIds.Count; start += Batch)
        {
            var ids = portfolioIds.Skip(start).Take(Batch).ToArray();
            var raw = await store.GetBookEntriesAsync(ids);
            for (var i = 0; i < ids.Length; i++)
            {
                Put(ids[i], Read(ids[i], raw[i].Portfolio, raw[i].Policy));
            }
        }
    }

    private MonitoredPortfolio? Read(string portfolioId, RedisValue portfolioRaw, RedisValue policyRaw)
    {
        if (portfolioRaw.IsNull || policyRaw.IsNull)
        {
            return null; // not (or no longer) monitored: no portfolio, or no policy
        }

        try
        {
            var portfolio = Portfolio.Parser.ParseFrom((byte[])portfolioRaw!);
            var policy = Policy.Parser.ParseFrom((byte[])policyRaw!);
            var snapshot = portfolio.ToDomain();
            return new MonitoredPortfolio(portfolio, policy, snapshot, PlanPipeline.InstrumentsOf(snapshot, policy.Targets.Select(t => t.InstrumentId)), MonitorPartitions.Of(portfolioId, options.Value.Partitions));
        }
        catch (Exception ex) when (ex is InvalidProtocolBufferException or ArgumentException or InvalidOperationException or FormatException or OverflowException or RebalanceMesh.Domain.DomainException)
        {
            Unreadable.Add(1);
            logger.LogError(ex, "Monitor book: portfolio {PortfolioId} or its policy cannot be read; left out until its next change", portfolioId);
            return null;
        }
    }

    private void Put(string portfolioId, MonitoredPortfolio? entry)
    {
        if (_entries.TryGetValue(portfolioId, out var before))
        {
            foreach (var instrument in before.Instruments)
            {
                if (_byInstrument.TryGetValue(instrument, out var holders))
                {
                    holders.TryRemove(portfolioId, out _);
                }
            }
        }

        if (entry is null)
        {
            _entries.TryRemove(portfolioId, out _);
            return;
        }

        _entries[portfolioId] = entry;
        foreach (var instrument in entry.Instruments)
        {
            _byInstrument.GetOrAdd(instrument, _ => new ConcurrentDictionary<string, byte>(StringComparer.Ordinal))[portfolioId] = 0;
        }
    }

    public void Dispose() => _gate.Dispose();

    /// <summary>Whether <paramref name="id"/> is a Redis stream id ("ms-seq", or "ms").</summary>
    public static bool IsStreamId(string id)
    {
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        var style = System.Globalization.NumberStyles.None;
        var culture = System.Globalization.CultureInfo.InvariantCulture;
        return dash < 0
            ? ulong.TryParse(id, style, culture, out _)
            : ulong.TryParse(id.AsSpan(0, dash), style, culture, out _) && ulong.TryParse(id.AsSpan(dash + 1), style, culture, out _);
    }

    /// <summary>Whether stream id <paramref name="a"/> comes before <paramref name="b"/> ("ms-seq").</summary>
    public static bool IsOlder(string a, string b)
    {
        static (long Ms, long Seq) Parse(string id)
        {
            var dash = id.IndexOf('-', StringComparison.Ordinal);
            return dash < 0 ? (long.Parse(id, System.Globalization.CultureInfo.InvariantCulture), 0) : (long.Parse(id[..dash], System.Globalization.CultureInfo.InvariantCulture), long.Parse(id[(dash + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        }

        return Parse(a).CompareTo(Parse(b)) < 0;
    }
}

/// <summary>Loads the monitor's book when the service starts, so the first market event does not wait for it (should Redis be away, that event loads it).</summary>
public sealed class MonitorBookLoader(MonitorBook book, ILogger<MonitorBookLoader> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await book.CatchUpAsync(stoppingToken);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            logger.LogWarning(ex, "Monitor book not loaded at start; the first market event loads it");
        }
    }
}

/// <summary>A portfolio as the monitor holds it: as stored, its policy, its domain snapshot, the instruments it is marked over and its partition.</summary>
public sealed record MonitoredPortfolio(Portfolio Portfolio, Policy Policy, PortfolioSnapshot Snapshot, IReadOnlyList<string> Instruments, int Partition)
{
    public string PortfolioId => Portfolio.PortfolioId;

    /// <summary>What the monitor derived under a resolved policy (its passes, one at a time, keep it).</summary>
    internal Compiled? Derived { get; set; }

    /// <summary>Under a resolved policy: the instruments the portfolio is marked over (held, owed, targeted, hedges) and its band screen, when it is plain.</summary>
    internal sealed record Compiled(TargetPolicy Policy, string[] Instruments, BandScreen? Screen);
}
