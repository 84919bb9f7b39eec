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
            .SelectMany(i => new[] { UnderlyingOf(i.Instrument), i.Instrument.InstrumentId })
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

        check.Require(!instrument.Inverse || instrument.Kind is InstrumentKind.Perpetual or InstrumentKind.Future, path + ".instrument.inverse", "only perpetuals and futures can be inverse");
        check.Require(instrument.UnderlyingKind is InstrumentKind.Unspecified or InstrumentKind.Spot or InstrumentKind.Future or InstrumentKind.Perpetual, path + ".instrument.underlying_kind", "must be spot, perpetual or future");
        if (item.Overrides is { } o)
        {
            if (o.HasFundingRate)
            {
                check.RequireRange(o.FundingRate, -0.1, 0.1, path + ".overrides.funding_rate");
            }

            check.RequireRange(o.FundingIntervalHours, 0, 24 * 7, path + ".overrides.funding_interval_hours");
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

        var overrides = item.Overrides;
        var market = new MarketInputs(
            (double)underlying,
            instrument.Kind is InstrumentKind.Perpetual or InstrumentKind.Future && prices.TryGetValue(instrument.InstrumentId, out var own) ? (double)own : null,
            overrides is { Volatility: > 0 } ? overrides.Volatility : settings.DefaultVolatility,
            overrides?.Rate is { } r && r != 0 ? r : settings.DefaultRate,
            overrides?.Carry ?? 0.0,
            overrides?.HasFundingRate == true ? overrides.FundingRate : null,
            overrides is { FundingIntervalHours: > 0 } ? overrides.FundingIntervalHours : 8);

        ContractValuation value;
        try
        {
            value = InstrumentPricer.Value(ToTerms(instrument), market, valuationTime);
        }
        catch (ArgumentOutOfRangeException ex)
        {
            result.Error = ex.Message.Split(" (Parameter", 2)[0];
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
        return result;
    }

    /// <summary>The contract terms the pricer needs, from a validated wire instrument.</summary>
    public static InstrumentTerms ToTerms(Instrument instrument) => new(
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

    private static string Truncate(string value) => value.Length <= 64 ? value : value[..64];
}
