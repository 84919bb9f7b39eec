using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Contracts.Events.V1;
using Google.Protobuf.WellKnownTypes;
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
public sealed class PricingGrpcService(
    QuoteIngestor ingestor,
    MarketStateStore market,
    InstrumentCatalog catalog,
    VolSurfaceService surfaces,
    RedisBroadcast<QuotesUpdated> quoteUpdates,
    TickValidator validator,
    IOptions<PricingOptions> options,
    TimeProvider time,
    ILogger<PricingGrpcService> logger)
    : PricingService.PricingServiceBase
{
    private const int MaxReportedRejections = 1_000;
    private const int MaxKeptRejections = 10 * MaxReportedRejections;
    private const int IngestBatchSize = 256;
    private const int MaxValuationItems = 10_000;
    private const int MaxInstrumentsPerQuery = 10_000;
    private const int MaxImportedCloses = 10_000;
    private static readonly int EarliestImportedDay = MarketState.DailyClose.DayOf(new DateTimeOffset(1900, 1, 1, 0, 0, 0, TimeSpan.Zero));

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
        ValidateInstrumentIds(check, request.InstrumentIds);

        check.ThrowIfInvalid();
        var ids = request.InstrumentIds.Distinct(StringComparer.Ordinal).ToArray();
        var response = new GetQuotesResponse();
        response.Quotes.AddRange(await market.GetQuotesAsync(ids));
        response.Prices.AddRange(await market.GetPricesAsync(ids));
        response.Quarantined.AddRange(await market.GetQuarantinedAsync(ids));
        return response;
    }

    public override async Task<PriceInstrumentsResponse> PriceInstruments(PriceInstrumentsRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        ValidateBatch(check, request.Items.Count, request.ValuationTime);
        for (var i = 0; i < request.Items.Count && i < MaxValuationItems && check.Violations.Count < 100; i++)
        {
            ValidateItem(check, request.Items[i], $"items[{i}]");
        }

        check.ThrowIfInvalid();

        var valuationTime = request.ValuationTime?.ToDateTimeOffset() ?? time.GetUtcNow();
        var instruments = new Instrument[request.Items.Count];
        for (var i = 0; i < instruments.Length; i++)
        {
            instruments[i] = request.Items[i].Instrument ?? await catalog.ResolveAsync(request.Items[i].InstrumentId);
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

    /// <summary>A batch of items: at least one, at most the limit, and a valid valuation time when given.</summary>
    private static void ValidateBatch(RequestValidator check, int count, Timestamp? valuationTime)
    {
        check.Require(count > 0, "items", "must not be empty");
        check.RequireCount(count, MaxValuationItems, "items");
        check.RequireTimestamp(valuationTime, "valuation_time", optional: true);
    }

    private static void ValidateInstrumentIds(RequestValidator check, IReadOnlyList<string> ids)
    {
        check.RequireCount(ids.Count, MaxInstrumentsPerQuery, "instrument_ids");
        for (var i = 0; i < ids.Count && i < MaxInstrumentsPerQuery; i++)
        {
            check.RequireIdentifier(ids[i], $"instrument_ids[{i}]");
        }
    }

    private static void ValidateItem(RequestValidator check, ValuationItem item, string path)
    {
        if (item.Instrument is null && item.InstrumentId.Length > 0)
        {
            check.RequireIdentifier(item.InstrumentId, path + ".instrument_id");
        }
        else if (!ValidateInstrument(check, item.Instrument, path + ".instrument"))
        {
            return;
        }

        ValidateOverrides(check, item.Overrides, path + ".overrides");
    }

    /// <summary>Checks an instrument's identity and terms; false when it is missing.</summary>
    public static bool ValidateInstrument(RequestValidator check, Instrument? instrument, string path)
    {
        if (!check.Require(instrument is not null, path, "is required"))
        {
            return false;
        }

        check.RequireIdentifier(instrument!.InstrumentId, path + ".instrument_id");
        check.Require(instrument.Kind != InstrumentKind.Unspecified, path + ".kind", "is required");
        check.Require(System.Enum.IsDefined(instrument.Kind), path + ".kind", "is not a known kind");
        if (instrument.Kind != InstrumentKind.Spot && instrument.Kind != InstrumentKind.Unspecified)
        {
            if (check.RequireIdentifier(instrument.UnderlyingId, path + ".underlying_id"))
            {
                check.Require(!string.Equals(instrument.UnderlyingId, instrument.InstrumentId, StringComparison.Ordinal), path + ".underlying_id", "a derivative cannot be its own underlying");
            }
        }

        check.OptionalDecimal(instrument.Multiplier, path + ".multiplier", ValidationExtensions.DecimalRule.Positive, 1m, out _);
        if (instrument.Kind == InstrumentKind.Option)
        {
            check.RequireDecimal(instrument.Strike, path + ".strike", ValidationExtensions.DecimalRule.Positive, out _);
            check.Require(instrument.OptionRight is WireOptionRight.Call or WireOptionRight.Put, path + ".option_right", "is required for options");
            check.RequireTimestamp(instrument.Expiry, path + ".expiry");
        }

        if (instrument.Kind == InstrumentKind.Future)
        {
            check.RequireTimestamp(instrument.Expiry, path + ".expiry");
        }

        check.Require(!instrument.Inverse || instrument.Kind is InstrumentKind.Perpetual or InstrumentKind.Future, path + ".inverse", "only perpetuals and futures can be inverse");
        check.Require(instrument.UnderlyingKind is InstrumentKind.Unspecified or InstrumentKind.Spot or InstrumentKind.Future or InstrumentKind.Perpetual, path + ".underlying_kind", "must be spot, perpetual or future");
        check.Require(instrument.QuoteCurrency.Length <= 8 && instrument.SettlementCurrency.Length <= 8, path + ".quote_currency", "currency codes are at most 8 characters");
        return true;
    }

    private static void ValidateOverrides(RequestValidator check, MarketOverrides? o, string path)
    {
        if (o is null)
        {
            return;
        }

        check.OptionalDecimal(o.UnderlyingPrice, path + ".underlying_price", ValidationExtensions.DecimalRule.Positive, 1m, out _);
        check.RequireRange(o.Volatility, 0, 10, path + ".volatility");
#pragma warning disable CS0612 // the deprecated rate and carry are still served, and may not be combined with their successors
        check.RequireRange(o.Rate, -1, 1, path + ".rate");
        check.RequireRange(o.Carry, -1, 1, path + ".carry");
        check.Require(!(o.HasRiskFreeRate && o.Rate != 0), path + ".risk_free_rate", "set risk_free_rate or the deprecated rate, not both");
        check.Require(!(o.HasCarryRate && o.Carry != 0), path + ".carry_rate", "set carry_rate or the deprecated carry, not both");
#pragma warning restore CS0612
        if (o.HasRiskFreeRate)
        {
            check.RequireRange(o.RiskFreeRate, -1, 1, path + ".risk_free_rate");
        }

        if (o.HasCarryRate)
        {
            check.RequireRange(o.CarryRate, -1, 1, path + ".carry_rate");
        }

        if (o.HasFundingRate)
        {
            check.RequireRange(o.FundingRate, -0.1, 0.1, path + ".funding_rate");
        }

        check.RequireRange(o.FundingIntervalHours, 0, 24 * 7, path + ".funding_interval_hours");
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

    public override async Task StreamQuotes(StreamQuotesRequest request, IServerStreamWriter<StreamQuotesResponse> responseStream, ServerCallContext context)
    {
        var check = new RequestValidator();
        ValidateInstrumentIds(check, request.InstrumentIds);

        check.ThrowIfInvalid();
        var wanted = request.InstrumentIds.ToHashSet(StringComparer.Ordinal);

        // Subscribe first so nothing between the snapshot and the first update is lost.
        using var subscription = quoteUpdates.Subscribe();
        var snapshot = new StreamQuotesResponse { AsOf = time.GetUtcNow().ToTimestamp() };
        snapshot.Prices.AddRange(await market.GetPricesAsync(wanted));
        await responseStream.WriteAsync(snapshot, context.CancellationToken);
        try
        {
            await subscription.Reader.RelayAsync(responseStream, update =>
            {
                var selected = update.Prices.Where(p => wanted.Count == 0 || wanted.Contains(p.InstrumentId)).ToArray();
                if (selected.Length == 0)
                {
                    return null;
                }

                var message = new StreamQuotesResponse { AsOf = update.AsOf };
                message.Prices.AddRange(selected);
                return message;
            }, context.CancellationToken);
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The watcher went away.
        }
    }

    public override async Task<UpsertInstrumentsResponse> UpsertInstruments(UpsertInstrumentsRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.Require(request.Instruments.Count > 0, "instruments", "must not be empty");
        check.RequireCount(request.Instruments.Count, MaxValuationItems, "instruments");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < request.Instruments.Count && i < MaxValuationItems && check.Violations.Count < 100; i++)
        {
            if (ValidateInstrument(check, request.Instruments[i], $"instruments[{i}]"))
            {
                check.Require(seen.Add(request.Instruments[i].InstrumentId), $"instruments[{i}].instrument_id", "appears more than once");
            }
        }

        check.ThrowIfInvalid();
        await catalog.UpsertAsync(request.Instruments);
        return new UpsertInstrumentsResponse { StoredCount = request.Instruments.Count };
    }

    public override async Task<ListInstrumentsResponse> ListInstruments(ListInstrumentsRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        if (request.UnderlyingId.Length > 0)
        {
            check.RequireIdentifier(request.UnderlyingId, "underlying_id");
        }

        check.ThrowIfInvalid();
        var response = new ListInstrumentsResponse();
        response.Instruments.AddRange((await market.GetRegisteredInstrumentsAsync())
            .Where(i => request.UnderlyingId.Length == 0 || i.UnderlyingId == request.UnderlyingId));
        return response;
    }

    public override async Task<ComputeImpliedVolatilitiesResponse> ComputeImpliedVolatilities(ComputeImpliedVolatilitiesRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        ValidateBatch(check, request.Items.Count, request.ValuationTime);
        for (var i = 0; i < request.Items.Count && i < MaxValuationItems && check.Violations.Count < 100; i++)
        {
            var item = request.Items[i];
            if (ValidateInstrument(check, item.Instrument, $"items[{i}].instrument"))
            {
                check.Require(item.Instrument.Kind == InstrumentKind.Option, $"items[{i}].instrument.kind", "must be INSTRUMENT_KIND_OPTION");
            }

            check.RequireDecimal(item.Price, $"items[{i}].price", ValidationExtensions.DecimalRule.Positive, out _);
            ValidateOverrides(check, item.Overrides, $"items[{i}].overrides");
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

    public override async Task<GetVolSurfaceResponse> GetVolSurface(GetVolSurfaceRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.UnderlyingId, "underlying_id");
        check.ThrowIfInvalid();
        var surface = await market.GetVolSurfaceAsync(request.UnderlyingId)
            ?? await surfaces.RebuildAsync(request.UnderlyingId)
            ?? throw DomainException.NotFound($"Volatility surface of '{request.UnderlyingId}' (no quoted options registered on it)");
        return new GetVolSurfaceResponse { Surface = surface };
    }

    public override async Task<GetPriceHistoryResponse> GetPriceHistory(GetPriceHistoryRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.InstrumentId, "instrument_id");
        check.Require(request.DailyCount is >= 0 and <= 10_000, "daily_count", "must be between 0 and 10,000");
        check.Require(request.IntradayCount is >= 0 and <= 10_000, "intraday_count", "must be between 0 and 10,000");
        check.ThrowIfInvalid();
        var response = new GetPriceHistoryResponse();
        if (request.DailyCount > 0)
        {
            response.DailyCloses.AddRange((await market.GetDailyClosesAsync(request.InstrumentId, request.DailyCount))
                .Select(c => new PricePoint { Time = Timestamp.FromDateTime(DateTime.SpecifyKind(c.Date.ToDateTime(TimeOnly.MinValue), DateTimeKind.Utc)), Price = c.Close }));
        }

        response.Intraday.AddRange((await market.GetIntradayAsync(request.InstrumentId, request.IntradayCount))
            .Select(p => new PricePoint { Time = p.Time.ToTimestamp(), Price = p.Mid }));
        return response;
    }

    public override async Task<ImportPriceHistoryResponse> ImportPriceHistory(ImportPriceHistoryRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        if (check.RequireIdentifier(request.InstrumentId, "instrument_id"))
        {
            check.Require(validator.Knows(request.InstrumentId), "instrument_id", "is not a known instrument: register it first (UpsertInstruments, kind SPOT for a plain asset)");
        }

        check.Require(request.Closes.Count > 0, "closes", "must not be empty");
        check.RequireCount(request.Closes.Count, MaxImportedCloses, "closes");
        var today = MarketState.DailyClose.DayOf(time.GetUtcNow());
        var days = new HashSet<int>();
        var closes = new List<MarketState.DailyClose>(request.Closes.Count);
        for (var i = 0; i < request.Closes.Count && i < MaxImportedCloses && check.Violations.Count < 100; i++)
        {
            var point = request.Closes[i];
            var dayValid = check.RequireTimestamp(point.Day, $"closes[{i}].day");
            var closeValid = check.RequireDecimal(point.Close, $"closes[{i}].close", ValidationExtensions.DecimalRule.Positive, out var close);
            if (!dayValid || !closeValid)
            {
                continue;
            }

            var day = MarketState.DailyClose.DayOf(point.Day.ToDateTimeOffset());
            if (check.Require(day <= today, $"closes[{i}].day", "is after today (UTC)")
                && check.Require(day >= EarliestImportedDay, $"closes[{i}].day", "is before 1900-01-01")
                && check.Require(days.Add(day), $"closes[{i}].day", "appears more than once")
                && check.Require(double.IsFinite((double)close) && (double)close > 0, $"closes[{i}].close", "is too small to store as a price"))
            {
                closes.Add(new MarketState.DailyClose(day, (double)close));
            }
        }

        check.ThrowIfInvalid();
        using var activity = QuoteIngestor.ActivitySource.StartActivity("import price history");
        activity?.SetTag("pricing.instrument_id", request.InstrumentId);
        activity?.SetTag("pricing.closes", closes.Count);
        var (replaced, total) = await market.UpsertDailyClosesAsync(request.InstrumentId, closes);
        logger.LogInformation("Imported {Count} daily closes of {Instrument} ({Replaced} replaced, {Total} kept)", closes.Count, request.InstrumentId, replaced, total);
        return new ImportPriceHistoryResponse { StoredCount = closes.Count, ReplacedCount = replaced, TotalCount = total };
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
