using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.MarketState;
using RebalanceMesh.Risk.Core;
using Wire = RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Risk;

/// <summary>One holding as the risk model sees it: its risk factor, value and exposure.</summary>
/// <param name="MarketValue">Value held: quantity × price for spot and options; zero for margined perpetuals and futures.</param>
/// <param name="Exposure">Exposure to the risk factor in currency: value for spot, quantity × dollar delta otherwise.</param>
/// <param name="UnitPrice">Cash paid per unit bought: price for spot and options, zero for margined contracts.</param>
/// <param name="UnitExposure">Exposure per unit: price for spot, dollar delta for derivatives.</param>
public sealed record BookPosition(string InstrumentId, string Factor, double Quantity, double MarketValue, double Exposure, Instrument? Derivative, InstrumentValuation? Valuation, double UnitPrice, double UnitExposure);

/// <summary>
/// A portfolio mapped onto risk factors. Spot holdings are their own factor; registered derivatives (in market state's
/// instrument registry) are valued by pricing and mapped onto their underlying by their dollar delta; options are
/// also revalued in full under each historical scenario through pricing.
/// </summary>
public sealed record RiskBook(IReadOnlyList<string> Factors, IReadOnlyList<double> Exposures, IReadOnlyList<BookPosition> Positions, double Cash, IReadOnlyList<Wire.UnderlyingGreeks> Greeks)
{
    public double NetValue => Positions.Sum(p => p.MarketValue) + Cash;

    /// <summary>A book from its positions: factors in order of first appearance, exposures and greeks summed per factor.</summary>
    public static RiskBook From(IReadOnlyList<BookPosition> positions, double cash)
    {
        var factors = positions.Select(p => p.Factor).Distinct(StringComparer.Ordinal).ToArray();
        var exposures = factors.Select(f => positions.Where(p => p.Factor == f).Sum(p => p.Exposure)).ToArray();
        var greeks = factors.Select(f =>
        {
            var onFactor = positions.Where(p => p.Factor == f).ToArray();
            return new Wire.UnderlyingGreeks
            {
                UnderlyingId = f,
                Delta = onFactor.Sum(p => p.Valuation is { } v ? p.Quantity * v.Delta : p.Quantity),
                DeltaNotional = onFactor.Sum(p => p.Exposure),
                Gamma = onFactor.Sum(p => p.Quantity * (p.Valuation?.Gamma ?? 0)),
                Vega = onFactor.Sum(p => p.Quantity * (p.Valuation?.Vega ?? 0)),
                Theta = onFactor.Sum(p => p.Quantity * (p.Valuation?.Theta ?? 0)),
            };
        }).ToArray();
        return new RiskBook(factors, exposures, positions, cash, greeks);
    }

    /// <summary>
    /// The same book with other quantities and cash: unit prices and valuations are per unit, so nothing is fetched
    /// again. Positions keep their order, so factors line up with this book's.
    /// </summary>
    public RiskBook WithQuantities(Func<string, double> quantity, double cash) =>
        From(Positions.Select(p =>
        {
            var q = quantity(p.InstrumentId);
            return p with { Quantity = q, MarketValue = q * p.UnitPrice, Exposure = q * p.UnitExposure };
        }).ToArray(), cash);

    public bool HasOptions => Positions.Any(p => p.Derivative?.Kind == InstrumentKind.Option);
}

/// <summary>Builds <see cref="RiskBook"/>s and revalues their options under historical scenarios.</summary>
public sealed class RiskBookBuilder(RiskInputs inputs, MarketStateStore market, PricingService.PricingServiceClient pricing)
{
    private const int MaxItemsPerCall = 10_000;

