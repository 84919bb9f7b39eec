using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;
using CoreOptionRight = RebalanceMesh.Pricing.Core.OptionRight;
using WireOptionRight = RebalanceMesh.Contracts.Common.V1.OptionRight;

namespace RebalanceMesh.Pricing;

/// <summary>
/// PriceInstruments and ComputeImpliedVolatilities: instruments valued (price and greeks) on the market state or on a
/// caller's overrides, and option prices turned into implied volatilities. Each validates its request as its RPC
/// answers it (InvalidArgument with the fields at fault).
/// </summary>
public sealed class InstrumentValuer(MarketStateStore market, InstrumentCatalog catalog, IOptions<PricingOptions> options, TimeProvider time)
{
    /// <summary>PriceInstruments: each item valued on the market state (its own price and its underlying's) or on its overrides.</summary>
    public async Task<PriceInstrumentsResponse> PriceAsync(PriceInstrumentsRequest request)
    {
        var check = new RequestValidator();
        PricingRequests.ValidateBatch(check, request.Items.Count, request.ValuationTime);
        for (var i = 0; i < request.Items.Count && i < PricingRequests.MaxValuationItems && check.Violations.Count < 100; i++)
        {
            PricingRequests.ValidateItem(check, request.Items[i], $"items[{i}]");
        }

        check.ThrowIfInvalid();

        var valuationTime = request.ValuationTime?.ToDateTimeOffset() ?? time.GetUtcNow();
        // Items with terms are valued on those; items by id take the registered terms (one read for all of them).
        var byId = Enumerable.Range(0, request.Items.Count).Where(i => request.Items[i].Instrument is null).ToArray();
        var resolved = await catalog.ResolveAsync(byId.Select(i => request.Items[i].InstrumentId).ToArray());
        var instruments = request.Items.Select(i => i.Instrument).ToArray();
        for (var k = 0; k < byId.Length; k++)
        {
            instruments[byId[k]] = resolved[k];
        }

        var ids = instruments.SelectMany(i => new[] { UnderlyingOf(i), i.InstrumentId }).Distinct(StringComparer.Ordinal).ToArray();
        var prices = (await market.GetPricesAsync(ids)).ToDictionary(p => p.InstrumentId, StringComparer.Ordinal);
        var volSurfaces = await LoadSurfacesAsync(instruments
            .Where((instrument, i) => instrument.Kind == InstrumentKind.Option && !(request.Items[i].Overrides is { Volatility: > 0 }))
            .Select(i => i.UnderlyingId));

        var response = new PriceInstrumentsResponse();
        for (var i = 0; i < instruments.Length; i++)
        {
            response.Valuations.Add(Value(instruments[i], request.Items[i].Overrides, prices, volSurfaces, valuationTime));
        }

        return response;
    }

    private static string UnderlyingOf(Instrument instrument) =>
        instrument.Kind == InstrumentKind.Spot || string.IsNullOrEmpty(instrument.UnderlyingId) ? instrument.InstrumentId : instrument.UnderlyingId;

