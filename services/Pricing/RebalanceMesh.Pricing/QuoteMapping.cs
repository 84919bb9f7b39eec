using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing;

/// <summary>Maps between wire quotes and domain ticks.</summary>
public static class QuoteMapping
{
    /// <summary>Maps a wire quote; a malformed number or missing timestamp is a rejection, not an exception.</summary>
    public static Tick? ToTick(Quote quote, out TickRejection? rejection)
    {
        rejection = null;
        var check = new RequestValidator();
        check.RequireDecimal(quote.Bid, "bid", ValidationExtensions.DecimalRule.Any, out var bid);
        check.RequireDecimal(quote.Ask, "ask", ValidationExtensions.DecimalRule.Any, out var ask);
        check.OptionalDecimal(quote.BidSize, "bid_size", ValidationExtensions.DecimalRule.Any, 0m, out var bidSize);
        check.OptionalDecimal(quote.AskSize, "ask_size", ValidationExtensions.DecimalRule.Any, 0m, out var askSize);
        check.OptionalDecimal(quote.Last, "last", ValidationExtensions.DecimalRule.Any, -1m, out var last);
        check.RequireTimestamp(quote.Timestamp, "timestamp");
        check.RequireNotEmpty(quote.InstrumentId, "instrument_id", 64);
        if (!check.IsValid)
        {
            rejection = new TickRejection(TickRejectReason.Malformed, string.Join("; ", check.Violations.Select(v => $"{v.Field} {v.Description}")));
            return null;
        }

        return new Tick(quote.Venue, quote.InstrumentId, bid, ask, bidSize, askSize, last == -1m ? null : last, quote.Timestamp!.ToDateTimeOffset());
    }

    public static Quote ToQuote(this Tick tick)
    {
        var quote = new Quote
        {
            Venue = tick.Venue,
            InstrumentId = tick.InstrumentId,
            Bid = tick.Bid,
            Ask = tick.Ask,
            BidSize = tick.BidSize,
            AskSize = tick.AskSize,
            Timestamp = tick.Timestamp.ToTimestamp(),
        };
        if (tick.Last is { } last)
        {
            quote.Last = last;
        }

        return quote;
    }

    public static RejectReason ToWire(this TickRejectReason reason) => reason switch
    {
        TickRejectReason.Malformed => RejectReason.Malformed,
        TickRejectReason.NonPositivePrice => RejectReason.NonPositivePrice,
        TickRejectReason.CrossedBook => RejectReason.CrossedBook,
        TickRejectReason.FutureTimestamp => RejectReason.FutureTimestamp,
        TickRejectReason.OutOfOrder => RejectReason.OutOfOrder,
        TickRejectReason.UnknownInstrument => RejectReason.UnknownInstrument,
        TickRejectReason.UnknownVenue => RejectReason.UnknownVenue,
        TickRejectReason.Stale => RejectReason.Stale,
        TickRejectReason.Quarantined => RejectReason.Quarantined,
        _ => RejectReason.Unspecified,
    };
}
