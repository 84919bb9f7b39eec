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
    /// The registered terms of each instrument, in order: those this replica has not seen yet are asked of market state
    /// in one read (a registration made on another replica counts at once); an unregistered id is a spot asset.
    /// </summary>
    public async Task<Instrument[]> ResolveAsync(IReadOnlyList<string> instrumentIds)
    {
        var resolved = new Instrument[instrumentIds.Count];
        List<int>? unseen = null;
        for (var i = 0; i < resolved.Length; i++)
        {
            if (Find(instrumentIds[i]) is { } known)
            {
                resolved[i] = known;
            }
            else
            {
                (unseen ??= []).Add(i);
            }
        }

        if (unseen is null)
        {
            return resolved;
        }

        var registered = await market.GetRegisteredInstrumentsAsync(unseen.Select(i => instrumentIds[i]).ToArray());
        var remembered = new List<Instrument>();
        for (var k = 0; k < unseen.Count; k++)
        {
            var i = unseen[k];
            if (registered[k] is { } instrument)
            {
                resolved[i] = instrument;
                remembered.Add(instrument);
            }
            else
            {
                resolved[i] = new Instrument { InstrumentId = instrumentIds[i], Kind = InstrumentKind.Spot };
            }
        }

        if (remembered.Count > 0)
        {
            Remember(remembered);
        }

        return resolved;
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
