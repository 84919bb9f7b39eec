using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.MarketState;
using RebalanceMesh.Risk.Core;
using Wire = RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Risk;

/// <summary>A validated portfolio: instruments, quantities and prices, ready for the risk models.</summary>
public sealed record PortfolioInputs(IReadOnlyList<string> Instruments, IReadOnlyList<decimal> Quantities, IReadOnlyList<decimal> Prices, decimal Cash);

/// <summary>Validates risk requests and loads what they need from market state.</summary>
public sealed class RiskInputs(MarketStateStore market, HistoryCache history)
{
    public const int MaxHoldings = 2_000;
    public const int MaxLookbackDays = 5_000;
    public const int DefaultLookbackDays = 500;
    public const int DefaultScenarios = 10_000;
    public const int MaxScenarios = 200_000;
    public const long MaxScenarioCells = 20_000_000;
    public const int MaxCorrelationHoldings = 500;

    public static void ValidateHoldings(RequestValidator check, IReadOnlyList<Wire.Holding> holdings, string path, bool allowEmpty = false)
    {
        check.Require(allowEmpty || holdings.Count > 0, path, "must not be empty");
        check.RequireCount(holdings.Count, MaxHoldings, path);
        var seen = new HashSet<(string, string)>();
        for (var i = 0; i < holdings.Count && i < MaxHoldings; i++)
        {
            var holding = holdings[i];
            var venueValid = holding.Venue.Length == 0 || check.RequireIdentifier(holding.Venue, $"{path}[{i}].venue");
            if (check.RequireIdentifier(holding.InstrumentId, $"{path}[{i}].instrument_id") && venueValid)
            {
                check.Require(seen.Add((holding.Venue, holding.InstrumentId)), $"{path}[{i}].instrument_id", "appears more than once in the same account");
            }

            check.RequireDecimal(holding.Quantity, $"{path}[{i}].quantity", ValidationExtensions.DecimalRule.Any, out _);
            check.OptionalDecimal(holding.Price, $"{path}[{i}].price", ValidationExtensions.DecimalRule.Positive, 0m, out _);
            check.OptionalDecimal(holding.EntryPrice, $"{path}[{i}].entry_price", ValidationExtensions.DecimalRule.Positive, 1m, out _);
        }
    }

    public static RiskSettings ValidateSettings(RequestValidator check, Wire.RiskSettings? settings, string path, out int lookbackDays)
    {
        settings ??= new Wire.RiskSettings();
        var horizon = settings.HorizonDays == 0 ? 1 : settings.HorizonDays;
        check.RequireRange(horizon, 1e-6, 250, path + ".horizon_days");
        lookbackDays = settings.LookbackDays == 0 ? DefaultLookbackDays : settings.LookbackDays;
        check.Require(lookbackDays is >= 20 and <= MaxLookbackDays, path + ".lookback_days", $"must be between 20 and {MaxLookbackDays}");
        check.RequireCount(settings.ConfidenceLevels.Count, 10, path + ".confidence_levels");
        for (var i = 0; i < settings.ConfidenceLevels.Count; i++)
        {
            var c = settings.ConfidenceLevels[i];
            check.Require(double.IsFinite(c) && c > 0.5 && c < 1, $"{path}.confidence_levels[{i}]", "must be in (0.5, 1)");
        }

        var methods = new List<VarMethod>();
        for (var i = 0; i < settings.Methods.Count; i++)
        {
            switch (settings.Methods[i])
            {
                case Wire.VarMethod.Historical or Wire.VarMethod.Unspecified:
                    methods.Add(VarMethod.Historical);
                    break;
                case Wire.VarMethod.Parametric:
                    methods.Add(VarMethod.Parametric);
                    break;
                case Wire.VarMethod.CornishFisher:
                    methods.Add(VarMethod.CornishFisher);
                    break;
                case Wire.VarMethod.MonteCarlo:
                    methods.Add(VarMethod.MonteCarlo);
                    break;
                default:
                    check.Add($"{path}.methods[{i}]", "is not a known method");
                    break;
            }
        }

        var scenarios = settings.MonteCarloScenarios == 0 ? DefaultScenarios : settings.MonteCarloScenarios;
        check.Require(scenarios is >= 100 and <= MaxScenarios, path + ".monte_carlo_scenarios", $"must be between 100 and {MaxScenarios}");
        var levels = settings.ConfidenceLevels.Count > 0 ? settings.ConfidenceLevels.Distinct().ToArray() : RiskSettings.Default.ConfidenceLevels;
        return new RiskSettings(horizon, levels, methods.Count > 0 ? methods.Distinct().ToArray() : RiskSettings.Default.Methods, scenarios, settings.Seed);
    }

    /// <summary>Refuses work too large to do in one call: Monte Carlo scenarios × holdings beyond the budget.</summary>
    public static void CheckBudget(RiskSettings settings, int holdings)
    {
        if (settings.Methods.Contains(VarMethod.MonteCarlo) && (long)settings.MonteCarloScenarios * holdings > MaxScenarioCells)
        {
            throw new DomainException(DomainErrorKind.ResourceExhausted,
                $"Monte Carlo of {settings.MonteCarloScenarios} scenarios × {holdings} holdings exceeds the budget of {MaxScenarioCells:N0} cells; use fewer scenarios.");
        }
    }

