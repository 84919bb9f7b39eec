namespace RebalanceMesh.Pricing.Core.Feeds;

/// <summary>One business day's close, for seeding price history.</summary>
public readonly record struct HistoricalClose(DateOnly Date, double Close);

/// <summary>How one venue quotes around the feed's price.</summary>
/// <param name="Venue">Venue identifier.</param>
/// <param name="HalfSpreadBps">Half the bid–ask spread in basis points of the price.</param>
/// <param name="Size">Quantity shown at the best bid and ask.</param>
public sealed record VenueQuoteStyle(string Venue, double HalfSpreadBps, decimal Size);

/// <summary>
/// A source of quotes: its instruments, the history to seed before it starts, and a stream of tick batches.
/// Implemented by CSV replay and the simulated market here; real venue connectors implement the same interface.
/// </summary>
public interface IQuoteFeed
{
    string Name { get; }

    IReadOnlyList<string> Instruments { get; }

    /// <summary>Daily closes for the business days before <paramref name="today"/>, oldest first.</summary>
    IReadOnlyDictionary<string, IReadOnlyList<HistoricalClose>> History(DateOnly today);

    /// <summary>Tick batches (one tick per venue and instrument each) until cancelled or the feed ends.</summary>
    IAsyncEnumerable<IReadOnlyList<Tick>> StreamAsync(CancellationToken cancellationToken);
}

/// <summary>Weekday calendar without holidays, as the sample data uses.</summary>
public static class BusinessCalendar
{
    /// <summary>The <paramref name="count"/> weekdays strictly before <paramref name="today"/>, oldest first.</summary>
    public static IReadOnlyList<DateOnly> WeekdaysBefore(DateOnly today, int count)
    {
        var days = new DateOnly[count];
        var day = today;
        for (var i = count - 1; i >= 0; i--)
        {
            do
            {
                day = day.AddDays(-1);
            }
            while (day.DayOfWeek is DayOfWeek.Saturday or DayOfWeek.Sunday);
            days[i] = day;
        }

        return days;
    }
}

/// <summary>Turns a price into one tick per venue, each with its own spread.</summary>
public static class VenueQuotes
{
    public static IEnumerable<Tick> Around(string instrument, double price, IReadOnlyList<VenueQuoteStyle> venues, DateTimeOffset timestamp)
    {
        var mid = decimal.Round((decimal)price, 6);
        foreach (var venue in venues)
        {
            var half = decimal.Round(mid * (decimal)venue.HalfSpreadBps / 10_000m, 6);
            half = Math.Max(half, 0.000001m);
            yield return new Tick(venue.Venue, instrument, mid - half, mid + half, venue.Size, venue.Size, mid, timestamp);
        }
    }
}
