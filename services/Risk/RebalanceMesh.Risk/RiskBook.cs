using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.MarketState;
using RebalanceMesh.Risk.Core;
using Wire = RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Risk;

/// <summary>One holding as the risk model sees it: its account, risk factor, value and exposure.</summary>
/// <param name="Venue">Account (venue) the holding sits in; empty for the default account.</param>
/// <param name="MarketValue">Value held: quantity × unit price plus the open profit of a margined contract.</param>
/// <param name="Exposure">Exposure to the risk factor in currency: value for spot, quantity × dollar delta otherwise.</param>
/// <param name="UnitPrice">Cash paid per unit bought: price for spot and options, zero for margined contracts.</param>
/// <param name="UnitExposure">Exposure per unit: price for spot, dollar delta for derivatives.</param>
/// <param name="OpenProfit">Unrealised profit of a margined contract since its entry price; trading at the mark keeps it.</param>
public sealed record BookPosition(
    string InstrumentId,
    string Venue,
    string Factor,
    double Quantity,
    double MarketValue,
    double Exposure,
    Instrument? Derivative,
    InstrumentValuation? Valuation,
    double UnitPrice,
    double UnitExposure,
    double OpenProfit = 0)
{
    /// <summary>The position's key: an instrument appears at most once per account.</summary>
    public (string Venue, string InstrumentId) Key => (Venue, InstrumentId);
}

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
    public RiskBook WithQuantities(Func<BookPosition, double> quantity, double cash) =>
        From(Positions.Select(p =>
        {
            var q = quantity(p);
            return p with { Quantity = q, MarketValue = (q * p.UnitPrice) + p.OpenProfit, Exposure = q * p.UnitExposure };
        }).ToArray(), cash);

    public bool HasOptions => Positions.Any(p => p.Derivative?.Kind == InstrumentKind.Option);
}

/// <summary>Builds <see cref="RiskBook"/>s and revalues their options under historical scenarios.</summary>
public sealed class RiskBookBuilder(RiskInputs inputs, MarketStateStore market, PricingService.PricingServiceClient pricing)
{
    private const int MaxItemsPerCall = 10_000;

