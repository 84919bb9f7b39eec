namespace RebalanceMesh.Pricing.Core;

/// <summary>
/// The venues pricing takes quotes from. A venue is known when configured; a venue with a listing quotes only the
/// instruments listed (for example a currency venue quoting only currencies), one without quotes any instrument of
/// the universe. Quotes from anywhere else are refused: a venue nobody configured cannot move a price.
/// </summary>
public sealed class VenueRegistry
{
    private readonly Dictionary<string, HashSet<string>?> _venues = new(StringComparer.Ordinal);

    /// <param name="venues">Venues that may quote every instrument of the universe.</param>
    /// <param name="listings">Venues that may quote only the instruments listed (a venue in both lists is restricted).</param>
    public VenueRegistry(IEnumerable<string> venues, IReadOnlyDictionary<string, IReadOnlyCollection<string>>? listings = null)
    {
        foreach (var venue in venues.Where(v => !string.IsNullOrWhiteSpace(v)))
        {
            _venues[venue] = null;
        }

        foreach (var (venue, instruments) in listings ?? new Dictionary<string, IReadOnlyCollection<string>>())
        {
            if (!string.IsNullOrWhiteSpace(venue))
            {
                _venues[venue] = instruments.Count == 0 ? null : instruments.ToHashSet(StringComparer.Ordinal);
            }
        }
    }

    public IReadOnlyCollection<string> Venues => _venues.Keys;

    /// <summary>Null when <paramref name="venue"/> may quote <paramref name="instrument"/>; else why not.</summary>
    public TickRejection? Check(string venue, string instrument)
    {
        if (string.IsNullOrWhiteSpace(venue))
        {
            return new(TickRejectReason.UnknownVenue, "venue is empty");
        }

        if (!_venues.TryGetValue(venue, out var listed))
        {
            return new(TickRejectReason.UnknownVenue, $"venue '{Shorten(venue)}' is not one of the configured venues ({string.Join(", ", _venues.Keys.Order(StringComparer.Ordinal))})");
        }

        return listed is not null && !listed.Contains(instrument)
            ? new(TickRejectReason.UnknownVenue, $"venue '{venue}' does not list '{Shorten(instrument)}'")
            : null;
    }

    private static string Shorten(string text) => text.Length <= 64 ? text : text[..64] + "…";
}
