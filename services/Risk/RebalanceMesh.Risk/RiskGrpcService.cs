using Google.Protobuf.WellKnownTypes;
using System.Diagnostics;
using Grpc.Core;
using Grpc.Net.ClientFactory;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.Risk.Core;
using RebalanceMesh.ServiceDefaults;
using Wire = RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Risk;

/// <summary>gRPC surface of risk: validates, loads market state, calls the models in Risk.Core.</summary>
/// <remarks>The planning client is created only for AssessPortfolio by portfolio id, so risk runs without planning's address otherwise.</remarks>
public sealed class RiskGrpcService(RiskInputs inputs, RiskBookBuilder books, RiskComparer comparer, GrpcClientFactory clients) : Wire.RiskService.RiskServiceBase
{
    internal static readonly ActivitySource ActivitySource = new("RebalanceMesh.Risk");
    internal static readonly System.Diagnostics.Metrics.Meter Meter = new("RebalanceMesh.Risk");
    private static readonly System.Diagnostics.Metrics.Histogram<double> VarRatio = Meter.CreateHistogram<double>(
        "rebalancemesh.risk.var_ratio", description: "VaR of each assessed portfolio as a fraction of its net value, by method and confidence.");

    public override async Task<Wire.AssessPortfolioResponse> AssessPortfolio(Wire.AssessPortfolioRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        var byId = request.PortfolioId.Length > 0;
        if (byId)
        {
            check.RequireIdentifier(request.PortfolioId, "portfolio_id");
            check.Require(request.Holdings.Count == 0, "holdings", "must be empty when portfolio_id is set");
            check.Require(request.Cash is null, "cash", "must be empty when portfolio_id is set");
        }
        else
        {
            RiskInputs.ValidateHoldings(check, request.Holdings, "holdings");
            check.OptionalDecimal(request.Cash, "cash", ValidationExtensions.DecimalRule.Any, 0m, out _, ValidationExtensions.MaxCashMagnitude);
        }

        var settings = RiskInputs.ValidateSettings(check, request.Settings, "settings", out var lookback);
        RiskInputs.ValidateLoans(check, request.Loans);
        RiskInputs.ValidateHistory(check, request.History, "history");
        check.ThrowIfInvalid();

        var (holdings, cash, storedLoans, baseCurrency) = byId
            ? await StoredPortfolioAsync(request.PortfolioId, context.CancellationToken)
            : (request.Holdings, request.Cash, [], null);
        if (request.Settings?.IncludeCorrelation == true && holdings.Count > RiskInputs.MaxCorrelationHoldings)
        {
            throw DomainException.Invalid("settings.include_correlation", $"is available for at most {RiskInputs.MaxCorrelationHoldings} holdings");
        }

        RiskInputs.CheckBudget(settings, holdings.Count);

        var book = await books.BuildAsync(holdings, cash, context.CancellationToken);
        var returns = await inputs.ReturnsAsync(book.Factors, lookback, request.History);
        var adjustment = await books.RevaluationAdjustmentAsync(book, returns, context.CancellationToken);
        context.CancellationToken.ThrowIfCancellationRequested();
        using var activity = ActivitySource.StartActivity("assess portfolio");
        activity?.SetTag("risk.factors", book.Factors.Count);
        activity?.SetTag("risk.observations", returns.Days);
        var report = PortfolioRiskModel.Assess(book.Exposures, book.Cash, returns, settings, adjustment, book.NetValue, context.CancellationToken);
        var response = RiskWire.ToWire(report, book);
        if (report.NetValue > 0)
        {
            foreach (var estimate in response.Estimates)
            {
                VarRatio.Record(estimate.Var / report.NetValue,
                    new KeyValuePair<string, object?>("method", estimate.Method.ToString()), new KeyValuePair<string, object?>("confidence", estimate.Confidence));
            }
        }

        var (margin, venueMargins) = await books.MarginAsync(book, new MarginRates(), context.CancellationToken);
        response.Margin = margin;
        response.VenueMargins.AddRange(venueMargins);
        foreach (var loan in request.Loans.Concat(storedLoans))
        {
            response.Loans.Add(await inputs.LoanRiskAsync(loan, settings.HorizonDays, lookback, baseCurrency, request.History));
        }

        if (request.Settings?.IncludeCorrelation == true)
        {
            response.Correlation.AddRange(report.Correlation.Value.ToRowMajorArray());
        }

        return response;
    }

