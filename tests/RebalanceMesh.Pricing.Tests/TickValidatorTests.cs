using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing.Tests;

public class TickValidatorTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 25, 12, 0, 0, TimeSpan.Zero);
    private readonly TickValidator _validator = new(["DAX", "USD"], new FakeTimeProvider(Now), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(60),
        new VenueRegistry(["SIM-A", "SIM-B"], new Dictionary<string, IReadOnlyCollection<string>> { ["FX"] = ["USD"] }));

    private static Tick Tick(decimal bid = 100m, decimal ask = 101m, string instrument = "DAX", string venue = "SIM-A", int secondsFromNow = 0, decimal size = 1m, decimal? last = null) =>
        new(venue, instrument, bid, ask, size, size, last, Now.AddSeconds(secondsFromNow));

    [Fact]
    public void Accepts_a_good_tick() => Assert.Null(_validator.Validate(Tick()));

    [Theory]
    [InlineData(0, 1, TickRejectReason.NonPositivePrice)]
    [InlineData(-1, 1, TickRejectReason.NonPositivePrice)]
    [InlineData(102, 101, TickRejectReason.CrossedBook)]
    public void Rejects_bad_prices(decimal bid, decimal ask, TickRejectReason reason) =>
        Assert.Equal(reason, _validator.Validate(Tick(bid, ask))!.Reason);

    [Fact]
    public void Rejects_negative_sizes_and_last() =>
        Assert.Equal(TickRejectReason.NonPositivePrice, _validator.Validate(Tick(size: -1))!.Reason);

    [Fact]
    public void Rejects_unknown_instruments_and_empty_venues()
    {
        Assert.Equal(TickRejectReason.UnknownInstrument, _validator.Validate(Tick(instrument: "NOPE"))!.Reason);
        Assert.Equal(TickRejectReason.UnknownVenue, _validator.Validate(Tick(venue: " "))!.Reason);
    }

    [Fact]
    public void Rejects_venues_nobody_configured_and_instruments_a_venue_does_not_list()
    {
        var ghost = _validator.Validate(Tick(venue: "HO-GHOST"))!;
        Assert.Equal(TickRejectReason.UnknownVenue, ghost.Reason);
        Assert.Contains("'HO-GHOST' is not one of the configured venues (FX, SIM-A, SIM-B)", ghost.Detail);
        Assert.Null(_validator.Validate(Tick(venue: "FX", instrument: "USD")));
        Assert.Equal(TickRejectReason.UnknownVenue, _validator.Validate(Tick(venue: "FX", instrument: "DAX"))!.Reason);
        Assert.Null(_validator.Validate(Tick(venue: "SIM-B", instrument: "USD")));
    }

    [Fact]
    public void Rejects_live_ticks_older_than_the_venue_window()
    {
        // The outside test's DAX tick stamped 1970-01-01 on a fresh venue, and one just past the window.
        var epoch = new Tick("SIM-B", "DAX", 1091m, 1093m, 1m, 1m, null, DateTimeOffset.UnixEpoch);
        Assert.Equal(TickRejectReason.Stale, _validator.Validate(epoch)!.Reason);
        Assert.Equal(TickRejectReason.Stale, _validator.Validate(Tick(secondsFromNow: -61))!.Reason);
        Assert.Null(_validator.Validate(Tick(secondsFromNow: -60)));
    }

    [Fact]
    public void Rejects_future_timestamps_beyond_the_skew()
    {
        Assert.Null(_validator.Validate(Tick(secondsFromNow: 4)));
        Assert.Equal(TickRejectReason.FutureTimestamp, _validator.Validate(Tick(secondsFromNow: 6))!.Reason);
    }

    [Fact]
    public void Rejects_out_of_order_ticks_per_venue_and_instrument()
    {
        Assert.Null(_validator.Validate(Tick(secondsFromNow: -1)));
        Assert.Equal(TickRejectReason.OutOfOrder, _validator.Validate(Tick(secondsFromNow: -2))!.Reason);
        Assert.Null(_validator.Validate(Tick(venue: "SIM-B", secondsFromNow: -2)));
    }

    [Fact]
    public void Seeded_times_order_later_ticks()
    {
        _validator.Seed("SIM-A", "DAX", Now);
        Assert.Equal(TickRejectReason.OutOfOrder, _validator.Validate(Tick(secondsFromNow: -1))!.Reason);
    }
}

public class QuoteCoalescerTests
{
    [Fact]
    public void Keeps_the_newest_value_per_key_until_flushed()
    {
        var coalescer = new QuoteCoalescer<int>();
        coalescer.Add("B", 1);
        coalescer.Add("A", 2);
        coalescer.Add("B", 3);
        Assert.Equal([2, 3], coalescer.Flush());
        Assert.Empty(coalescer.Flush());
    }

    [Fact]
    public void Restore_never_overwrites_a_newer_value()
    {
        var coalescer = new QuoteCoalescer<int>();
        coalescer.Add("A", 5);
        coalescer.Restore("A", 4);
        coalescer.Restore("B", 1);
        Assert.Equal([5, 1], coalescer.Flush());
    }
}