    /// <summary>
    /// The book of <paramref name="holdings"/> in their order: spot holdings at their given price or market-state mid,
    /// registered derivatives valued by pricing (margined contracts worth their open profit since their entry price).
    /// </summary>
    public async Task<RiskBook> BuildAsync(IReadOnlyList<Wire.Holding> holdings, DecimalValue? cash, CancellationToken cancellationToken)
    {
        var registered = await market.GetRegisteredInstrumentsAsync(holdings.Select(h => h.InstrumentId).ToArray());
        bool IsSpot(int i) => registered[i] is null or { Kind: InstrumentKind.Spot or InstrumentKind.Unspecified };
        var spotIndex = Enumerable.Range(0, holdings.Count).Where(IsSpot).ToArray();
        var derivativeIndex = Enumerable.Range(0, holdings.Count).Where(i => !IsSpot(i)).ToArray();
        var spot = spotIndex.Length > 0
            ? await inputs.ResolveAsync(spotIndex.Select(i => holdings[i]).ToArray(), cash)
            : new PortfolioInputs([], [], [], DecimalValue.TryParse(cash, out var c) ? c : 0m);

        var positions = new BookPosition[holdings.Count];
        for (var k = 0; k < spotIndex.Length; k++)
        {
            var value = (double)(spot.Quantities[k] * spot.Prices[k]);
            var price = (double)spot.Prices[k];
            var holding = holdings[spotIndex[k]];
            positions[spotIndex[k]] = new BookPosition(holding.InstrumentId, holding.Venue, holding.InstrumentId, (double)spot.Quantities[k], value, value, null, null, price, price);
        }

        if (derivativeIndex.Length > 0)
        {
            var request = new PriceInstrumentsRequest();
            request.Items.AddRange(derivativeIndex.Select(i => new ValuationItem { Instrument = registered[i] }));
            var response = await pricing.PriceInstrumentsAsync(request, cancellationToken: cancellationToken);
            for (var k = 0; k < derivativeIndex.Length; k++)
            {
                var holding = holdings[derivativeIndex[k]];
                var instrument = registered[derivativeIndex[k]]!;
                var valuation = response.Valuations[k];
                if (valuation.Error.Length > 0)
                {
                    throw new DomainException(DomainErrorKind.FailedPrecondition, $"Pricing could not value {instrument.InstrumentId}: {valuation.Error}");
                }

                var quantity = (double)holding.Quantity.ToDecimal();
                var price = (double)valuation.Price.ToDecimal();
                var margined = instrument.Kind is InstrumentKind.Perpetual or InstrumentKind.Future;
                var unitPrice = margined ? 0 : price;
                var multiplier = valuation.Multiplier > 0 ? valuation.Multiplier : 1;
                var openProfit = margined && DecimalValue.TryParse(holding.EntryPrice, out var entry) ? quantity * (price - ((double)entry * multiplier)) : 0;
                positions[derivativeIndex[k]] = new BookPosition(instrument.InstrumentId, holding.Venue, instrument.UnderlyingId, quantity,
                    (quantity * unitPrice) + openProfit, quantity * valuation.DollarDelta, instrument, valuation, unitPrice, valuation.DollarDelta, openProfit);
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
    /// Standard and portfolio margin of the whole book as one cross-margined account, and of each account (venue) on its
    /// own. Portfolio margin revalues every option through pricing once per grid scenario (underlying price and
    /// volatility shocked together on every underlying); the accounts' figures are sums over their own positions.
    /// </summary>
    public async Task<(Wire.MarginRequirement Total, IReadOnlyList<Wire.VenueMargin> Venues)> MarginAsync(RiskBook book, MarginRates rates, CancellationToken cancellationToken)
    {
        var positions = book.Positions;
        var grid = MarginModel.Grid;
        var options = Enumerable.Range(0, positions.Count).Where(i => positions[i].Derivative?.Kind == InstrumentKind.Option).ToArray();
        var revalued = await RevaluedPnlAsync(grid.SelectMany(g => options.Select(i => (positions[i], g.Price, g.Volatility))).ToArray(), cancellationToken);

        // P&L of each position in each grid scenario: linear for spot and delta-one, in full for options.
        var pnl = new double[grid.Count, positions.Count];
        for (var g = 0; g < grid.Count; g++)
        {
            for (var i = 0; i < positions.Count; i++)
            {
                pnl[g, i] = positions[i].Derivative?.Kind == InstrumentKind.Option ? 0 : positions[i].Exposure * grid[g].Price;
            }

            for (var k = 0; k < options.Length; k++)
            {
                pnl[g, options[k]] = revalued[(g * options.Length) + k];
            }
        }

        Wire.MarginRequirement Account(IReadOnlyList<int> members)
        {
            var standard = MarginModel.Standard(members.Select(i => ToMarginPosition(positions[i])), rates);
            var portfolio = MarginModel.Portfolio(Enumerable.Range(0, grid.Count).Select(g => members.Sum(i => pnl[g, i])).ToArray());
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

        var total = Account(Enumerable.Range(0, positions.Count).ToArray());
        var venues = Enumerable.Range(0, positions.Count)
            .GroupBy(i => positions[i].Venue, StringComparer.Ordinal)
            .Select(group => new Wire.VenueMargin { Venue = group.Key, Margin = Account(group.ToArray()) })
            .ToArray();
        return (total, venues);
    }

    private static MarginPosition ToMarginPosition(BookPosition p) => p.Derivative?.Kind switch
    {
        InstrumentKind.Perpetual or InstrumentKind.Future => new MarginPosition(MarginKind.DeltaOne, Math.Abs(p.Exposure), 0, p.Quantity < 0),
        InstrumentKind.Option => new MarginPosition(MarginKind.Option,
            Math.Abs(p.Quantity) * (double)p.Valuation!.UnderlyingPrice.ToDecimal() * (p.Valuation.Multiplier > 0 ? p.Valuation.Multiplier : 1),
            p.MarketValue, p.Quantity < 0),
        _ => new MarginPosition(MarginKind.Spot, Math.Abs(p.Exposure), 0, p.Quantity < 0),
    };

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