    public override async Task<Wire.EstimateCovarianceResponse> EstimateCovariance(Wire.EstimateCovarianceRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.Require(request.InstrumentIds.Count > 0, "instrument_ids", "must not be empty");
        check.RequireCount(request.InstrumentIds.Count, RiskInputs.MaxHoldings, "instrument_ids");
        for (var i = 0; i < request.InstrumentIds.Count && i < RiskInputs.MaxHoldings; i++)
        {
            check.RequireIdentifier(request.InstrumentIds[i], $"instrument_ids[{i}]");
        }

        check.Require(request.InstrumentIds.Distinct().Count() == request.InstrumentIds.Count, "instrument_ids", "must not repeat an instrument");
        var lookback = request.LookbackDays == 0 ? RiskInputs.DefaultLookbackDays : request.LookbackDays;
        check.Require(lookback is >= 2 and <= RiskInputs.MaxLookbackDays, "lookback_days", $"must be between 2 and {RiskInputs.MaxLookbackDays}");
        var lambda = request.EwmaLambda == 0 ? 0.94 : request.EwmaLambda;
        check.Require(double.IsFinite(lambda) && lambda > 0 && lambda < 1, "ewma_lambda", "must be in (0, 1)");
        check.Require(request.Method is Wire.CovarianceMethod.Unspecified or Wire.CovarianceMethod.Sample or Wire.CovarianceMethod.Ewma or Wire.CovarianceMethod.LedoitWolf, "method", "is not a known method");
        check.Require(request.Returns is null || request.Prices is null, "prices", "give returns or prices, not both");
        RiskInputs.ValidateMatrix(check, request.Returns, request.InstrumentIds.Count, "returns", positive: false);
        RiskInputs.ValidateMatrix(check, request.Prices, request.InstrumentIds.Count, "prices", positive: true);
        var horizon = request.ForecastHorizonDays == 0 ? 21 : request.ForecastHorizonDays;
        check.Require(horizon is >= 1 and <= 252, "forecast_horizon_days", "must be between 1 and 252");
        check.Require(!request.IncludeVolatilityForecasts || request.InstrumentIds.Count <= 200, "include_volatility_forecasts", "is available for at most 200 instruments");
        check.ThrowIfInvalid();

        var instruments = request.InstrumentIds.ToArray();
        var returns = request.Returns is not null || request.Prices is not null
            ? RiskInputs.ReturnsOf(instruments, request.Returns, request.Prices)
            : await inputs.LoadReturnsAsync(instruments, lookback);

        context.CancellationToken.ThrowIfCancellationRequested();
        var shrinkage = 0.0;
        MathNet.Numerics.LinearAlgebra.Matrix<double> daily;
        switch (request.Method)
        {
            case Wire.CovarianceMethod.Ewma:
                daily = CovarianceEstimator.Ewma(returns.Values, lambda);
                break;
            case Wire.CovarianceMethod.LedoitWolf:
                (daily, shrinkage) = LedoitWolf.Estimate(returns.Values);
                break;
            default:
                daily = CovarianceEstimator.Sample(returns.Values);
                break;
        }

        var annual = daily * RiskMath.TradingDaysPerYear;
        var correlation = CovarianceEstimator.Correlation(annual);
        var response = new Wire.EstimateCovarianceResponse { Observations = returns.Days, Shrinkage = shrinkage };
        if (request.IncludeVolatilityForecasts)
        {
            response.Forecasts.AddRange(Forecasts(returns, lambda, horizon, context.CancellationToken));
        }

        response.InstrumentIds.AddRange(instruments);
        response.Covariance.AddRange(annual.ToRowMajorArray());
        response.Correlation.AddRange(correlation.ToRowMajorArray());
        response.AnnualVolatilities.AddRange(annual.Diagonal().Select(v => Math.Sqrt(Math.Max(v, 0))));
        response.AnnualMeanReturns.AddRange(Numerics.SampleMoments.Means(returns.Values).Select(m => m * RiskMath.TradingDaysPerYear));
        return response;
    }

