using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing.Tests;

/// <summary>The consolidated book's outlier screen, on hand-made books (10 % limit, 60 s window).</summary>
public class QuoteScreenTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);
    private static readonly BookRules Rules = new(TimeSpan.FromSeconds(60), 1_000);

    private static Tick Quote(string venue, decimal bid, decimal ask, int seconds = 0) => new(venue, "CAC", bid, ask, 10m, 10m, null, Now.AddSeconds(seconds));

    private static VenueBookState Book(params Tick[] quotes) => new(quotes, []);

    [Fact]
    public void A_rogue_venue_far_from_the_others_is_quarantined_and_reported()
    {
        // CAC at 1966–1967 on SIM-A and SIM-B; SIM-C quotes a bid at half the mid (the outside test's −25 % move).
        var book = Book(Quote("SIM-A", 1966m, 1967m, -1), Quote("SIM-B", 1965.5m, 1967.5m, -1));
        var rogue = Quote("SIM-C", 983.65m, 1964.9m);
        var result = QuoteScreen.Apply(book, [rogue], Rules);

        Assert.Empty(result.Accepted);
        Assert.Equal([rogue], result.Quarantined);
        var detail = Assert.Single(result.Held);
        Assert.Equal(0, detail.Key);
        Assert.Contains("is 25.03 % from the other venues", detail.Value); // mid 1474.275 against 1966.5: 1 − 1474.275 / 1966.5 = 0.2503
    }

    [Fact]
    public void A_real_move_confirmed_by_a_second_venue_enters_with_the_first()
    {
        var book = Book(Quote("SIM-A", 99.9m, 100.1m, -1), Quote("SIM-B", 99.8m, 100.2m, -1), Quote("SIM-C", 99.7m, 100.3m, -1));
        var crashA = Quote("SIM-A", 69.9m, 70.1m);
        var crashB = Quote("SIM-B", 69.8m, 70.2m);
        var crashC = Quote("SIM-C", 69.7m, 70.3m);
        var result = QuoteScreen.Apply(book, [crashA, crashB, crashC], Rules);

        // A is held (30 % from B and C); B lands within 10 % of held A: both enter; C is then in line with them.
        Assert.Equal([crashA, crashB, crashC], result.Accepted);
        Assert.Empty(result.Quarantined);
        Assert.Empty(result.Held);
    }

    [Fact]
    public void A_quarantined_quote_waits_across_batches_and_expires_with_the_window()
    {
        var book = Book(Quote("SIM-A", 99.9m, 100.1m, -1), Quote("SIM-B", 99.8m, 100.2m, -1));
        var first = QuoteScreen.Apply(book, [Quote("SIM-C", 119.9m, 120.1m)], Rules);
        Assert.Single(first.Quarantined);

        // Next batch: SIM-A moves to 120 — it is now the outlier against SIM-B, but held SIM-C confirms it.
        var second = QuoteScreen.Apply(new VenueBookState(book.Quotes, first.Quarantined), [Quote("SIM-A", 119.8m, 120.2m, 1)], Rules);
        Assert.Equal(["SIM-C", "SIM-A"], second.Accepted.Select(t => t.Venue));
        Assert.Empty(second.Quarantined);

        // A held quote older than the window behind the newest quote is dropped, not kept forever.
        var late = QuoteScreen.Apply(new VenueBookState(book.Quotes, first.Quarantined), [Quote("SIM-A", 100m, 100.2m, 61)], Rules);
        Assert.Equal(["SIM-A"], late.Accepted.Select(t => t.Venue));
        Assert.Empty(late.Quarantined);
    }

    [Fact]
    public void With_no_other_fresh_venue_there_is_nothing_to_compare_and_the_tick_enters()
    {
        var alone = QuoteScreen.Apply(Book(), [Quote("SIM-A", 50m, 51m)], Rules);
        Assert.Single(alone.Accepted);

        // SIM-B's quote is 2 minutes old: out of the book, so no reference for SIM-A's new level either.
        var staleOther = QuoteScreen.Apply(Book(Quote("SIM-B", 99m, 101m, -120)), [Quote("SIM-A", 50m, 51m)], Rules);
        Assert.Single(staleOther.Accepted);

        // An in-line tick from a venue with a held quote clears its quarantine.
        var cleared = QuoteScreen.Apply(new VenueBookState([Quote("SIM-A", 99.9m, 100.1m, -1)], [Quote("SIM-B", 10m, 11m, -1)]), [Quote("SIM-B", 99.8m, 100.2m)], Rules);
        Assert.Equal(["SIM-B"], cleared.Accepted.Select(t => t.Venue));
        Assert.Empty(cleared.Quarantined);
    }
}
