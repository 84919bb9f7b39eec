using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Contracts.Events.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing;

/// <summary>gRPC surface of pricing: maps the wire to the domain and back.</summary>
public sealed class PricingGrpcService(
    QuoteIngestor ingestor,
    MarketStateStore market,
    InstrumentCatalog catalog,
    InstrumentValuer valuer,
    VolSurfaceService surfaces,
    RedisBroadcast<QuotesUpdated> quoteUpdates,
    TickValidator validator,
    TimeProvider time,
    ILogger<PricingGrpcService> logger)
    : PricingService.PricingServiceBase
{
    private const int MaxReportedRejections = 1_000;
    private const int MaxKeptRejections = 10 * MaxReportedRejections;
    private const int IngestBatchSize = 256;
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
        PricingRequests.ValidateInstrumentIds(check, request.InstrumentIds);

        check.ThrowIfInvalid();
        var ids = request.InstrumentIds.Distinct(StringComparer.Ordinal).ToArray();
        var response = new GetQuotesResponse();
        response.Quotes.AddRange(await market.GetQuotesAsync(ids));
        response.Prices.AddRange(await market.GetPricesAsync(ids));
        response.Quarantined.AddRange(await market.GetQuarantinedAsync(ids));
        return response;
    }

    public override Task<PriceInstrumentsResponse> PriceInstruments(PriceInstrumentsRequest request, ServerCallContext context) =>
        valuer.PriceAsync(request);

    public override async Task StreamQuotes(StreamQuotesRequest request, IServerStreamWriter<StreamQuotesResponse> responseStream, ServerCallContext context)
    {
        var check = new RequestValidator();
        PricingRequests.ValidateInstrumentIds(check, request.InstrumentIds);

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
        check.RequireCount(request.Instruments.Count, PricingRequests.MaxValuationItems, "instruments");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < request.Instruments.Count && i < PricingRequests.MaxValuationItems && check.Violations.Count < 100; i++)
        {
            if (PricingRequests.ValidateInstrument(check, request.Instruments[i], $"instruments[{i}]"))
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

    public override Task<ComputeImpliedVolatilitiesResponse> ComputeImpliedVolatilities(ComputeImpliedVolatilitiesRequest request, ServerCallContext context) =>
        valuer.ImpliedVolatilitiesAsync(request);

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

    private static string Truncate(string value) => value.Length <= 64 ? value : value[..64];
}
