using System.Runtime.CompilerServices;

namespace RebalanceMesh.Pricing.Core.Feeds;

/// <summary>Settings of <see cref="CsvReplayFeed"/>.</summary>
public sealed class CsvReplayOptions
{
    /// <summary>Rows seeded as history (the business days before today); the rest are replayed live.</summary>
    public int WarmupRows { get; set; } = 1_000;

    /// <summary>Replayed rows per second: the speed factor (1 row is 1 business day of real data).</summary>
    public double RowsPerSecond { get; set; } = 2;

    /// <summary>Start again after the last row, continuing from the last price (returns repeat, levels do not jump).</summary>
    public bool Loop { get; set; } = true;
}

/// <summary>
/// Replays a price table: the first rows become history ending yesterday, then each further row is a live tick
/// batch at the current time, so the live path follows the real data's returns at a chosen speed.
/// </summary>
public sealed class CsvReplayFeed(PriceTable table, CsvReplayOptions options, IReadOnlyList<VenueQuoteStyle> venues, TimeProvider time) : IQuoteFeed
{
    public string Name => "csv-replay";

    public IReadOnlyList<string> Instruments => table.Instruments;

    private int Warmup => Math.Clamp(options.WarmupRows, 1, table.Rows.Count - 1);

    public IReadOnlyDictionary<string, IReadOnlyList<HistoricalClose>> History(DateOnly today)
    {
        var days = BusinessCalendar.WeekdaysBefore(today, Warmup);
        var history = new Dictionary<string, IReadOnlyList<HistoricalClose>>(StringComparer.Ordinal);
        for (var c = 0; c < table.Instruments.Count; c++)
        {
            var closes = new HistoricalClose[Warmup];
            for (var r = 0; r < Warmup; r++)
            {
                closes[r] = new HistoricalClose(days[r], table.Rows[r][c]);
            }

            history[table.Instruments[c]] = closes;
        }

        return history;
    }

    public async IAsyncEnumerable<IReadOnlyList<Tick>> StreamAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var interval = TimeSpan.FromSeconds(1.0 / Math.Max(options.RowsPerSecond, 0.001));
        var levels = (double[])table.Rows[Warmup - 1].Clone();
        var row = Warmup;
        while (!cancellationToken.IsCancellationRequested)
        {
            if (row >= table.Rows.Count)
            {
                if (!options.Loop)
                {
                    yield break;
                }

                row = Warmup;
            }

            var previous = table.Rows[row - 1];
            var current = table.Rows[row];
            var now = time.GetUtcNow();
            var batch = new List<Tick>(levels.Length * venues.Count);
            for (var c = 0; c < levels.Length; c++)
            {
                levels[c] *= current[c] / previous[c];
                batch.AddRange(VenueQuotes.Around(table.Instruments[c], levels[c], venues, now));
            }

            yield return batch;
            row++;
            await Task.Delay(interval, time, cancellationToken).ConfigureAwait(false);
        }
    }
}
