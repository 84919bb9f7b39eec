using System.Diagnostics;
using System.Diagnostics.Metrics;
using RebalanceMesh.Contracts.Pricing.V1;

namespace RebalanceMesh.Planning;

/// <summary>
/// Values instruments through pricing, coalescing concurrent requests (<see cref="CallCoalescer{TRequest, TAnswer}"/>):
/// the requests that arrive while one PriceInstruments call is in flight go together in the next, each instrument asked
/// once, and each caller gets exactly its instruments.
/// </summary>
public sealed class PriceBatcher : IAsyncDisposable
{
    /// <summary>Most instruments one PriceInstruments call values (pricing's own limit is 10,000).</summary>
    public const int CallLimit = 2_000;

    private static readonly Meter Meter = new("RebalanceMesh.Planning.Pricing");
    private static readonly Histogram<long> RequestsPerCall = Meter.CreateHistogram<long>("rebalancemesh.planning.price_batch.requests", description: "Valuation requests one shared PriceInstruments call served.");

    private readonly PricingService.PricingServiceClient _pricing;
    private readonly CallCoalescer<IReadOnlyCollection<string>, IReadOnlyList<InstrumentValuation>> _calls;

    public PriceBatcher(PricingService.PricingServiceClient pricing)
    {
        _pricing = pricing;
        _calls = new("price batch", ServeAsync, instruments => instruments.Count, maxRequests: int.MaxValue, maxWeight: CallLimit, RequestsPerCall);
    }

    /// <summary>The valuation of each instrument asked for (one per instrument; an instrument pricing cannot value carries its error).</summary>
    public async Task<IReadOnlyList<InstrumentValuation>> PriceAsync(IReadOnlyCollection<string> instruments, CancellationToken cancellationToken) =>
        instruments.Count == 0 ? [] : await _calls.CallAsync(instruments, cancellationToken);

    private async Task<IReadOnlyList<IReadOnlyList<InstrumentValuation>>> ServeAsync(IReadOnlyList<IReadOnlyCollection<string>> batch, CancellationToken cancellationToken)
    {
        var wanted = batch.SelectMany(r => r).ToHashSet(StringComparer.Ordinal);
        Activity.Current?.SetTag("planning.price_batch.instruments", wanted.Count);
        var valued = new Dictionary<string, InstrumentValuation>(wanted.Count, StringComparer.Ordinal);
        foreach (var chunk in wanted.Chunk(CallLimit))
        {
            var request = new PriceInstrumentsRequest();
            request.Items.AddRange(chunk.Select(id => new ValuationItem { InstrumentId = id }));
            var response = await _pricing.PriceInstrumentsAsync(request, cancellationToken: cancellationToken);
            foreach (var valuation in response.Valuations)
            {
                valued[valuation.InstrumentId] = valuation;
            }
        }

        return batch.Select(r => (IReadOnlyList<InstrumentValuation>)r.Where(valued.ContainsKey).Select(id => valued[id]).ToArray()).ToArray();
    }

    public ValueTask DisposeAsync() => _calls.DisposeAsync();
}
