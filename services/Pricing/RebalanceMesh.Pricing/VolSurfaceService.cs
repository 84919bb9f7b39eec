using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.MarketState;
using CoreSurface = RebalanceMesh.Pricing.Core.VolSurface;
using OptionQuote = RebalanceMesh.Pricing.Core.OptionQuote;
using WireSurface = RebalanceMesh.Contracts.Pricing.V1.VolSurface;

namespace RebalanceMesh.Pricing;

/// <summary>
/// Rebuilds the volatility surface of every underlying whose options were quoted since the last pass, and
/// refreshes the instrument catalog so every replica knows the registered instruments.
/// </summary>
public sealed class VolSurfaceService(
    InstrumentCatalog catalog,
    MarketStateStore market,
    IOptions<PricingOptions> options,
    TimeProvider time,
    ILogger<VolSurfaceService> logger) : BackgroundService
{
    private readonly ConcurrentDictionary<string, bool> _dirty = new(StringComparer.Ordinal);

    /// <summary>Marks the underlying of a quoted option for rebuilding.</summary>
    public void OptionQuoted(string instrumentId)
    {
        if (catalog.Find(instrumentId) is { Kind: InstrumentKind.Option } option)
        {
            _dirty[option.UnderlyingId] = true;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.VolSurfaceInterval, time);
        var nextRefresh = DateTimeOffset.MinValue;
        do
        {
            try
            {
                if (time.GetUtcNow() >= nextRefresh)
                {
                    await catalog.RefreshAsync();
                    nextRefresh = time.GetUtcNow() + TimeSpan.FromSeconds(5);
                }

                foreach (var underlying in _dirty.Keys)
                {
                    _dirty.TryRemove(underlying, out _);
                    await RebuildAsync(underlying);
                }
            }
            catch (Exception ex) when (ex is StackExchange.Redis.RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Volatility surface pass failed; retrying next interval");
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>Builds and stores the surface of one underlying from its options' consolidated mids.</summary>
    public async Task<WireSurface?> RebuildAsync(string underlying)
    {
        using var activity = QuoteIngestor.ActivitySource.StartActivity("build vol surface");
        activity?.SetTag("pricing.underlying", underlying);
        var optionsOn = catalog.OptionsOn(underlying);
        var ids = optionsOn.Select(o => o.InstrumentId).Append(underlying).ToArray();
        var mids = (await market.GetPricesAsync(ids)).ToDictionary(p => p.InstrumentId, p => (double)p.Mid.ToDecimal(), StringComparer.Ordinal);
        if (!mids.TryGetValue(underlying, out var spot))
        {
            return null;
        }

        var quotes = optionsOn
            .Where(o => mids.ContainsKey(o.InstrumentId))
            .Select(o => new OptionQuote(
                o.InstrumentId,
                o.OptionRight == OptionRight.Put ? Core.OptionRight.Put : Core.OptionRight.Call,
                (double)o.Strike.ToDecimal(),
                o.Expiry.ToDateTimeOffset(),
                mids[o.InstrumentId] / (DecimalValue.TryParse(o.Multiplier, out var m) && m > 0 ? (double)m : 1.0)))
            .ToArray();
        if (quotes.Length == 0)
        {
            return null;
        }

        var settings = options.Value;
        var surface = CoreSurface.Build(underlying, spot, settings.DefaultRate, 0, time.GetUtcNow(), quotes);
        var wire = VolSurfaceMapping.ToWire(surface);
        await market.SetVolSurfaceAsync(wire);
        activity?.SetTag("pricing.slices", surface.Slices.Count);
        return wire;
    }
}

/// <summary>Maps volatility surfaces between the pricing domain and the wire.</summary>
public static class VolSurfaceMapping
{
    public static WireSurface ToWire(CoreSurface surface)
    {
        var wire = new WireSurface
        {
            UnderlyingId = surface.UnderlyingId,
            Spot = surface.Spot,
            Rate = surface.Rate,
            Carry = surface.Carry,
            AsOf = surface.AsOf.ToTimestamp(),
        };
        foreach (var slice in surface.Slices)
        {
            var wireSlice = new Contracts.Pricing.V1.VolSlice { Expiry = slice.Expiry.ToTimestamp(), Years = slice.Years, Forward = slice.Forward };
            wireSlice.Points.AddRange(slice.Points.Select(p => new Contracts.Pricing.V1.VolPoint
            {
                InstrumentId = p.InstrumentId,
                Strike = p.Strike,
                LogMoneyness = p.LogMoneyness,
                ImpliedVolatility = p.ImpliedVolatility,
                TotalVariance = p.TotalVariance,
            }));
            wire.Slices.Add(wireSlice);
        }

        wire.Rejections.AddRange(surface.Rejections.Select(r => new Contracts.Pricing.V1.VolRejection { InstrumentId = r.InstrumentId, Reason = r.Reason }));
        return wire;
    }

    public static CoreSurface ToDomain(WireSurface wire) => new(
        wire.UnderlyingId,
        wire.Spot,
        wire.Rate,
        wire.Carry,
        wire.AsOf.ToDateTimeOffset(),
        wire.Slices.Select(s => new Core.SmileSlice(
            s.Expiry.ToDateTimeOffset(),
            s.Years,
            s.Forward,
            s.Points.Select(p => new Core.SmilePoint(p.InstrumentId, p.Strike, p.LogMoneyness, p.ImpliedVolatility, p.TotalVariance)).ToArray())).ToArray(),
        wire.Rejections.Select(r => new Core.SurfaceRejection(r.InstrumentId, r.Reason)).ToArray());
}
