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

    /// <summary>Return matrices kept for reuse (<see cref="LoadReturnsAsync"/>), one per set of instruments and depth.</summary>
    private const int MaxMatrices = 256;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (IReadOnlyList<DailyClose>[] Series, ReturnMatrix Matrix)> _matrices = new(StringComparer.Ordinal);
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

    /// <summary>
    /// Health factor and distance to liquidation of one loan at market-state prices; the collateral's volatility from
    /// <paramref name="history"/> when given, else from market-state history.
    /// </summary>
    public async Task<Wire.LoanRisk> LoanRiskAsync(Wire.CollateralLoan loan, double horizonDays, int lookbackDays, string? cashAsset = null, Wire.HistoryInput? history = null)
    {
        var (collateral, debt) = await LoanHoldingsAsync(loan, cashAsset);
        var debtValue = debt.Sum(d => d.Value);

        // Volatility of the collateral basket's value over the horizon, from history (cash collateral does not move).
        var risky = collateral.Where(c => c.InstrumentId != cashAsset).ToArray();
        var variance = 0.0;
        if (risky.Length > 0)
        {
            var returns = await ReturnsAsync(risky.Select(c => c.InstrumentId).ToArray(), lookbackDays, history);
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

    /// <summary>
    /// Daily returns of the risk factors, in their order: the most recent <paramref name="lookbackDays"/> of the
    /// caller's own series when <paramref name="history"/> is given (every factor must have one), else market state's.
    /// </summary>
    public async Task<ReturnMatrix> ReturnsAsync(IReadOnlyList<string> factors, int lookbackDays, Wire.HistoryInput? history)
    {
        if (history is null)
        {
            return await LoadReturnsAsync(factors, lookbackDays);
        }

        var given = ReturnsOf(history.InstrumentIds, history.Returns, history.Prices);
        var columns = new int[factors.Count];
        for (var j = 0; j < factors.Count; j++)
        {
            columns[j] = history.InstrumentIds.IndexOf(factors[j]);
            if (columns[j] < 0)
            {
                throw DomainException.Invalid("history.instrument_ids", $"has no series for '{factors[j]}', a risk factor of the request");
            }
        }

        var days = Math.Min(lookbackDays, given.Days);
        var skip = given.Days - days;
        var values = new double[days, factors.Count];
        for (var t = 0; t < days; t++)
        {
            for (var j = 0; j < factors.Count; j++)
            {
                values[t, j] = given.Values[skip + t, columns[j]];
            }
        }

        return new ReturnMatrix(factors, values);
    }

    /// <summary>Collateral loans of a request: 100 at most, each with 1 to 50 collateral and debt assets.</summary>
    public static void ValidateLoans(RequestValidator check, IReadOnlyList<Wire.CollateralLoan> loans)
    {
        check.RequireCount(loans.Count, 100, "loans");
        for (var i = 0; i < loans.Count && i < 100; i++)
        {
            var loan = loans[i];
            check.RequireIdentifier(loan.LoanId, $"loans[{i}].loan_id");
            check.Require(loan.Collateral.Count is > 0 and <= 50, $"loans[{i}].collateral", "must have 1 to 50 assets");
            check.Require(loan.Debt.Count is > 0 and <= 50, $"loans[{i}].debt", "must have 1 to 50 assets");
            for (var k = 0; k < loan.Collateral.Count && k < 50; k++)
            {
                check.RequireIdentifier(loan.Collateral[k].InstrumentId, $"loans[{i}].collateral[{k}].instrument_id");
                check.RequireDecimal(loan.Collateral[k].Quantity, $"loans[{i}].collateral[{k}].quantity", ValidationExtensions.DecimalRule.Positive, out _);
                check.Require(loan.Collateral[k].LiquidationThreshold is > 0 and <= 1, $"loans[{i}].collateral[{k}].liquidation_threshold", "must be in (0, 1]");
            }

            for (var k = 0; k < loan.Debt.Count && k < 50; k++)
            {
                check.RequireIdentifier(loan.Debt[k].InstrumentId, $"loans[{i}].debt[{k}].instrument_id");
                check.RequireDecimal(loan.Debt[k].Quantity, $"loans[{i}].debt[{k}].quantity", ValidationExtensions.DecimalRule.Positive, out _);
            }
        }
    }

    /// <summary>Checks a caller's own series: its instruments, and one valid matrix of returns or prices.</summary>
    public static void ValidateHistory(RequestValidator check, Wire.HistoryInput? history, string path)
    {
        if (history is null)
        {
            return;
        }

        check.Require(history.InstrumentIds.Count > 0, path + ".instrument_ids", "must not be empty");
        check.RequireCount(history.InstrumentIds.Count, MaxHoldings, path + ".instrument_ids");
        for (var i = 0; i < history.InstrumentIds.Count && i < MaxHoldings; i++)
        {
            check.RequireIdentifier(history.InstrumentIds[i], $"{path}.instrument_ids[{i}]");
        }

        check.Require(history.InstrumentIds.Distinct().Count() == history.InstrumentIds.Count, path + ".instrument_ids", "must not repeat an instrument");
        check.Require((history.Returns is null) != (history.Prices is null), path + ".returns", "give returns or prices, one of them");
        ValidateMatrix(check, history.Returns, history.InstrumentIds.Count, path + ".returns", positive: false);
        ValidateMatrix(check, history.Prices, history.InstrumentIds.Count, path + ".prices", positive: true);
    }

    /// <summary>A matrix of rows × <paramref name="columns"/> finite values (positive ones for prices), 3 to the lookback limit rows.</summary>
    public static void ValidateMatrix(RequestValidator check, Wire.ReturnMatrix? matrix, int columns, string path, bool positive)
    {
        if (matrix is null)
        {
            return;
        }

        check.Require(matrix.Rows is >= 3 and <= MaxLookbackDays, path + ".rows", $"must be between 3 and {MaxLookbackDays}");
        check.Require((long)matrix.Rows * columns == matrix.Values.Count, path + ".values", "must hold rows × instruments values");
        check.Require(matrix.Values.All(v => double.IsFinite(v) && (!positive || v > 0)), path + ".values", positive ? "must be positive finite prices" : "must be finite numbers");
    }

    /// <summary>Daily returns from a validated matrix of returns, or of prices (log returns of consecutive rows).</summary>
    public static ReturnMatrix ReturnsOf(IReadOnlyList<string> instruments, Wire.ReturnMatrix? returns, Wire.ReturnMatrix? prices)
    {
        if (returns is not null)
        {
            return new ReturnMatrix(instruments, ToArray(returns, instruments.Count));
        }

        var closes = ToArray(prices!, instruments.Count);
        var values = new double[prices!.Rows - 1, instruments.Count];
        for (var r = 1; r < prices.Rows; r++)
        {
            for (var c = 0; c < instruments.Count; c++)
            {
                values[r - 1, c] = Math.Log(closes[r, c] / closes[r - 1, c]);
            }
        }

        return new ReturnMatrix(instruments, values);
    }

    private static double[,] ToArray(Wire.ReturnMatrix matrix, int columns)
    {
        var values = new double[matrix.Rows, columns];
        for (var r = 0; r < matrix.Rows; r++)
        {
            for (var c = 0; c < columns; c++)
            {
                values[r, c] = matrix.Values[(r * columns) + c];
            }
        }

        return values;
    }

    /// <summary>
    /// Daily log returns of the instruments from market-state history. The matrix last built for the same instruments
    /// and depth is reused while the closes it was built from are the same, close for close (a model's accounts ask for
    /// the same universe plan after plan: its returns and their e^r − 1 are computed once, not once per plan).
    /// </summary>
    public async Task<ReturnMatrix> LoadReturnsAsync(IReadOnlyList<string> instruments, int lookbackDays)
    {
        var series = await Task.WhenAll(instruments.Select(i => history.GetAsync(i, lookbackDays + 1)));
        var key = lookbackDays.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n" + string.Join('\n', instruments);
        if (_matrices.TryGetValue(key, out var built) && built.Series.Length == series.Length
            && built.Series.Zip(series).All(pair => pair.First.SequenceEqual(pair.Second)))
        {
            return built.Matrix;
        }

        var matrix = ReturnMatrix.FromCloses(
            instruments,
            series.Select(s => (IReadOnlyList<(int, double)>)s.Select(c => (c.Day, c.Close)).ToArray()).ToArray(),
            lookbackDays);
        if (_matrices.Count >= MaxMatrices)
        {
            _matrices.Clear(); // crude bound, as the history cache's: refilled on demand
        }

        _matrices[key] = (series, matrix);
        return matrix;
    }
}