    /// <summary>ComputeImpliedVolatilities: the volatility at which each option's model price is the price given; an error per item that has none.</summary>
    public async Task<ComputeImpliedVolatilitiesResponse> ImpliedVolatilitiesAsync(ComputeImpliedVolatilitiesRequest request)
    {
        var check = new RequestValidator();
        PricingRequests.ValidateBatch(check, request.Items.Count, request.ValuationTime);
        for (var i = 0; i < request.Items.Count && i < PricingRequests.MaxValuationItems && check.Violations.Count < 100; i++)
        {
            var item = request.Items[i];
            if (PricingRequests.ValidateInstrument(check, item.Instrument, $"items[{i}].instrument"))
            {
                check.Require(item.Instrument.Kind == InstrumentKind.Option, $"items[{i}].instrument.kind", "must be INSTRUMENT_KIND_OPTION");
            }

            check.RequireDecimal(item.Price, $"items[{i}].price", ValidationExtensions.DecimalRule.Positive, out _);
            PricingRequests.ValidateOverrides(check, item.Overrides, $"items[{i}].overrides");
        }

        check.ThrowIfInvalid();
        var now = request.ValuationTime?.ToDateTimeOffset() ?? time.GetUtcNow();
        var mids = (await market.GetPricesAsync(request.Items.Select(i => i.Instrument.UnderlyingId).Distinct(StringComparer.Ordinal).ToArray()))
            .ToDictionary(p => p.InstrumentId, p => p.Mid.ToDecimal(), StringComparer.Ordinal);
        var settings = options.Value;
        var response = new ComputeImpliedVolatilitiesResponse();
        foreach (var item in request.Items)
        {
            var result = new ImpliedVolatilityResult { InstrumentId = item.Instrument.InstrumentId };
            var instrument = item.Instrument;
            decimal underlying;
            if (item.Overrides?.UnderlyingPrice is { Value.Length: > 0 } given)
            {
                underlying = given.ToDecimal();
            }
            else if (!mids.TryGetValue(instrument.UnderlyingId, out underlying))
            {
                result.Error = $"no price for '{instrument.UnderlyingId}' in market state";
                response.Results.Add(result);
                continue;
            }

            var rate = RateOf(item.Overrides, settings.DefaultRate);
            var carry = instrument.UnderlyingKind == InstrumentKind.Future ? rate : CarryOf(item.Overrides);
            var years = YearFraction.Between(now, instrument.Expiry.ToDateTimeOffset());
            var right = instrument.OptionRight == WireOptionRight.Put ? CoreOptionRight.Put : CoreOptionRight.Call;
            try
            {
                if (years <= 0)
                {
                    throw new ArgumentOutOfRangeException(nameof(request), "the option has expired");
                }

                result.ImpliedVolatility = ImpliedVolatility.Solve(right, (double)item.Price.ToDecimal(), (double)underlying, (double)instrument.Strike.ToDecimal(), years, rate, carry);
            }
            catch (ImpliedVolatilityException ex)
            {
                result.Error = ex.Message;
            }
            catch (ArgumentOutOfRangeException ex)
            {
                result.Error = ArgumentErrors.Reason(ex);
            }

            response.Results.Add(result);
        }

        return response;
    }

    private async Task<IReadOnlyDictionary<string, Core.VolSurface>> LoadSurfacesAsync(IEnumerable<string> underlyings)
    {
        var result = new Dictionary<string, Core.VolSurface>(StringComparer.Ordinal);
        foreach (var underlying in underlyings.Distinct(StringComparer.Ordinal))
        {
            if (await market.GetVolSurfaceAsync(underlying) is { Slices.Count: > 0 } surface)
            {
                result[underlying] = VolSurfaceMapping.ToDomain(surface);
            }
        }

        return result;
    }

    private InstrumentValuation Value(Instrument instrument, MarketOverrides? overrides, IReadOnlyDictionary<string, ConsolidatedPrice> prices, IReadOnlyDictionary<string, Core.VolSurface> volSurfaces, DateTimeOffset valuationTime)
    {
        var settings = options.Value;
        var result = new InstrumentValuation { InstrumentId = instrument.InstrumentId, Kind = instrument.Kind, UnderlyingId = UnderlyingOf(instrument) };
        decimal underlying;
        if (overrides?.UnderlyingPrice is { Value.Length: > 0 } overridePrice)
        {
            underlying = overridePrice.ToDecimal();
        }
        else if (prices.TryGetValue(UnderlyingOf(instrument), out var underlyingPrice))
        {
            underlying = underlyingPrice.Mid.ToDecimal();
            result.Stale = underlyingPrice.Stale;
            result.Crossed = underlyingPrice.Crossed;
        }
        else
        {
            result.Error = $"no price for '{UnderlyingOf(instrument)}' in market state";
            return result;
        }

        double? ownMid = null;
        if (instrument.Kind is InstrumentKind.Perpetual or InstrumentKind.Future && prices.TryGetValue(instrument.InstrumentId, out var own))
        {
            ownMid = (double)own.Mid.ToDecimal();
            result.Stale |= own.Stale;
            result.Crossed |= own.Crossed;
        }

        var market = new MarketInputs(
            (double)underlying,
            ownMid,
            VolatilityFor(instrument, overrides, volSurfaces, valuationTime, settings.DefaultVolatility),
            RateOf(overrides, settings.DefaultRate),
            CarryOf(overrides),
            overrides?.HasFundingRate == true ? overrides.FundingRate : null,
            overrides is { FundingIntervalHours: > 0 } ? overrides.FundingIntervalHours : 8);

        ContractValuation value;
        try
        {
            value = InstrumentPricer.Value(ToTerms(instrument), market, valuationTime);
        }
        catch (ArgumentOutOfRangeException ex)
        {
            result.Error = ArgumentErrors.Reason(ex);
            return result;
        }

        result.Price = decimal.Round((decimal)value.Price, 10);
        result.Delta = value.Delta;
        result.Gamma = value.Gamma;
        result.Vega = value.Vega;
        result.Theta = value.Theta;
        result.Rho = value.Rho;
        result.CoinDelta = value.CoinDelta;
        result.DollarDelta = value.DollarDelta;
        result.UnderlyingPrice = underlying;
        result.IndexPrice = decimal.Round((decimal)value.IndexPrice, 10);
        result.MarkPrice = decimal.Round((decimal)value.MarkPrice, 10);
        result.Basis = value.Basis;
        result.AnnualisedBasis = value.AnnualisedBasis;
        result.FundingRate = value.FundingRate;
        result.FundingPayment = value.FundingPayment;
        result.ContractValue = value.ContractValue;
        result.Volatility = instrument.Kind == InstrumentKind.Option ? market.Volatility : 0;
        result.Multiplier = DecimalValue.TryParse(instrument.Multiplier, out var multiplier) && multiplier > 0 ? (double)multiplier : 1.0;
        return result;
    }

