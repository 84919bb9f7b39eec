using Grpc.Core;
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

/// <summary>gRPC surface of pricing: maps the wire to the domain and back.</summary>
public sealed class PricingGrpcService(QuoteIngestor ingestor, MarketStateStore market, IOptions<PricingOptions> options, TimeProvider time)
    : PricingService.PricingServiceBase
{
    private const int MaxReportedRejections = 1_000;
    private const int MaxKeptRejections = 10 * MaxReportedRejections;
    private const int IngestBatchSize = 256;
    private const int MaxValuationItems = 10_000;
    private const int MaxInstrumentsPerQuery = 10_000;

    public override async Task<IngestQuotesResponse> IngestQuotes(IAsyncStreamReader<IngestQuotesRequest> requestStream, ServerCallContext context)
    {
        var response = new IngestQuotesResponse();
        var batch = new List<Tick>(IngestBatchSize);
        var batchIndexes = new List<long>(IngestBatchSize);
        long index = 0;

        async Task FlushAsync()
        {
            var rejections = await ingestor.IngestAsync(batch, "grpc");
            response.AcceptedCount += batch.Count - rejections.Count;
            foreach (var (i, rejection) in rejections)
            {
                AddRejection(response, batchIndexes[i], batch[i].Venue, batch[i].InstrumentId, rejection);
            }

            batch.Clear();
            batchIndexes.Clear();
        }

        await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
        {
            var quote = request.Quote ?? new Quote();
            var tick = QuoteMapping.ToTick(quote, out var malformed);
            if (tick is null)
            {
                ingestor.Record(malformed!, quote.Venue, quote.InstrumentId);
                AddRejection(response, index, quote.Venue, quote.InstrumentId, malformed!);
            }
            else
            {
                batch.Add(tick);
                batchIndexes.Add(index);
                if (batch.Count == IngestBatchSize)
                {
                    await FlushAsync();
                }
            }

            index++;
        }

        if (batch.Count > 0)
        {
            await FlushAsync();
        }

        // Malformed ticks are reported at once and the rest per batch: report them in stream order.
        var ordered = response.Rejections.OrderBy(r => r.Index).Take(MaxReportedRejections).ToArray();
        response.Rejections.Clear();
        response.Rejections.AddRange(ordered);
        return response;
    }

    private static void AddRejection(IngestQuotesResponse response, long index, string venue, string instrument, TickRejection rejection)
    {
        response.RejectedCount++;
        if (response.Rejections.Count < MaxKeptRejections)
        {
            response.Rejections.Add(new QuoteRejection
            {
                Index = index,
                Venue = Truncate(venue),
                InstrumentId = Truncate(instrument),
                Reason = rejection.Reason.ToWire(),
                Detail = rejection.Detail,
            });
        }
    }

    public override async Task<GetQuotesResponse> GetQuotes(GetQuotesRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireCount(request.InstrumentIds.Count, MaxInstrumentsPerQuery, "instrument_ids");
        for (var i = 0; i < request.InstrumentIds.Count; i++)
        {
            check.RequireIdentifier(request.InstrumentIds[i], $"instrument_ids[{i}]");
        }

        check.ThrowIfInvalid();
        var ids = request.InstrumentIds.Distinct(StringComparer.Ordinal).ToArray();
        var response = new GetQuotesResponse();
        response.Quotes.AddRange(await market.GetQuotesAsync(ids));
        response.Prices.AddRange(await market.GetPricesAsync(ids));
        return response;
    }

    public override async Task<PriceInstrumentsResponse> PriceInstruments(PriceInstrumentsRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.Require(request.Items.Count > 0, "items", "must not be empty");
        check.RequireTimestamp(request.ValuationTime, "valuation_time", optional: true);
        check.RequireCount(request.Items.Count, MaxValuationItems, "items");
        for (var i = 0; i < request.Items.Count && check.Violations.Count < 100; i++)
        {
            ValidateItem(check, request.Items[i], $"items[{i}]");
        }

        check.ThrowIfInvalid();

        var valuationTime = request.ValuationTime?.ToDateTimeOffset() ?? time.GetUtcNow();
        var underlyings = request.Items
            .Select(i => UnderlyingOf(i.Instrument))
            .Distinct(StringComparer.Ordinal)
            .ToArray();
        var prices = (await market.GetPricesAsync(underlyings)).ToDictionary(p => p.InstrumentId, p => p.Mid.ToDecimal(), StringComparer.Ordinal);

        var response = new PriceInstrumentsResponse();
        foreach (var item in request.Items)
        {
            response.Valuations.Add(Value(item, prices, valuationTime));
        }

        return response;
    }

    private static string UnderlyingOf(Instrument instrument) =>
        instrument.Kind == InstrumentKind.Spot || string.IsNullOrEmpty(instrument.UnderlyingId) ? instrument.InstrumentId : instrument.UnderlyingId;

    private static void ValidateItem(RequestValidator check, ValuationItem item, string path)
    {
        if (!check.Require(item.Instrument is not null, path + ".instrument", "is required"))
        {
            return;
        }

        var instrument = item.Instrument!;
        check.RequireIdentifier(instrument.InstrumentId, path + ".instrument.instrument_id");
        check.Require(instrument.Kind != InstrumentKind.Unspecified, path + ".instrument.kind", "is required");
        if (instrument.Kind != InstrumentKind.Spot && instrument.Kind != InstrumentKind.Unspecified)
        {
            check.RequireIdentifier(instrument.UnderlyingId, path + ".instrument.underlying_id");
        }

        check.OptionalDecimal(instrument.Multiplier, path + ".instrument.multiplier", ValidationExtensions.DecimalRule.Positive, 1m, out _);
        if (instrument.Kind == InstrumentKind.Option)
        {
            check.RequireDecimal(instrument.Strike, path + ".instrument.strike", ValidationExtensions.DecimalRule.Positive, out _);
            check.Require(instrument.OptionRight != WireOptionRight.Unspecified, path + ".instrument.option_right", "is required for options");
            check.RequireTimestamp(instrument.Expiry, path + ".instrument.expiry");
        }

        if (instrument.Kind == InstrumentKind.Future)
        {
            check.RequireTimestamp(instrument.Expiry, path + ".instrument.expiry");
        }

        if (item.Overrides is { } o)
        {
            check.OptionalDecimal(o.UnderlyingPrice, path + ".overrides.underlying_price", ValidationExtensions.DecimalRule.Positive, 1m, out _);
            check.RequireRange(o.Volatility, 0, 10, path + ".overrides.volatility");
            check.RequireRange(o.Rate, -1, 1, path + ".overrides.rate");
            check.RequireRange(o.Carry, -1, 1, path + ".overrides.carry");
        }
    }

    private InstrumentValuation Value(ValuationItem item, IReadOnlyDictionary<string, decimal> prices, DateTimeOffset valuationTime)
    {
        var instrument = item.Instrument;
        var settings = options.Value;
        var result = new InstrumentValuation { InstrumentId = instrument.InstrumentId };
        decimal underlying;
        if (item.Overrides?.UnderlyingPrice is { Value.Length: > 0 } overridePrice)
        {
            underlying = overridePrice.ToDecimal();
        }
        else if (!prices.TryGetValue(UnderlyingOf(instrument), out underlying))
        {
            result.Error = $"no price for '{UnderlyingOf(instrument)}' in market state";
            return result;
        }

        var volatility = item.Overrides is { Volatility: > 0 } ? item.Overrides.Volatility : settings.DefaultVolatility;
        var rate = item.Overrides?.Rate is { } r && r != 0 ? r : settings.DefaultRate;
        var carry = item.Overrides?.Carry ?? 0.0;
        var multiplier = DecimalValue.TryParse(instrument.Multiplier, out var m) && m > 0 ? m : 1m;
        result.UnderlyingPrice = underlying;
        result.Volatility = volatility;

        switch (instrument.Kind)
        {
            case InstrumentKind.Spot:
            case InstrumentKind.Perpetual:
                result.Price = underlying * multiplier;
                result.Delta = (double)multiplier;
                break;
            case InstrumentKind.Future:
            {
                var years = YearsTo(instrument.Expiry, valuationTime);
                var growth = Math.Exp((rate - carry) * years);
                result.Price = decimal.Round(underlying * (decimal)growth * multiplier, 10);
                result.Delta = growth * (double)multiplier;
                result.Rho = (double)underlying * years * growth * (double)multiplier;
                break;
            }

            case InstrumentKind.Option:
            {
                var years = YearsTo(instrument.Expiry, valuationTime);
                var right = instrument.OptionRight == WireOptionRight.Call ? CoreOptionRight.Call : CoreOptionRight.Put;
                var greeks = BlackScholes.Value(right, (double)underlying, (double)instrument.Strike.ToDecimal(), years, rate, carry, volatility);
                var scale = (double)multiplier;
                result.Price = decimal.Round((decimal)(greeks.Price * scale), 10);
                result.Delta = greeks.Delta * scale;
                result.Gamma = greeks.Gamma * scale;
                result.Vega = greeks.Vega * scale;
                result.Theta = greeks.Theta * scale;
                result.Rho = greeks.Rho * scale;
                break;
            }

            default:
                result.Error = "instrument kind is not supported";
                break;
        }

        return result;
    }

    private static double YearsTo(Google.Protobuf.WellKnownTypes.Timestamp expiry, DateTimeOffset now) =>
        Math.Max(0, (expiry.ToDateTimeOffset() - now).TotalDays / 365.0);

    private static string Truncate(string value) => value.Length <= 64 ? value : value[..64];
}