    public override async Task<Wire.StressTestResponse> StressTest(Wire.StressTestRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        RiskInputs.ValidateHoldings(check, request.Holdings, "holdings");
        check.OptionalDecimal(request.Cash, "cash", ValidationExtensions.DecimalRule.Any, 0m, out _, ValidationExtensions.MaxCashMagnitude);
        check.RequireCount(request.Scenarios.Count, 100, "scenarios");
        for (var i = 0; i < request.Scenarios.Count && i < 100; i++)
        {
            var scenario = request.Scenarios[i];
            check.RequireNotEmpty(scenario.Name, $"scenarios[{i}].name", 100);
            check.Require(scenario.Shocks.Count is > 0 and <= RiskInputs.MaxHoldings, $"scenarios[{i}].shocks", $"must have 1 to {RiskInputs.MaxHoldings} shocks");
            for (var k = 0; k < scenario.Shocks.Count && k < RiskInputs.MaxHoldings; k++)
            {
                var shock = scenario.Shocks[k];
                if (shock.InstrumentId.Length > 0)
                {
                    check.RequireIdentifier(shock.InstrumentId, $"scenarios[{i}].shocks[{k}].instrument_id");
                }

                check.Require(double.IsFinite(shock.RelativeChange) && shock.RelativeChange > -1 && shock.RelativeChange <= 10,
                    $"scenarios[{i}].shocks[{k}].relative_change", "must be greater than -1 and at most 10");
            }

            check.Require(double.IsFinite(scenario.VolatilityShock) && scenario.VolatilityShock > -1 && scenario.VolatilityShock <= 10,
                $"scenarios[{i}].volatility_shock", "must be greater than -1 and at most 10");
        }

        RiskInputs.ValidateLoans(check, request.Loans);

        check.RequireRange(request.CorrelationBreakdown, 0, 1, "correlation_breakdown");
        var confidence = request.Confidence == 0 ? 0.99 : request.Confidence;
        check.Require(double.IsFinite(confidence) && confidence > 0.5 && confidence < 1, "confidence", "must be in (0.5, 1)");
        check.Require(request.WorstWindows is >= 0 and <= 20, "worst_windows", "must be between 0 and 20");
        var windowDays = request.WindowDays == 0 ? 10 : request.WindowDays;
        check.Require(windowDays is >= 1 and <= 250, "window_days", "must be between 1 and 250");
        var lookback = request.LookbackDays == 0 ? RiskInputs.DefaultLookbackDays : request.LookbackDays;
        check.Require(lookback is >= 20 and <= RiskInputs.MaxLookbackDays, "lookback_days", $"must be between 20 and {RiskInputs.MaxLookbackDays}");
        check.Require(request.Scenarios.Count > 0 || request.CorrelationBreakdown > 0 || request.WorstWindows > 0, "scenarios", "ask for at least one stress");
        RiskInputs.ValidateHistory(check, request.History, "history");
        check.ThrowIfInvalid();

        var book = await books.BuildAsync(request.Holdings, request.Cash, context.CancellationToken);
        var keys = book.Positions.Select(p => p.Key).ToArray();
        using var activity = ActivitySource.StartActivity("stress test");
        var response = new Wire.StressTestResponse { NetValue = book.NetValue };
        var loans = new List<(string Id, CollateralHolding[] Collateral, (string InstrumentId, double Value)[] Debt)>();
        foreach (var loan in request.Loans)
        {
            var (collateral, debt) = await inputs.LoanHoldingsAsync(loan);
            loans.Add((loan.LoanId, collateral, debt));
        }

        foreach (var scenario in request.Scenarios)
        {
            var move = StressTesting.MoveOf(scenario.Shocks.Select(s => new PriceShock(s.InstrumentId, s.RelativeChange)).ToArray());
            var pnl = await books.ScenarioPnlAsync(book, move, scenario.VolatilityShock, context.CancellationToken);
            var result = ToWire(scenario.Name, pnl.Sum(), pnl, book.NetValue + pnl.Sum(), keys);
            result.Loans.AddRange(loans.Select(l => new Wire.LoanHealth { LoanId = l.Id, HealthFactor = LoanRiskModel.StressedHealthFactor(l.Collateral, l.Debt, move) }));
            response.Scenarios.Add(result);
        }

        if (request.CorrelationBreakdown > 0 || request.WorstWindows > 0)
        {
            var returns = await inputs.ReturnsAsync(book.Factors, lookback, request.History);
            context.CancellationToken.ThrowIfCancellationRequested();
            var vector = MathNet.Numerics.LinearAlgebra.Vector<double>.Build.DenseOfEnumerable(book.Exposures);
            if (request.CorrelationBreakdown > 0)
            {
                var covariance = CovarianceEstimator.Sample(returns.Values);
                var stressed = StressTesting.CorrelationBreakdown(covariance, request.CorrelationBreakdown);
                response.VarBeforeBreakdown = PortfolioRiskModel.Parametric(Math.Sqrt(Math.Max(vector * covariance * vector, 0)), confidence, 1).ValueAtRisk;
                response.VarAfterBreakdown = PortfolioRiskModel.Parametric(Math.Sqrt(Math.Max(vector * stressed * vector, 0)), confidence, 1).ValueAtRisk;
            }

            var rank = 0;
            foreach (var window in StressTesting.WorstWindows(book.Exposures, returns.Values, windowDays, request.WorstWindows))
            {
                // Reported per risk factor (the window revalues factor exposures: options by their delta).
                var result = ToWire($"worst window {++rank}", window.Pnl, window.PositionPnl, response.NetValue + window.Pnl, book.Factors.Select(f => (string.Empty, f)).ToArray());
                if (returns.CloseDays is { } days)
                {
                    result.WindowStart = Timestamp.FromDateTime(DateTime.UnixEpoch.AddDays(days[window.StartIndex]));
                    result.WindowEnd = Timestamp.FromDateTime(DateTime.UnixEpoch.AddDays(days[window.EndIndex + 1]));
                }

                response.WorstWindows.Add(result);
            }
        }

        return response;
    }