    /// <summary>
    /// The rate an override asks for: <c>risk_free_rate</c> when set (zero is a zero rate), else the deprecated
    /// <c>rate</c> when non-zero (its zero cannot be told from unset), else the service's default.
    /// </summary>
    public static double RateOf(MarketOverrides? overrides, double defaultRate)
    {
#pragma warning disable CS0612 // the deprecated field is still honoured for older clients
        return overrides switch
        {
            { HasRiskFreeRate: true } => overrides.RiskFreeRate,
            { Rate: not 0 } => overrides.Rate,
            _ => defaultRate,
        };
#pragma warning restore CS0612
    }

    /// <summary>The carry an override asks for: <c>carry_rate</c> when set, else the deprecated <c>carry</c> (zero: none).</summary>
    public static double CarryOf(MarketOverrides? overrides)
    {
#pragma warning disable CS0612 // the deprecated field is still honoured for older clients
        return overrides is { HasCarryRate: true } ? overrides.CarryRate : overrides?.Carry ?? 0.0;
#pragma warning restore CS0612
    }

    /// <summary>Volatility of an option: the request's, else the underlying's surface at strike and expiry, else the default.</summary>
    private static double VolatilityFor(Instrument instrument, MarketOverrides? overrides, IReadOnlyDictionary<string, Core.VolSurface> volSurfaces, DateTimeOffset valuationTime, double fallback)
    {
        if (overrides is { Volatility: > 0 })
        {
            return overrides.Volatility;
        }

        if (instrument.Kind == InstrumentKind.Option && volSurfaces.TryGetValue(instrument.UnderlyingId, out var surface))
        {
            var years = Math.Max(0, YearFraction.Between(valuationTime, instrument.Expiry.ToDateTimeOffset()));
            return surface.Volatility((double)instrument.Strike.ToDecimal(), years);
        }

        return fallback;
    }

    /// <summary>The contract terms the pricer needs, from a validated wire instrument.</summary>
    private static InstrumentTerms ToTerms(Instrument instrument) => new(
        instrument.InstrumentId,
        instrument.Kind switch
        {
            InstrumentKind.Perpetual => ContractKind.Perpetual,
            InstrumentKind.Future => ContractKind.Future,
            InstrumentKind.Option => ContractKind.Option,
            _ => ContractKind.Spot,
        },
        DecimalValue.TryParse(instrument.Multiplier, out var m) && m > 0 ? (double)m : 1.0,
        instrument.Inverse,
        DecimalValue.TryParse(instrument.Strike, out var k) ? (double)k : 0,
        instrument.Expiry?.ToDateTimeOffset(),
        instrument.OptionRight == WireOptionRight.Put ? CoreOptionRight.Put : CoreOptionRight.Call,
        instrument.UnderlyingKind == InstrumentKind.Future);
}
