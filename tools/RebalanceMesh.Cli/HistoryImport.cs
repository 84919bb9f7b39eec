using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;

namespace RebalanceMesh.Cli;

/// <summary>
/// `rmesh import-history FILE.csv`: daily closes from a CSV file into pricing's history (ImportPriceHistory), in
/// requests of at most <see cref="BatchSize"/> closes. Two layouts, told apart by the header:
/// <list type="bullet">
/// <item>wide — <c>date,DAX,CAC,…</c>: one column per instrument, one row per day (an empty cell: no close that day);</item>
/// <item>long — <c>date,instrument,close</c>: one row per instrument and day.</item>
/// </list>
/// Dates are ISO days (2026-11-30); closes plain decimals. Importing the same file again changes nothing; a file with
/// corrected closes replaces them.
/// </summary>
public static class HistoryImport
{
    public const int BatchSize = 5_000;

    /// <summary>The closes of each instrument in the file, in file order; a malformed line is a FormatException naming it.</summary>
    public static IReadOnlyDictionary<string, List<(DateOnly Day, decimal Close)>> ParseCsv(TextReader reader)
    {
        var header = (reader.ReadLine() ?? throw new FormatException("The file is empty.")).Split(',').Select(c => c.Trim()).ToArray();
        if (header.Length < 2 || !header[0].Equals("date", StringComparison.OrdinalIgnoreCase))
        {
            throw new FormatException("Line 1: the header must start with 'date', then instrument columns (or 'instrument,close').");
        }

        var longLayout = header.Length == 3 && header[1].Equals("instrument", StringComparison.OrdinalIgnoreCase) && header[2].Equals("close", StringComparison.OrdinalIgnoreCase);
        var closes = new Dictionary<string, List<(DateOnly, decimal)>>(StringComparer.Ordinal);
        var number = 1;
        while (reader.ReadLine() is { } line)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            var cells = line.Split(',').Select(c => c.Trim()).ToArray();
            if (cells.Length != header.Length)
            {
                throw new FormatException($"Line {number}: {cells.Length} cells where the header has {header.Length}.");
            }

            if (!DateOnly.TryParseExact(cells[0], "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var day))
            {
                throw new FormatException($"Line {number}: '{cells[0]}' is not a date (yyyy-MM-dd).");
            }

            if (longLayout)
            {
                Add(cells[1], cells[2]);
                continue;
            }

            for (var c = 1; c < cells.Length; c++)
            {
                if (cells[c].Length > 0)
                {
                    Add(header[c], cells[c]);
                }
            }

            void Add(string instrument, string text)
            {
                if (!decimal.TryParse(text, NumberStyles.Number, CultureInfo.InvariantCulture, out var close))
                {
                    throw new FormatException($"Line {number}: '{text}' is not a price for {instrument}.");
                }

                if (!closes.TryGetValue(instrument, out var list))
                {
                    closes[instrument] = list = [];
                }

                list.Add((day, close));
            }
        }

        return closes;
    }

    /// <summary>Imports every instrument's closes; pricing validates each (known instrument, no future day, positive prices).</summary>
    public static async Task<IReadOnlyList<(string Instrument, int Stored, int Replaced, int Total)>> ImportAsync(
        PricingService.PricingServiceClient pricing, IReadOnlyDictionary<string, List<(DateOnly Day, decimal Close)>> closes, CancellationToken cancellationToken)
    {
        var results = new List<(string, int, int, int)>();
        foreach (var (instrument, series) in closes.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            int stored = 0, replaced = 0, total = 0;
            foreach (var chunk in series.Chunk(BatchSize))
            {
                var request = new ImportPriceHistoryRequest { InstrumentId = instrument };
                request.Closes.AddRange(chunk.Select(c => new DailyClosePoint
                {
                    Day = Timestamp.FromDateTime(c.Day.ToDateTime(TimeOnly.MinValue, DateTimeKind.Utc)),
                    Close = c.Close,
                }));
                var response = await pricing.ImportPriceHistoryAsync(request, cancellationToken: cancellationToken);
                stored += response.StoredCount;
                replaced += response.ReplacedCount;
                total = response.TotalCount;
            }

            results.Add((instrument, stored, replaced, total));
        }

        return results;
    }
}