    public async Task<RiskBook> BuildAsync(IReadOnlyList<Wire.Holding> holdings, DecimalValue? cash, CancellationToken cancellationToken)
    {
        var registered = await Task.WhenAll(holdings.Select(h => market.GetRegisteredInstrumentAsync(h.InstrumentId)));
        var derivatives = holdings.Select((h, i) => (Holding: h, Instrument: registered[i]))
            .Where(x => x.Instrument is { Kind: not (InstrumentKind.Spot or InstrumentKind.Unspecified) })
            .ToArray();
        var spotHoldings = holdings.Where((_, i) => registered[i] is null or { Kind: InstrumentKind.Spot or InstrumentKind.Unspecified }).ToArray();
        var spot = spotHoldings.Length > 0 ? await inputs.ResolveAsync(spotHoldings, cash) : new PortfolioInputs([], [], [], DecimalValue.TryParse(cash, out var c) ? c : 0m);

        var positions = new List<BookPosition>();
        for (var i = 0; i < spot.Instruments.Count; i++)
        {
            var value = (double)(spot.Quantities[i] * spot.Prices[i]);
            var price = (double)spot.Prices[i];
            positions.Add(new BookPosition(spot.Instruments[i], spot.Instruments[i], (double)spot.Quantities[i], value, value, null, null, price, price));
        }

        if (derivatives.Length > 0)
        {
            var request = new PriceInstrumentsRequest();
            request.Items.AddRange(derivatives.Select(d => new ValuationItem { Instrument = d.Instrument }));
            var response = await pricing.PriceInstrumentsAsync(request, cancellationToken: cancellationToken);
            for (var i = 0; i < derivatives.Length; i++)
            {
                var (holding, instrument) = derivatives[i];
                var valuation = response.Valuations[i];
                if (valuation.Error.Length > 0)
                {
                    throw new DomainException(DomainErrorKind.FailedPrecondition, $"Pricing could not value {instrument!.InstrumentId}: {valuation.Error}");
                }

                var quantity = (double)holding.Quantity.ToDecimal();
                var margined = instrument!.Kind is InstrumentKind.Perpetual or InstrumentKind.Future;
                var unitPrice = margined ? 0 : (double)valuation.Price.ToDecimal();
                positions.Add(new BookPosition(instrument.InstrumentId, instrument.UnderlyingId, quantity,
                    quantity * unitPrice, quantity * valuation.DollarDelta, instrument, valuation, unitPrice, valuation.DollarDelta));
            }
        }

        return RiskBook.From(positions, (double)spot.Cash);
    }

    /// <summary>
    /// P&amp;L of every position when each risk factor moves by <paramref name="move"/> (relative) and option volatilities
    /// by <paramref name="volatilityShock"/>: delta-one and spot positions linearly, options revalued through pricing.
    /// </summary>
    public async Task<double[]> ScenarioPnlAsync(RiskBook book, Func<string, double> move, double volatilityShock, CancellationToken cancellationToken)
    {
        var pnl = book.Positions.Select(p => p.Derivative?.Kind == InstrumentKind.Option ? 0 : p.Exposure * move(p.Factor)).ToArray();
        var options = book.Positions.Select((p, i) => (Position: p, Index: i)).Where(x => x.Position.Derivative?.Kind == InstrumentKind.Option).ToArray();
        var revalued = await RevaluedPnlAsync(options.Select(o => (o.Position, move(o.Position.Factor), volatilityShock)).ToArray(), cancellationToken);
        for (var k = 0; k < options.Length; k++)
        {
            pnl[options[k].Index] = revalued[k];
        }

        return pnl;
    }

    /// <summary>
    /// Standard and portfolio margin of the book as one account. Portfolio margin revalues every option through pricing
    /// under each grid scenario (underlying price and volatility shocked together on every underlying).
    /// </summary>
    public async Task<Wire.MarginRequirement> MarginAsync(RiskBook book, MarginRates rates, CancellationToken cancellationToken)
    {
        var standard = MarginModel.Standard(book.Positions.Select(p => p.Derivative?.Kind switch
        {
            InstrumentKind.Perpetual or InstrumentKind.Future => new MarginPosition(MarginKind.DeltaOne, Math.Abs(p.Exposure), 0, p.Quantity < 0),
            InstrumentKind.Option => new MarginPosition(MarginKind.Option,
                Math.Abs(p.Quantity) * (double)p.Valuation!.UnderlyingPrice.ToDecimal() * (p.Valuation.Multiplier > 0 ? p.Valuation.Multiplier : 1),
                p.MarketValue, p.Quantity < 0),
            _ => new MarginPosition(MarginKind.Spot, Math.Abs(p.Exposure), 0, p.Quantity < 0),
        }), rates);

        var grid = MarginModel.Grid;
        var pnl = grid.Select(g => book.Positions.Where(p => p.Derivative?.Kind != InstrumentKind.Option).Sum(p => p.Exposure * g.Price)).ToArray();
        var options = book.Positions.Where(p => p.Derivative?.Kind == InstrumentKind.Option).ToArray();
        var revalued = await RevaluedPnlAsync(grid.SelectMany(g => options.Select(o => (o, g.Price, g.Volatility))).ToArray(), cancellationToken);
        for (var g = 0; g < grid.Count; g++)
        {
            for (var k = 0; k < options.Length; k++)
            {
                pnl[g] += revalued[(g * options.Length) + k];
            }
        }

        var portfolio = MarginModel.Portfolio(pnl);
        return new Wire.MarginRequirement
        {
            StandardInitial = standard.Initial,
            StandardMaintenance = standard.Maintenance,
            PortfolioMaintenance = portfolio.Maintenance,
            PortfolioInitial = portfolio.Initial,
            WorstPriceShock = portfolio.WorstPrice,
            WorstVolatilityShock = portfolio.WorstVolatility,
        };
    }