    /// <summary>
    /// Positions (with their accounts and entry prices), cash and loans of a portfolio stored by planning, read without
    /// a valuation; loans' base-currency collateral and debt are priced at 1; cash in other currencies is held as the
    /// currency (FX risk); margin collateral counts as cash. Planning's NOT_FOUND reaches the caller.
    /// </summary>
    private async Task<(IReadOnlyList<Wire.Holding> Holdings, Contracts.Common.V1.DecimalValue? Cash, IReadOnlyList<Wire.CollateralLoan> Loans, string BaseCurrency)> StoredPortfolioAsync(string portfolioId, CancellationToken cancellationToken)
    {
        var planning = clients.CreateClient<PlanningService.PlanningServiceClient>(nameof(PlanningService.PlanningServiceClient));
        var response = await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = portfolioId, SkipValuation = true }, cancellationToken: cancellationToken);
        var portfolio = response.Portfolio;
        var holdings = portfolio.Positions.Select(p => new Wire.Holding
        {
            InstrumentId = p.InstrumentId,
            Quantity = p.Quantity,
            Venue = p.Venue,
            EntryPrice = p.EntryPrice,
        }).Concat(portfolio.CashBalances.Where(c => c.Amount.ToDecimal() > 0).Select(c => new Wire.Holding
        {
            // Foreign cash carries exchange-rate risk: a holding of the currency, valued at pricing's quote of its code.
            InstrumentId = c.Currency,
            Quantity = c.Amount,
        })).ToArray();
        if (holdings.Length == 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Portfolio '{portfolioId}' holds no positions and no foreign cash; there is no risk to measure.");
        }

        var loans = portfolio.Loans.Select(l =>
        {
            var loan = new Wire.CollateralLoan { LoanId = l.LoanId };
            loan.Collateral.AddRange(l.Collateral.Select(c => new Wire.CollateralAsset { InstrumentId = c.Asset, Quantity = c.Quantity, LiquidationThreshold = c.LiquidationThreshold }));
            loan.Debt.AddRange(l.Debt.Where(d => d.Quantity.ToDecimal() > 0).Select(d => new Wire.DebtAsset { InstrumentId = d.Asset, Quantity = d.Quantity }));
            return loan;
        }).Where(l => l.Debt.Count > 0).ToArray();
        // Collateral posted in venues' margin accounts is the portfolio's cash too (it carries no market risk).
        var cash = (Contracts.Common.V1.DecimalValue.TryParse(portfolio.Cash, out var c) ? c : 0m) + portfolio.MarginAccounts.Sum(a => Contracts.Common.V1.DecimalValue.TryParse(a.Collateral, out var posted) ? posted : 0m);
        return (holdings, cash, loans, portfolio.BaseCurrency);
    }

    private static Wire.StressResult ToWire(string name, double pnl, IReadOnlyList<double> positionPnl, double netValueAfter, IReadOnlyList<(string Venue, string InstrumentId)> positions)
    {
        var result = new Wire.StressResult { Name = name, Pnl = pnl, NetValueAfter = netValueAfter };
        result.Positions.AddRange(positions.Select((p, i) => new Wire.PositionPnl { InstrumentId = p.InstrumentId, Venue = p.Venue, Pnl = positionPnl[i] }));
        return result;
    }

    /// <summary>EWMA and GARCH(1,1) forecasts per instrument, fitted in parallel (independent, CPU-bound).</summary>
    private static Wire.VolatilityForecast[] Forecasts(ReturnMatrix returns, double lambda, int horizon, CancellationToken cancellationToken)
    {
        var forecasts = new Wire.VolatilityForecast[returns.Count];
        Parallel.For(0, returns.Count, new ParallelOptions { CancellationToken = cancellationToken }, j =>
        {
            var series = Enumerable.Range(0, returns.Days).Select(t => returns.Values[t, j]).ToArray();
            var forecast = new Wire.VolatilityForecast
            {
                InstrumentId = returns.Instruments[j],
                EwmaAnnualVolatility = Math.Sqrt(VolatilityForecaster.EwmaVariance(series, lambda) * RiskMath.TradingDaysPerYear),
            };
            try
            {
                var fit = VolatilityForecaster.FitGarch(series);
                forecast.GarchOmega = fit.Omega;
                forecast.GarchAlpha = fit.Alpha;
                forecast.GarchBeta = fit.Beta;
                forecast.GarchLogLikelihood = fit.LogLikelihood;
                forecast.GarchLongRunAnnualVolatility = Math.Sqrt(fit.LongRunVariance * RiskMath.TradingDaysPerYear);
                forecast.GarchTermStructure.AddRange(fit.TermStructure(horizon));
            }
            catch (ArgumentException ex)
            {
                forecast.GarchError = ArgumentErrors.Reason(ex);
            }

            forecasts[j] = forecast;
        });
        return forecasts;
    }

    public override Task<Wire.CompareRiskResponse> CompareRisk(Wire.CompareRiskRequest request, ServerCallContext context) =>
        comparer.CompareAsync(request, context.CancellationToken);

    public override Task<Wire.CompareRiskBatchResponse> CompareRiskBatch(Wire.CompareRiskBatchRequest request, ServerCallContext context) =>
        comparer.CompareBatchAsync(request, context.CancellationToken);
}