    /// <summary>Resolves prices (request first, then market-state mid). Call after validation; holdings are distinct.</summary>
    public async Task<PortfolioInputs> ResolveAsync(IReadOnlyList<Wire.Holding> holdings, DecimalValue? cash)
    {
        var instruments = holdings.Select(h => h.InstrumentId).ToArray();
        var mids = (await market.GetPricesAsync(instruments.Distinct(StringComparer.Ordinal).ToArray())).ToDictionary(p => p.InstrumentId, p => p.Mid.ToDecimal(), StringComparer.Ordinal);
        var quantities = new decimal[instruments.Length];
        var prices = new decimal[instruments.Length];
        var missing = new List<FieldViolation>();
        for (var i = 0; i < holdings.Count; i++)
        {
            quantities[i] = holdings[i].Quantity.ToDecimal();
            if (DecimalValue.TryParse(holdings[i].Price, out var given))
            {
                prices[i] = given;
            }
            else if (mids.TryGetValue(instruments[i], out var mid))
            {
                prices[i] = mid;
            }
            else
            {
                missing.Add(new FieldViolation("holdings", $"no price for '{instruments[i]}': give one or quote it first"));
            }
        }

        if (missing.Count > 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, missing[0].Description, missing);
        }

        var cashValue = DecimalValue.TryParse(cash, out var c) ? c : 0m;
        return new PortfolioInputs(instruments, quantities, prices, cashValue);
    }

    /// <summary>
    /// A loan's collateral and debt at market-state prices; <paramref name="cashAsset"/> (a portfolio's base currency)
    /// is worth 1 a unit.
    /// </summary>
    public async Task<(CollateralHolding[] Collateral, (string InstrumentId, double Value)[] Debt)> LoanHoldingsAsync(Wire.CollateralLoan loan, string? cashAsset = null)
    {
        var ids = loan.Collateral.Select(c => c.InstrumentId).Concat(loan.Debt.Select(d => d.InstrumentId)).Where(id => id != cashAsset).Distinct(StringComparer.Ordinal).ToArray();
        var mids = (ids.Length > 0 ? await market.GetPricesAsync(ids) : []).ToDictionary(p => p.InstrumentId, p => (double)p.Mid.ToDecimal(), StringComparer.Ordinal);
        if (cashAsset is not null)
        {
            mids[cashAsset] = 1;
        }

        var missing = ids.Where(id => !mids.ContainsKey(id)).ToArray();
        if (missing.Length > 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Loan {loan.LoanId}: no price for {string.Join(", ", missing)}.");
        }

        var collateral = loan.Collateral
            .GroupBy(c => c.InstrumentId)
            .Select(g => new CollateralHolding(g.Key, g.Sum(c => (double)c.Quantity.ToDecimal()), mids[g.Key], g.First().LiquidationThreshold))
            .ToArray();
        var debt = loan.Debt.Select(d => (d.InstrumentId, (double)d.Quantity.ToDecimal() * mids[d.InstrumentId])).ToArray();
        return (collateral, debt);
    }

    /// <summary>Health factor and distance to liquidation of one loan at market-state prices.</summary>
    public async Task<Wire.LoanRisk> LoanRiskAsync(Wire.CollateralLoan loan, double horizonDays, int lookbackDays, string? cashAsset = null)
    {
        var (collateral, debt) = await LoanHoldingsAsync(loan, cashAsset);
        var debtValue = debt.Sum(d => d.Value);

        // Volatility of the collateral basket's value over the horizon, from history (cash collateral does not move).
        var risky = collateral.Where(c => c.InstrumentId != cashAsset).ToArray();
        var variance = 0.0;
        if (risky.Length > 0)
        {
            var returns = await LoadReturnsAsync(risky.Select(c => c.InstrumentId).ToArray(), lookbackDays);
            (_, _, variance) = PortfolioRiskModel.LinearMoments(returns.Values, risky.Select(c => c.Value).ToArray());
        }

        var collateralValue = collateral.Sum(c => c.Value);
        var sigma = collateralValue > 0 ? Math.Sqrt(variance * horizonDays) / collateralValue : 0;
        var figure = LoanRiskModel.Evaluate(collateral, debtValue, sigma);
        return new Wire.LoanRisk
        {
            LoanId = loan.LoanId,
            HealthFactor = figure.HealthFactor,
            CollateralValue = figure.CollateralValue,
            DebtValue = figure.DebtValue,
            DropToLiquidation = figure.DropToLiquidation,
            DistanceToLiquidationSd = figure.DistanceToLiquidationSd,
            LiquidationPrice = figure.LiquidationPrice,
        };
    }

    /// <summary>Daily log returns of the instruments from market-state history.</summary>
    public async Task<ReturnMatrix> LoadReturnsAsync(IReadOnlyList<string> instruments, int lookbackDays)
    {
        var series = await Task.WhenAll(instruments.Select(i => history.GetAsync(i, lookbackDays + 1)));
        return ReturnMatrix.FromCloses(
            instruments,
            series.Select(s => (IReadOnlyList<(int, double)>)s.Select(c => (c.Day, c.Close)).ToArray()).ToArray(),
            lookbackDays);
    }
}
