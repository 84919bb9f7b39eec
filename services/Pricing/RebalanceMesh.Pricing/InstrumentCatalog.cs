using System.Collections.Concurrent;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing;

/// <summary>
/// This replica's copy of the instrument registry in market state, refreshed periodically so replicas converge;
/// registered instruments are admitted to the tick validator's universe.
/// </summary>
public sealed class InstrumentCatalog(MarketStateStore market, TickValidator validator)
{
    private readonly ConcurrentDictionary<string, Instrument> _instruments = new(StringComparer.Ordinal);

    public Instrument? Find(string instrumentId) => _instruments.GetValueOrDefault(instrumentId);

    /// <summary>
    /// The registered terms of an instrument (asking market state when this replica has not seen it yet); an
    /// unregistered id is a spot asset.
    /// </summary>
    public async Task<Instrument> ResolveAsync(string instrumentId)
    {
        if (Find(instrumentId) is { } known)
        {
            return known;
        }

        if (await market.GetRegisteredInstrumentAsync(instrumentId) is { } registered)
        {
            Remember([registered]);
            return registered;
        }

        return new Instrument { InstrumentId = instrumentId, Kind = InstrumentKind.Spot };
    }

    public IReadOnlyList<Instrument> PerpetualsOn(string underlyingId) =>
        _instruments.Values.Where(i => i.Kind == InstrumentKind.Perpetual && i.UnderlyingId == underlyingId).ToArray();

    public IReadOnlyList<Instrument> OptionsOn(string underlyingId) =>
        _instruments.Values.Where(i => i.Kind == InstrumentKind.Option && i.UnderlyingId == underlyingId && i.InstrumentId != underlyingId).ToArray();

    public async Task UpsertAsync(IReadOnlyList<Instrument> instruments)
    {
        await market.UpsertInstrumentsAsync(instruments);
        Remember(instruments);
    }

    public async Task RefreshAsync() => Remember(await market.GetRegisteredInstrumentsAsync());

    private void Remember(IEnumerable<Instrument> instruments)
    {
        foreach (var instrument in instruments)
        {
            _instruments[instrument.InstrumentId] = instrument;
        }

        validator.Admit(instruments.Select(i => i.InstrumentId));
    }
}
