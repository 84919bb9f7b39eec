namespace RebalanceMesh.Pricing.Core;

/// <summary>One venue's top of book for one instrument, as the pricing domain sees it.</summary>
public sealed record Tick(
    string Venue,
    string InstrumentId,
    decimal Bid,
    decimal Ask,
    decimal BidSize,
    decimal AskSize,
    decimal? Last,
    DateTimeOffset Timestamp)
{
    public decimal Mid => (Bid + Ask) / 2m;
}

/// <summary>Why a tick was rejected.</summary>
public enum TickRejectReason
{
    Malformed,
    NonPositivePrice,
    CrossedBook,
    FutureTimestamp,
    OutOfOrder,
    UnknownInstrument,
    UnknownVenue,

    /// <summary>Older than a live quote may be (the venue staleness window).</summary>
    Stale,

    /// <summary>Held out of the book as an outlier until another venue confirms its level.</summary>
    Quarantined,
}

/// <summary>A rejected tick's reason and a human-readable detail.</summary>
public sealed record TickRejection(TickRejectReason Reason, string Detail);
