using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Pricing.Core.Feeds;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Pricing.Tests;

public class FeedTests
{
    private static readonly VenueQuoteStyle[] Venues = [new("SIM-A", 2, 10m), new("SIM-B", 5, 20m)];

    private static PriceTable ShippedData()
    {
        using var reader = File.OpenText(Path.Combine(RepoPaths.Root, "data", "eustockmarkets.csv"));
        return PriceTable.ParseCsv(reader);
    }

    [Fact]
    public void Parses_the_shipped_EuStockMarkets_data()
    {
        var table = ShippedData();
        Assert.Equal(["DAX", "SMI", "CAC", "FTSE"], table.Instruments);
        Assert.Equal(1860, table.Rows.Count);
        Assert.Equal([1628.75, 1678.1, 1772.8, 2443.6], table.Rows[0]);
    }

    [Theory]
    [InlineData("day,A\n0,abc\n1,2\n")]
    [InlineData("day,A\n0,-1\n1,2\n")]
    [InlineData("day,A,B\n0,1\n1,2,3\n")]
    public void Rejects_malformed_csv(string csv) =>
        Assert.Throws<FormatException>(() => PriceTable.ParseCsv(new StringReader(csv)));

    [Fact]
    public void Csv_replay_seeds_history_on_the_weekdays_before_today()
    {
        var table = ShippedData();
        var feed = new CsvReplayFeed(table, new CsvReplayOptions { WarmupRows = 10 }, Venues, TimeProvider.System);
        var today = new DateOnly(2026, 11, 25); // a Wednesday
        var history = feed.History(today)["DAX"];
        Assert.Equal(10, history.Count);
        Assert.Equal(new DateOnly(2026, 11, 24), history[^1].Date);
        Assert.Equal(new DateOnly(2026, 11, 11), history[0].Date);
        Assert.DoesNotContain(history, h => h.Date.DayOfWeek is DayOfWeek.Saturday or DayOfWeek.Sunday);
        Assert.Equal(table.Rows[9][0], history[^1].Close);
    }

    [Fact]
    public async Task Csv_replay_streams_the_next_rows_with_venue_spreads()
    {
        var table = ShippedData();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 25, 12, 0, 0, TimeSpan.Zero));
        var feed = new CsvReplayFeed(table, new CsvReplayOptions { WarmupRows = 10, RowsPerSecond = 1 }, Venues, time);
        await using var stream = feed.StreamAsync(CancellationToken.None).GetAsyncEnumerator();
        Assert.True(await stream.MoveNextAsync());
        var dax = stream.Current.Where(t => t.InstrumentId == "DAX").ToArray();
        Assert.Equal(2, dax.Length);
        Assert.All(dax, t => Assert.Equal((decimal)table.Rows[10][0], t.Mid));
        var a = dax.Single(t => t.Venue == "SIM-A");
        Assert.Equal(decimal.Round((decimal)table.Rows[10][0] * 2m / 10_000m, 6), a.Ask - a.Mid);
    }

    [Fact]
    public void Simulated_market_reproduces_with_the_same_seed()
    {
        var first = new SimulatedMarket(new SimulatedMarketOptions { Seed = 7 });
        var second = new SimulatedMarket(new SimulatedMarketOptions { Seed = 7 });
        var third = new SimulatedMarket(new SimulatedMarketOptions { Seed = 8 });
        for (var i = 0; i < 100; i++)
        {
            first.Step();
            second.Step();
            third.Step();
        }

        Assert.Equal(first.Prices, second.Prices);
        Assert.NotEqual(first.Prices, third.Prices);
    }

    [Fact]
    public void Simulated_returns_have_the_configured_correlation_and_volatility()
    {
        var options = new SimulatedMarketOptions
        {
            Seed = 3,
            Correlation = 0.6,
            JumpsPerYear = 0,
            StressSwitchesPerYear = 0,
            Instruments = [new("X", 100, 0, 0.2), new("Y", 100, 0, 0.4)],
        };
        var market = new SimulatedMarket(options);
        const int n = 50_000;
        var x = new double[n];
        var y = new double[n];
        var previous = market.Prices.ToArray();
        for (var i = 0; i < n; i++)
        {
            var now = market.Step().ToArray();
            x[i] = Math.Log(now[0] / previous[0]);
            y[i] = Math.Log(now[1] / previous[1]);
            previous = now;
        }

        var correlation = MathNet.Numerics.Statistics.Correlation.Pearson(x, y);
        var volX = MathNet.Numerics.Statistics.Statistics.StandardDeviation(x) * Math.Sqrt(252);
        Assert.InRange(correlation, 0.58, 0.62);
        Assert.InRange(volX, 0.195, 0.205);
    }
}