    /// <summary>
    /// Per historical day, full revaluation of the options minus the linear P&amp;L of their delta exposure: each option
    /// is repriced by pricing with its underlying moved by that day's return (volatility and rates held).
    /// </summary>
    public async Task<double[]?> RevaluationAdjustmentAsync(RiskBook book, ReturnMatrix returns, CancellationToken cancellationToken)
    {
        var options = book.Positions.Where(p => p.Derivative?.Kind == InstrumentKind.Option).ToArray();
        if (options.Length == 0)
        {
            return null;
        }

        var factorIndex = returns.Instruments.Select((id, i) => (id, i)).ToDictionary(x => x.id, x => x.i, StringComparer.Ordinal);
        var days = returns.Days;
        var scenarios = options
            .SelectMany(option => Enumerable.Range(0, days).Select(t => (Option: option, Day: t, Move: double.ExpM1(returns.Values[t, factorIndex[option.Factor]]))))
            .ToArray();
        var revalued = await RevaluedPnlAsync(scenarios.Select(s => (s.Option, s.Move, 0.0)).ToArray(), cancellationToken);
        var adjustment = new double[days];
        for (var k = 0; k < scenarios.Length; k++)
        {
            adjustment[scenarios[k].Day] += revalued[k] - (scenarios[k].Option.Exposure * scenarios[k].Move);
        }

        return adjustment;
    }

    /// <summary>
    /// Reprices each option through pricing with its underlying moved by a relative amount and its volatility shocked
    /// (relative; none when zero), in calls of at most <see cref="MaxItemsPerCall"/> items, and returns each one's P&amp;L:
    /// quantity × (new price − current price).
    /// </summary>
    private async Task<double[]> RevaluedPnlAsync(IReadOnlyList<(BookPosition Option, double Move, double VolatilityShock)> shocks, CancellationToken cancellationToken)
    {
        var pnl = new double[shocks.Count];
        var offset = 0;
        foreach (var chunk in shocks.Chunk(MaxItemsPerCall))
        {
            var request = new PriceInstrumentsRequest();
            request.Items.AddRange(chunk.Select(s =>
            {
                var valuation = s.Option.Valuation!;
                return new ValuationItem
                {
                    Instrument = s.Option.Derivative,
                    Overrides = new MarketOverrides
                    {
                        UnderlyingPrice = (decimal)Math.Round((double)valuation.UnderlyingPrice.ToDecimal() * (1 + s.Move), 10),
                        Volatility = s.VolatilityShock == 0 ? valuation.Volatility : Math.Max(valuation.Volatility * (1 + s.VolatilityShock), 1e-4),
                    },
                };
            }));
            var response = await pricing.PriceInstrumentsAsync(request, cancellationToken: cancellationToken);
            for (var k = 0; k < chunk.Length; k++)
            {
                var (option, _, _) = chunk[k];
                var valuation = response.Valuations[k];
                if (valuation.Error.Length > 0)
                {
                    throw new DomainException(DomainErrorKind.FailedPrecondition, $"Pricing could not revalue {option.InstrumentId}: {valuation.Error}");
                }

                pnl[offset + k] = option.Quantity * ((double)valuation.Price.ToDecimal() - (double)option.Valuation!.Price.ToDecimal());
            }

            offset += chunk.Length;
        }

        return pnl;
    }
}
