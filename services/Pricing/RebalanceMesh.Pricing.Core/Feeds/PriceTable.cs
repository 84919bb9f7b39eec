using System.Globalization;

namespace RebalanceMesh.Pricing.Core.Feeds;

/// <summary>A table of closing prices: one column per instrument, one row per business day, oldest first.</summary>
public sealed class PriceTable
{
    public PriceTable(IReadOnlyList<string> instruments, IReadOnlyList<double[]> rows)
    {
        if (instruments.Count == 0 || rows.Count < 2)
        {
            throw new ArgumentException("A price table needs at least one instrument and two rows.", nameof(rows));
        }

        Instruments = instruments;
        Rows = rows;
    }

    public IReadOnlyList<string> Instruments { get; }

    public IReadOnlyList<double[]> Rows { get; }

    /// <summary>
    /// Parses CSV with a header. A first column named <c>day</c> or <c>date</c> is an index and skipped;
    /// every other column is an instrument. Every price must be a positive number.
    /// </summary>
    public static PriceTable ParseCsv(TextReader reader)
    {
        var header = reader.ReadLine() ?? throw new FormatException("The price CSV is empty.");
        var columns = header.Split(',').Select(c => c.Trim()).ToArray();
        var skip = columns[0].Equals("day", StringComparison.OrdinalIgnoreCase) || columns[0].Equals("date", StringComparison.OrdinalIgnoreCase) ? 1 : 0;
        var instruments = columns[skip..];
        var rows = new List<double[]>();
        var lineNumber = 1;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            var cells = line.Split(',');
            if (cells.Length != columns.Length)
            {
                throw new FormatException($"Line {lineNumber} has {cells.Length} cells; the header has {columns.Length}.");
            }

            var row = new double[instruments.Length];
            for (var i = 0; i < instruments.Length; i++)
            {
                if (!double.TryParse(cells[i + skip], NumberStyles.Float, CultureInfo.InvariantCulture, out var price) || !(price > 0) || !double.IsFinite(price))
                {
                    throw new FormatException($"Line {lineNumber}, column {instruments[i]}: '{cells[i + skip]}' is not a positive price.");
                }

                row[i] = price;
            }

            rows.Add(row);
        }

        return new PriceTable(instruments, rows);
    }
}
