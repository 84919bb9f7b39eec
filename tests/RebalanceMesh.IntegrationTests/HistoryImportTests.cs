using RebalanceMesh.Cli;

namespace RebalanceMesh.IntegrationTests;

/// <summary>`rmesh import-history`'s file layouts, read without a mesh.</summary>
public sealed class HistoryImportTests
{
    [Fact]
    public void Reads_a_wide_file_column_by_column_skipping_empty_cells()
    {
        var closes = HistoryImport.ParseCsv(new StringReader("date,DAX,USD\n2020-01-06,100,0.89\n2020-01-07,101.5,\n\n2020-01-08,102,0.9\n"));
        Assert.Equal([(new DateOnly(2020, 1, 6), 100m), (new DateOnly(2020, 1, 7), 101.5m), (new DateOnly(2020, 1, 8), 102m)], closes["DAX"]);
        Assert.Equal([(new DateOnly(2020, 1, 6), 0.89m), (new DateOnly(2020, 1, 8), 0.9m)], closes["USD"]);
    }

    [Fact]
    public void Reads_a_long_file_row_by_row()
    {
        var closes = HistoryImport.ParseCsv(new StringReader("date,instrument,close\n2020-01-06,DAX,100\n2020-01-06,USD,0.89\n2020-01-07,DAX,101\n"));
        Assert.Equal(2, closes["DAX"].Count);
        Assert.Equal((new DateOnly(2020, 1, 6), 0.89m), Assert.Single(closes["USD"]));
    }

    [Theory]
    [InlineData("day,DAX\n2020-01-06,1\n", "Line 1")]
    [InlineData("date,DAX\n06/01/2020,1\n", "Line 2: '06/01/2020' is not a date")]
    [InlineData("date,DAX\n2020-01-06,abc\n", "Line 2: 'abc' is not a price for DAX")]
    [InlineData("date,DAX,CAC\n2020-01-06,1\n", "Line 2: 2 cells")]
    public void Names_the_line_of_a_malformed_file(string text, string message) =>
        Assert.Contains(message, Assert.Throws<FormatException>(() => HistoryImport.ParseCsv(new StringReader(text))).Message);
}
