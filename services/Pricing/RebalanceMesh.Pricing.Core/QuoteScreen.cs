using System.Globalization;

namespace RebalanceMesh.Pricing.Core;

/// <summary>The integrity rules of the consolidated book.</summary>
/// <param name="VenueStaleAfter">
/// A venue's quote more than this older than the instrument's newest quote is out of the book (and no reference for
/// outliers); a quarantined quote expires likewise.
/// </param>
/// <param name="OutlierBps">
/// A tick whose mid is further than this, in basis points, from the median mid of the other venues in the book is
/// quarantined.
/// </param>
public sealed record BookRules(TimeSpan VenueStaleAfter, double OutlierBps);

/// <summary>One instrument's venues before a batch: the latest quote per venue in the book, and those held in quarantine.</summary>
public sealed record VenueBookState(IReadOnlyList<Tick> Quotes, IReadOnlyList<Tick> Quarantined);

/// <summary>What a batch does to one instrument's book.</summary>
/// <param name="Accepted">Quotes that enter the book, in order: the batch's in-line ticks and the quarantined quotes they confirmed.</param>
/// <param name="Quarantined">The instrument's quarantine after the batch (it replaces the one before).</param>
/// <param name="Held">Position in the batch → why, for each tick the batch leaves quarantined.</param>
public sealed record ScreenResult(IReadOnlyList<Tick> Accepted, IReadOnlyList<Tick> Quarantined, IReadOnlyDictionary<int, string> Held);

/// <summary>
/// Screens validated ticks of one instrument against the other venues before they enter the consolidated book. A tick
/// whose mid is within <see cref="BookRules.OutlierBps"/> of the median mid of the other venues' fresh quotes enters
/// (as does any tick when no other venue is fresh: there is nothing to compare with). One further away is held in
/// quarantine — a rogue or broken venue cannot move the price — until a tick from another venue lands near it: a
/// real move shows up on several venues, and then both enter. Deterministic and pure: the same book and ticks give
/// the same result.
/// </summary>
public static class QuoteScreen
{
    public static ScreenResult Apply(VenueBookState state, IReadOnlyList<Tick> ticks, BookRules rules)
    {
        var book = new Dictionary<string, Tick>(StringComparer.Ordinal);
        foreach (var quote in state.Quotes)
        {
            book[quote.Venue] = quote;
        }

        var held = new Dictionary<string, (Tick Tick, int Index)>(StringComparer.Ordinal);
        foreach (var quote in state.Quarantined)
        {
            held[quote.Venue] = (quote, -1);
        }

        var accepted = new List<Tick>();
        var heldDetail = new Dictionary<int, string>();
        void Accept(Tick tick)
        {
            book[tick.Venue] = tick;
            accepted.Add(tick);
            held.Remove(tick.Venue);
        }

        for (var i = 0; i < ticks.Count; i++)
        {
            var tick = ticks[i];
            var fresh = tick.Timestamp - rules.VenueStaleAfter;
            var reference = Median(book.Values.Where(q => q.Venue != tick.Venue && q.Timestamp >= fresh).Select(q => q.Mid));
            if (reference is null || Deviation(tick.Mid, reference.Value) <= rules.OutlierBps)
            {
                Accept(tick);
                continue;
            }

            var confirming = held.Values
                .Where(h => h.Tick.Venue != tick.Venue && h.Tick.Timestamp >= fresh && Deviation(h.Tick.Mid, tick.Mid) <= rules.OutlierBps)
                .OrderBy(h => h.Tick.Timestamp)
                .ToArray();
            if (confirming.Length > 0)
            {
                foreach (var (quote, index) in confirming)
                {
                    if (!book.TryGetValue(quote.Venue, out var current) || current.Timestamp <= quote.Timestamp)
                    {
                        Accept(quote);
                    }

                    heldDetail.Remove(index);
                }

                Accept(tick);
                continue;
            }

            held[tick.Venue] = (tick, i);
            heldDetail[i] = string.Create(CultureInfo.InvariantCulture,
                $"mid {tick.Mid} is {Deviation(tick.Mid, reference.Value) / 100:F2} % from the other venues' median mid {reference.Value} (limit {rules.OutlierBps / 100:F2} %); held out of the book until another venue confirms its level");
        }

        // Quarantined quotes expire with the staleness window, like quotes in the book.
        var newest = book.Values.Select(q => q.Timestamp).Concat(held.Values.Select(h => h.Tick.Timestamp)).DefaultIfEmpty(DateTimeOffset.MinValue).Max();
        var quarantine = held.Values.Select(h => h.Tick).Where(q => q.Timestamp >= newest - rules.VenueStaleAfter).OrderBy(q => q.Venue, StringComparer.Ordinal).ToArray();
        return new ScreenResult(accepted, quarantine, heldDetail);
    }

    /// <summary>|a / b − 1| in basis points.</summary>
    private static double Deviation(decimal a, decimal b) => b <= 0 ? double.PositiveInfinity : Math.Abs((double)(a / b) - 1) * 10_000;

    private static decimal? Median(IEnumerable<decimal> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? null
            : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2]
            : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
