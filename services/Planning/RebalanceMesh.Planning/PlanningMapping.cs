using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.Planning.Core;
using CoreDriftReason = RebalanceMesh.Planning.Core.DriftReason;
using CoreRebalanceTarget = RebalanceMesh.Planning.Core.RebalanceTarget;
using WireDriftReason = RebalanceMesh.Contracts.Planning.V1.DriftReason;
using WireRebalanceTarget = RebalanceMesh.Contracts.Planning.V1.RebalanceTarget;
using CoreDeltaBand = RebalanceMesh.Planning.Core.DeltaBand;
using CoreObjective = RebalanceMesh.Planning.Core.OptimizerObjective;
using WireObjective = RebalanceMesh.Contracts.Planning.V1.OptimizerObjective;

namespace RebalanceMesh.Planning;

/// <summary>Validation of planning requests and mapping between wire messages and the planning domain.</summary>
public static class PlanningMapping
{
    public const int MaxPositions = 1_000;

    public const int MaxCashBalances = 20;
    public const int MaxMarginAccounts = 20;

    public static void ValidatePortfolio(RequestValidator check, Portfolio? portfolio, string path)
    {
        if (!check.Require(portfolio is not null, path, "is required"))
        {
            return;
        }

        check.RequireIdentifier(portfolio!.PortfolioId, path + ".portfolio_id");
        check.Require(portfolio.DisplayName.Length <= 200, path + ".display_name", "must be at most 200 characters");
        check.RequireCurrency(portfolio.BaseCurrency, path + ".base_currency");
        check.OptionalDecimal(portfolio.Cash, path + ".cash", ValidationExtensions.DecimalRule.NonNegative, 0m, out _, ValidationExtensions.MaxCashMagnitude);
        ValidateLoans(check, portfolio, path);
        check.RequireCount(portfolio.CashBalances.Count, MaxCashBalances, path + ".cash_balances");
        var currencies = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < portfolio.CashBalances.Count && i < MaxCashBalances; i++)
        {
            var balance = portfolio.CashBalances[i];
            var at = $"{path}.cash_balances[{i}]";
            if (check.Require(balance.Currency.Length == 3 && balance.Currency.All(char.IsAsciiLetterUpper), at + ".currency", "must be an ISO 4217 code of three upper-case letters"))
            {
                check.Require(balance.Currency != portfolio.BaseCurrency, at + ".currency", "is the base currency: its cash goes in cash");
                check.Require(currencies.Add(balance.Currency), at + ".currency", "appears more than once");
            }

            check.RequireDecimal(balance.Amount, at + ".amount", ValidationExtensions.DecimalRule.NonNegative, out _, ValidationExtensions.MaxCashMagnitude);
        }

        check.RequireCount(portfolio.MarginAccounts.Count, MaxMarginAccounts, path + ".margin_accounts");
        var marginVenues = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < portfolio.MarginAccounts.Count && i < MaxMarginAccounts; i++)
        {
            var account = portfolio.MarginAccounts[i];
            var at = $"{path}.margin_accounts[{i}]";
            if (check.RequireIdentifier(account.Venue, at + ".venue"))
            {
                check.Require(marginVenues.Add(account.Venue), at + ".venue", "appears more than once");
            }

            check.RequireDecimal(account.Collateral, at + ".collateral", ValidationExtensions.DecimalRule.NonNegative, out _, ValidationExtensions.MaxCashMagnitude);
        }

        check.RequireCount(portfolio.Positions.Count, MaxPositions, path + ".positions");
        var seen = new HashSet<(string Instrument, string Venue)>();
        for (var i = 0; i < portfolio.Positions.Count && i < MaxPositions; i++)
        {
            var position = portfolio.Positions[i];
            if (check.RequireIdentifier(position.InstrumentId, $"{path}.positions[{i}].instrument_id"))
            {
                check.Require(seen.Add((position.InstrumentId, position.Venue)), $"{path}.positions[{i}].instrument_id", "appears more than once in the same account (venue)");
            }

            check.RequireDecimal(position.Quantity, $"{path}.positions[{i}].quantity", ValidationExtensions.DecimalRule.Any, out _);
            check.OptionalDecimal(position.EntryPrice, $"{path}.positions[{i}].entry_price", ValidationExtensions.DecimalRule.Positive, 1m, out _);
            if (position.Venue.Length > 0)
            {
                check.RequireIdentifier(position.Venue, $"{path}.positions[{i}].venue");
            }
        }
    }

    public const int MaxLoans = 20;

    private static void ValidateLoans(RequestValidator check, Portfolio portfolio, string path)
    {
        check.RequireCount(portfolio.Loans.Count, MaxLoans, path + ".loans");
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < portfolio.Loans.Count && i < MaxLoans; i++)
        {
            var loan = portfolio.Loans[i];
            var at = $"{path}.loans[{i}]";
            if (check.RequireIdentifier(loan.LoanId, at + ".loan_id"))
            {
                check.Require(ids.Add(loan.LoanId), at + ".loan_id", "appears more than once");
            }

            check.RequireIdentifier(loan.Venue, at + ".venue");
            check.Require(loan.Collateral.Count is > 0 and <= 20, at + ".collateral", "must have 1 to 20 assets");
            var assets = new HashSet<string>(StringComparer.Ordinal);
            for (var k = 0; k < loan.Collateral.Count && k < 20; k++)
            {
                var collateral = loan.Collateral[k];
                if (check.RequireIdentifier(collateral.Asset, $"{at}.collateral[{k}].asset"))
                {
                    check.Require(assets.Add(collateral.Asset), $"{at}.collateral[{k}].asset", "appears more than once");
                }

                check.RequireDecimal(collateral.Quantity, $"{at}.collateral[{k}].quantity", ValidationExtensions.DecimalRule.NonNegative, out _);
                check.Require(collateral.LiquidationThreshold is > 0 and <= 1, $"{at}.collateral[{k}].liquidation_threshold", "must be in (0, 1]");
            }

            check.Require(loan.Debt.Count <= 1, at + ".debt", "at most one debt entry: the base currency or one instrument");
            for (var k = 0; k < loan.Debt.Count && k < 1; k++)
            {
                if (check.RequireIdentifier(loan.Debt[k].Asset, $"{at}.debt[{k}].asset"))
                {
                    check.Require(!assets.Contains(loan.Debt[k].Asset), $"{at}.debt[{k}].asset", "cannot also be the loan's collateral");
                }

                check.RequireDecimal(loan.Debt[k].Quantity, $"{at}.debt[{k}].quantity", ValidationExtensions.DecimalRule.NonNegative, out _, ValidationExtensions.MaxCashMagnitude);
            }
        }
    }

    private static void ValidateHealthFactorBand(RequestValidator check, Contracts.Planning.V1.HealthFactorBand? band, string path)
    {
        if (band is null)
        {
            return;
        }

        check.RequireRange(band.Target, 1.0001, 100, path + ".target");
        check.Require(band.RepayBelow > 1 && band.RepayBelow <= band.Target, path + ".repay_below", "must be greater than 1 and at most target");
        check.Require(band.BoostAbove == 0 || (double.IsFinite(band.BoostAbove) && band.BoostAbove > band.Target), path + ".boost_above", "must be 0 or above target");
        check.Require(band.EmergencyBelow == 0 || (band.EmergencyBelow > 1 && band.EmergencyBelow <= band.RepayBelow), path + ".emergency_below", "must be 0, or greater than 1 and at most repay_below");
    }

    private static void ValidateMarginBand(RequestValidator check, Contracts.Planning.V1.MarginBand? band, string path)
    {
        if (band is null)
        {
            return;
        }

        check.RequireRange(band.Target, 1.0001, 100, path + ".target");
        check.Require(band.ActBelow > 1 && band.ActBelow <= band.Target, path + ".act_below", "must be greater than 1 and at most target");
        check.Require(band.EmergencyBelow == 0 || (band.EmergencyBelow > 1 && band.EmergencyBelow <= band.ActBelow), path + ".emergency_below", "must be 0, or greater than 1 and at most act_below");
        check.Require(band.MaintenanceRate is > 0 and <= 1, path + ".maintenance_rate", "must be in (0, 1]");
    }

    public static void ValidatePolicy(RequestValidator check, Policy? policy, string path)
    {
        if (!check.Require(policy is not null, path, "is required"))
        {
            return;
        }

        check.RequireIdentifier(policy!.PortfolioId, path + ".portfolio_id");
        check.Require(policy.Targets.Count > 0, path + ".targets", "must not be empty");
        check.RequireCount(policy.Targets.Count, MaxPositions, path + ".targets");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        double sum = 0;
        for (var i = 0; i < policy.Targets.Count && i < MaxPositions; i++)
        {
            var target = policy.Targets[i];
            if (check.RequireIdentifier(target.InstrumentId, $"{path}.targets[{i}].instrument_id"))
            {
                check.Require(seen.Add(target.InstrumentId), $"{path}.targets[{i}].instrument_id", "appears more than once");
            }

            if (check.RequireRange(target.Weight, 0, 1, $"{path}.targets[{i}].weight"))
            {
                sum += target.Weight;
            }
        }

        check.Require(sum <= 1 + 1e-9, path + ".targets", $"weights sum to {sum:F6}; they must sum to at most 1");
        check.Require(System.Enum.IsDefined(policy.TargetModel), path + ".target_model", "is not a known model");
        check.Require(policy.TargetModel is Contracts.Planning.V1.TargetModel.Unspecified or Contracts.Planning.V1.TargetModel.FixedWeights || sum > 0, path + ".targets", "a computed model needs a positive invested share (the sum of the weights)");
        check.Require(policy.ModelLookbackDays is 0 or (>= 20 and <= 5_000), path + ".model_lookback_days", "must be 0 or between 20 and 5,000");
        check.Require(System.Enum.IsDefined(policy.ExecutionMode), path + ".execution_mode", "is not a known mode");
        check.Require(policy.CooldownSeconds is >= 0 and <= 366L * 24 * 3600, path + ".cooldown_seconds", "must be between 0 and a year");
        check.Require(policy.CalendarIntervalDays is >= 0 and <= 366, path + ".calendar_interval_days", "must be between 0 and 366");
        check.RequireRange(policy.AbsoluteBand, 0, 1, path + ".absolute_band");
        check.RequireRange(policy.RelativeBand, 0, 10, path + ".relative_band");
        check.RequireRange(policy.TotalDriftThreshold, 0, 1, path + ".total_drift_threshold");
        check.Require(policy.AbsoluteBand > 0 || policy.RelativeBand > 0 || policy.TotalDriftThreshold > 0 || policy.CalendarIntervalDays > 0, path, "at least one of absolute_band, relative_band, total_drift_threshold, calendar_interval_days must be set");
        check.Require(System.Enum.IsDefined(policy.RebalanceTarget), path + ".rebalance_target", "is not a known value");
        check.OptionalDecimal(policy.MinTradeNotional, path + ".min_trade_notional", ValidationExtensions.DecimalRule.NonNegative, 0m, out _);
        check.RequireRange(policy.EstimatedCostBps, 0, 1_000, path + ".estimated_cost_bps");
        check.RequireCount(policy.NoTradeInstruments.Count, MaxPositions, path + ".no_trade_instruments");
        for (var i = 0; i < policy.NoTradeInstruments.Count && i < MaxPositions; i++)
        {
            if (check.RequireIdentifier(policy.NoTradeInstruments[i], $"{path}.no_trade_instruments[{i}]"))
            {
                check.Require(!seen.Contains(policy.NoTradeInstruments[i]), $"{path}.no_trade_instruments[{i}]", "has a target weight; an instrument is either targeted or left alone");
            }
        }

        check.RequireCount(policy.ExpectedReturns.Count, MaxPositions, path + ".expected_returns");
        foreach (var (instrument, expected) in policy.ExpectedReturns.Take(MaxPositions))
        {
            check.RequireIdentifier(instrument, $"{path}.expected_returns[{instrument}]");
            check.RequireRange(expected, -10, 10, $"{path}.expected_returns[{instrument}]");
        }

        ValidateOptimizer(check, policy.Optimizer, path + ".optimizer");
        ValidateModelParameters(check, policy, path);
        ValidateHealthFactorBand(check, policy.HealthFactorBand, path + ".health_factor_band");
        ValidateMarginBand(check, policy.MarginBand, path + ".margin_band");
        check.Require(System.Enum.IsDefined(policy.LotRounding), path + ".lot_rounding", "is not a known rounding");
        check.RequireRange(policy.MaxSlippageBps, 0, 10_000, path + ".max_slippage_bps");
        if (policy.ExecutionStyle is { } style)
        {
            check.Require(style.TwapSlices is >= 0 and <= 100, path + ".execution_style.twap_slices", "must be between 0 and 100");
            check.RequireRange(style.TwapDurationSeconds, 0, 86_400, path + ".execution_style.twap_duration_seconds");
            check.Require(style.TwapSlices <= 1 || style.TwapDurationSeconds > 0, path + ".execution_style.twap_duration_seconds", "is required with more than one slice");
            check.RequireRange(style.PovRate, 0, 0.5, path + ".execution_style.pov_rate");
            check.Require(style.PovRate == 0 || style.TwapSlices <= 1, path + ".execution_style.pov_rate", "cannot be combined with TWAP slices");
            check.Require(style.PovRate == 0 || style.PovIntervalSeconds is >= 0.01 and <= 3_600, path + ".execution_style.pov_interval_seconds", "must be between 0.01 and 3,600 with a POV rate");
            check.RequireRange(style.MakerWaitSeconds, 0, 600, path + ".execution_style.maker_wait_seconds");
            check.Require(System.Enum.IsDefined(style.BlockTrading), path + ".execution_style.block_trading", "is not a known block trading mode");
            check.Require(style.BlockTrading is BlockTrading.Unspecified or BlockTrading.Alone || style.MakerWaitSeconds == 0, path + ".execution_style.block_trading", "cannot be combined with maker first (a resting slice works alone)");
        }
        check.RequireCount(policy.Hedges.Count, 100, path + ".hedges");
        var hedged = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < policy.Hedges.Count && i < 100; i++)
        {
            var hedge = policy.Hedges[i];
            if (check.RequireIdentifier(hedge.UnderlyingId, $"{path}.hedges[{i}].underlying_id"))
            {
                check.Require(hedged.Add(hedge.UnderlyingId), $"{path}.hedges[{i}].underlying_id", "is hedged twice");
            }

            if (check.RequireIdentifier(hedge.HedgeInstrumentId, $"{path}.hedges[{i}].hedge_instrument_id"))
            {
                check.Require(policy.Targets.All(t => t.InstrumentId != hedge.HedgeInstrumentId), $"{path}.hedges[{i}].hedge_instrument_id", "is a target; a hedge instrument is traded only as a hedge");
            }

            check.RequireRange(hedge.Target, -10, 10, $"{path}.hedges[{i}].target");
            check.RequireRange(hedge.Tolerance, 0, 10, $"{path}.hedges[{i}].tolerance");
            check.OptionalDecimal(hedge.LotSize, $"{path}.hedges[{i}].lot_size", ValidationExtensions.DecimalRule.Positive, 1m, out _);
            if (hedge.Lower != 0 || hedge.Upper != 0)
            {
                check.Require(double.IsFinite(hedge.Lower) && double.IsFinite(hedge.Upper) && hedge.Lower <= hedge.Target && hedge.Target <= hedge.Upper && hedge.Lower < hedge.Upper,
                    $"{path}.hedges[{i}].upper", "a leverage band needs lower ≤ target ≤ upper with lower < upper");
            }

            check.Require(hedge.Ripcord == 0 || (double.IsFinite(hedge.Ripcord) && (hedge.Target >= 0 ? hedge.Ripcord > Math.Max(hedge.Upper, hedge.Target) : hedge.Ripcord < Math.Min(hedge.Lower, hedge.Target))),
                $"{path}.hedges[{i}].ripcord", "must be 0, or beyond the band on the target's side");
        }

        if (policy.RiskLimits is { } limits)
        {
            check.RequireRange(limits.MaxWeight, 0, 1, path + ".risk_limits.max_weight");
            check.RequireRange(limits.MaxVolatility, 0, 10, path + ".risk_limits.max_volatility");
            check.RequireRange(limits.MaxVar99, 0, 1, path + ".risk_limits.max_var_99");
        }
        check.Require(policy.Optimizer?.Objective != WireObjective.MeanVariance || policy.ExpectedReturns.Count > 0,
            path + ".expected_returns", "the mean-variance objective needs expected returns");
        check.RequireCount(policy.LotSizes.Count, MaxPositions, path + ".lot_sizes");
        foreach (var (instrument, lot) in policy.LotSizes.Take(MaxPositions))
        {
            check.RequireIdentifier(instrument, $"{path}.lot_sizes[{instrument}]");
            check.RequireDecimal(lot, $"{path}.lot_sizes[{instrument}]", ValidationExtensions.DecimalRule.Positive, out _);
        }
    }

    private static void ValidateModelParameters(RequestValidator check, Policy policy, string path)
    {
        var parameters = policy.ModelParameters ?? new ModelParameters();
        path += ".model_parameters";
        check.RequireRange(parameters.RiskFreeRate, -1, 1, path + ".risk_free_rate");
        check.RequireRange(parameters.RiskAversion, 0, 1e6, path + ".risk_aversion");
        check.RequireRange(parameters.TargetReturn, -1, 10, path + ".target_return");
        check.RequireRange(parameters.TargetVolatility, 0, 10, path + ".target_volatility");
        check.Require(policy.TargetModel != Contracts.Planning.V1.TargetModel.EfficientRisk || parameters.TargetVolatility > 0,
            path + ".target_volatility", "the efficient-risk model needs a positive target volatility");
        var n = policy.Targets.Count;
        if (parameters.Covariance.Count == 0)
        {
            return;
        }

        if (!check.Require(parameters.Covariance.Count == n * n, path + ".covariance", $"must hold {n} × {n} values in the order of the targets"))
        {
            return;
        }

        for (var i = 0; i < n; i++)
        {
            check.Require(double.IsFinite(parameters.Covariance[(i * n) + i]) && parameters.Covariance[(i * n) + i] > 0, path + ".covariance", $"diagonal entry {i} must be positive");
            for (var j = 0; j < i; j++)
            {
                double a = parameters.Covariance[(i * n) + j], b = parameters.Covariance[(j * n) + i];
                check.Require(double.IsFinite(a) && Math.Abs(a - b) <= 1e-12 * Math.Max(1, Math.Abs(a)), path + ".covariance", $"must be symmetric (entries {i},{j} and {j},{i} differ)");
            }
        }
    }

    private static void ValidateOptimizer(RequestValidator check, OptimizerSettings? optimizer, string path)
    {
        if (optimizer is null)
        {
            return;
        }

        check.Require(System.Enum.IsDefined(optimizer.Objective), path + ".objective", "is not a known objective");
        check.RequireRange(optimizer.RiskAversion, 0, 1e6, path + ".risk_aversion");
        check.RequireRange(optimizer.FeeBps, 0, 1_000, path + ".fee_bps");
        check.RequireRange(optimizer.ImpactCoefficient, 0, 100, path + ".impact_coefficient");
        check.RequireRange(optimizer.TurnoverCap, 0, 10, path + ".turnover_cap");
        check.RequireRange(optimizer.MaxGrossLeverage, 0, 100, path + ".max_gross_leverage");
        check.RequireRange(optimizer.MinCashWeight, 0, 1, path + ".min_cash_weight");
        check.RequireCount(optimizer.DailyVolumes.Count, MaxPositions, path + ".daily_volumes");
        foreach (var (instrument, volume) in optimizer.DailyVolumes.Take(MaxPositions))
        {
            check.RequireIdentifier(instrument, $"{path}.daily_volumes[{instrument}]");
            check.RequireDecimal(volume, $"{path}.daily_volumes[{instrument}]", ValidationExtensions.DecimalRule.Positive, out _, ValidationExtensions.MaxCashMagnitude);
        }

        check.RequireCount(optimizer.Bounds.Count, MaxPositions, path + ".bounds");
        foreach (var (instrument, bounds) in optimizer.Bounds.Take(MaxPositions))
        {
            check.RequireIdentifier(instrument, $"{path}.bounds[{instrument}]");
            var lower = check.RequireRange(bounds.Lower, -10, 10, $"{path}.bounds[{instrument}].lower");
            var upper = check.RequireRange(bounds.Upper, -10, 10, $"{path}.bounds[{instrument}].upper");
            check.Require(!(lower && upper) || bounds.Lower <= bounds.Upper, $"{path}.bounds[{instrument}]", "lower must not exceed upper");
        }

        check.RequireCount(optimizer.DeltaBands.Count, 100, path + ".delta_bands");
        var underlyings = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < optimizer.DeltaBands.Count && i < 100; i++)
        {
            var band = optimizer.DeltaBands[i];
            if (check.RequireIdentifier(band.UnderlyingId, $"{path}.delta_bands[{i}].underlying_id"))
            {
                check.Require(underlyings.Add(band.UnderlyingId), $"{path}.delta_bands[{i}].underlying_id", "appears more than once");
            }

            check.RequireRange(band.Target, -10, 10, $"{path}.delta_bands[{i}].target");
            check.RequireRange(band.Tolerance, 0, 10, $"{path}.delta_bands[{i}].tolerance");
        }
    }

    public static PortfolioSnapshot ToDomain(this Portfolio portfolio) => new(
        portfolio.PortfolioId,
        portfolio.Positions.Select(p => new Holding(p.InstrumentId, p.Quantity.ToDecimal(), DecimalValue.TryParse(p.EntryPrice, out var entry) ? entry : null, p.Venue)).ToArray(),
        DecimalValue.TryParse(portfolio.Cash, out var cash) ? cash : 0m,
        portfolio.Version,
        portfolio.Loans.Select(l => new Core.Loan(
            l.LoanId,
            l.Venue,
            l.Collateral.Select(c => new Core.LoanCollateral(c.Asset, c.Quantity.ToDecimal(), c.LiquidationThreshold)).ToArray(),
            l.Debt.Sum(d => d.Quantity.ToDecimal()),
            l.Debt.Count > 0 && l.Debt[0].Asset != portfolio.BaseCurrency ? l.Debt[0].Asset : string.Empty)).ToArray(),
        portfolio.BaseCurrency,
        portfolio.CashBalances.Select(c => new Core.CashBalance(c.Currency, c.Amount.ToDecimal())).ToArray(),
        portfolio.MarginAccounts.Select(a => new MarginCollateral(a.Venue, a.Collateral.ToDecimal())).ToArray());

    /// <summary>Writes positions and cash of <paramref name="snapshot"/> into a copy of <paramref name="portfolio"/>.</summary>
    public static Portfolio WithHoldings(this Portfolio portfolio, PortfolioSnapshot snapshot)
    {
        var copy = portfolio.Clone();
        copy.Positions.Clear();
        copy.Positions.AddRange(snapshot.Holdings.Select(h =>
        {
            var position = new Position { InstrumentId = h.InstrumentId, Quantity = h.Quantity, Venue = h.Venue };
            if (h.EntryPrice is { } entry)
            {
                position.EntryPrice = entry;
            }

            return position;
        }));
        copy.Cash = snapshot.Cash;
        copy.MarginAccounts.Clear();
        copy.MarginAccounts.AddRange(snapshot.MarginAccountList.Select(a => new MarginAccount { Venue = a.Venue, Collateral = a.Collateral }));
        copy.Loans.Clear();
        copy.Loans.AddRange(snapshot.LoanList.Select(l =>
        {
            var loan = new Contracts.Planning.V1.Loan { LoanId = l.LoanId, Venue = l.Venue };
            loan.Collateral.AddRange(l.Collateral.Select(c => new Contracts.Planning.V1.LoanCollateral { Asset = c.Asset, Quantity = c.Quantity, LiquidationThreshold = c.LiquidationThreshold }));
            loan.Debt.Add(new LoanDebt { Asset = l.OwesCash ? portfolio.BaseCurrency : l.DebtAsset, Quantity = l.Debt });
            return loan;
        }));
        return copy;
    }

    /// <summary>
    /// The domain policy: targets, trade rules, and a part per concern the wire policy sets. Bands come before risk
    /// limits, the order their reasons are reported in.
    /// </summary>
    public static TargetPolicy ToDomain(this Policy policy) => TargetPolicy.Of(
        policy.Targets.ToDictionary(t => t.InstrumentId, t => t.Weight, StringComparer.Ordinal),
        new TradeRules(
            policy.RebalanceTarget == WireRebalanceTarget.BandEdge ? CoreRebalanceTarget.BandEdge : CoreRebalanceTarget.Target,
            DecimalValue.TryParse(policy.MinTradeNotional, out var min) ? min : 0m,
            policy.LotSizes.ToDictionary(kv => kv.Key, kv => kv.Value.ToDecimal(), StringComparer.Ordinal),
            policy.EstimatedCostBps,
            policy.NoTradeInstruments.ToHashSet(StringComparer.Ordinal),
            policy.LotRounding == LotRounding.Optimal,
            policy.MaxSlippageBps),
        new DriftBands(policy.AbsoluteBand, policy.RelativeBand, policy.TotalDriftThreshold),
        policy.RiskLimits is { } limits && (limits.MaxWeight > 0 || limits.MaxVolatility > 0 || limits.MaxVar99 > 0)
            ? new Core.RiskLimits(limits.MaxWeight, limits.MaxVolatility, limits.MaxVar99)
            : null,
        policy.HealthFactorBand is { } band ? new Core.HealthFactorBand(band.Target, band.RepayBelow, band.BoostAbove, band.EmergencyBelow) : null,
        policy.MarginBand is { } margin ? new Core.MarginBand(margin.Target, margin.ActBelow, margin.EmergencyBelow, margin.MaintenanceRate) : null,
        policy.Hedges.Count > 0
            ? new DeltaHedges(policy.Hedges.Select(h => new Core.HedgeRule(h.UnderlyingId, h.HedgeInstrumentId, h.Target, h.Tolerance, DecimalValue.TryParse(h.LotSize, out var lot) ? lot : 1m, h.Lower, h.Upper, h.Ripcord)).ToArray())
            : null,
        policy.Optimizer is { Enabled: true } optimizer ? optimizer.ToDomain(policy.EstimatedCostBps) : null,
        policy.ToModelSpec(),
        new ReturnForecast(policy.ExpectedReturns.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal)));

    /// <summary>The policy's target model with its parameters; a covariance passed in is in the order of the targets.</summary>
    public static TargetModelSpec ToModelSpec(this Policy policy)
    {
        var parameters = policy.ModelParameters ?? new ModelParameters();
        var n = policy.Targets.Count;
        double[,]? covariance = null;
        if (parameters.Covariance.Count == n * n && n > 0)
        {
            covariance = new double[n, n];
            for (var i = 0; i < n; i++)
            {
                for (var j = 0; j < n; j++)
                {
                    covariance[i, j] = parameters.Covariance[(i * n) + j];
                }
            }
        }

        var model = policy.TargetModel switch
        {
            Contracts.Planning.V1.TargetModel.EqualWeight => Core.TargetModel.EqualWeight,
            Contracts.Planning.V1.TargetModel.InverseVolatility => Core.TargetModel.InverseVolatility,
            Contracts.Planning.V1.TargetModel.RiskParity => Core.TargetModel.RiskParity,
            Contracts.Planning.V1.TargetModel.MinimumVariance => Core.TargetModel.MinimumVariance,
            Contracts.Planning.V1.TargetModel.MaximumSharpe => Core.TargetModel.MaximumSharpe,
            Contracts.Planning.V1.TargetModel.MeanVariance => Core.TargetModel.MeanVariance,
            Contracts.Planning.V1.TargetModel.EfficientReturn => Core.TargetModel.EfficientReturn,
            Contracts.Planning.V1.TargetModel.EfficientRisk => Core.TargetModel.EfficientRisk,
            _ => Core.TargetModel.FixedWeights,
        };
        return new TargetModelSpec(model, policy.ModelLookbackDays, covariance, parameters.RiskFreeRate, parameters.RiskAversion == 0 ? 1 : parameters.RiskAversion, parameters.TargetReturn, parameters.TargetVolatility);
    }

    /// <summary>The optimiser settings in domain terms, with the documented defaults for zeros.</summary>
    public static OptimizerPolicy ToDomain(this OptimizerSettings optimizer, double estimatedCostBps) => new(
        optimizer.Objective == WireObjective.MeanVariance ? CoreObjective.MeanVariance : CoreObjective.TrackingError,
        optimizer.RiskAversion == 0 ? 1 : optimizer.RiskAversion,
        optimizer.FeeBps == 0 ? estimatedCostBps : optimizer.FeeBps,
        optimizer.ImpactCoefficient == 0 ? 1 : optimizer.ImpactCoefficient,
        optimizer.DailyVolumes.ToDictionary(kv => kv.Key, kv => kv.Value.ToDecimal(), StringComparer.Ordinal),
        optimizer.TurnoverCap > 0 ? optimizer.TurnoverCap : null,
        optimizer.MaxGrossLeverage > 0 ? optimizer.MaxGrossLeverage : null,
        optimizer.Bounds.ToDictionary(kv => kv.Key, kv => (kv.Value.Lower, kv.Value.Upper), StringComparer.Ordinal),
        optimizer.MinCashWeight,
        optimizer.DeltaBands.Select(b => new CoreDeltaBand(b.UnderlyingId, b.Target, b.Tolerance)).ToArray());

    public static WireDriftReason ToWire(this CoreDriftReason reason) => new()
    {
        Rule = reason.Rule,
        InstrumentId = reason.InstrumentId,
        Measured = reason.Measured,
        Threshold = reason.Threshold,
        Breached = reason.Breached,
        Message = reason.Message,
    };

    public static Side ToWire(this TradeSide side) => side == TradeSide.Buy ? Side.Buy : Side.Sell;

    public static TradeSide ToDomain(this Side side) => side == Side.Buy ? TradeSide.Buy : TradeSide.Sell;

    /// <summary>Whether the policy's targets are computed by a model (anything but fixed weights).</summary>
    public static bool HasComputedModel(Contracts.Planning.V1.Policy policy) =>
        policy.TargetModel is not (Contracts.Planning.V1.TargetModel.Unspecified or Contracts.Planning.V1.TargetModel.FixedWeights);

    /// <summary>The policy field a model parameter is set by, relative to the policy.</summary>
    public static string FieldOf(ModelParameter parameter) => parameter switch
    {
        ModelParameter.ExpectedReturns => "expected_returns",
        ModelParameter.RiskFreeRate => "model_parameters.risk_free_rate",
        ModelParameter.RiskAversion => "model_parameters.risk_aversion",
        ModelParameter.TargetReturn => "model_parameters.target_return",
        ModelParameter.TargetVolatility => "model_parameters.target_volatility",
        _ => "model_parameters.covariance",
    };

    /// <summary>What a policy's model computed, for its read path; null for fixed weights.</summary>
    public static ComputedTargets? ToComputedTargets(this ResolvedTargets resolved)
    {
        if (resolved.Policy.Part<ModelFit>() is not { } fit)
        {
            return null;
        }

        var computed = new ComputedTargets
        {
            Model = ToWire(fit.Model),
            ComputedAt = resolved.ComputedAt.ToTimestamp(),
            LookbackDays = fit.LookbackDays,
            Observations = fit.Observations,
            CovarianceGiven = fit.CovarianceGiven,
        };
        computed.Targets.AddRange(resolved.Policy.Targets.Select(t => new TargetWeight { InstrumentId = t.Key, Weight = t.Value }));
        foreach (var (instrument, expected) in fit.ExpectedReturns ?? new Dictionary<string, double>())
        {
            computed.ExpectedReturns[instrument] = expected;
        }

        computed.Reasons.AddRange(resolved.Reasons);
        return computed;
    }

    /// <summary>A computed model that cannot size its universe now, and why.</summary>
    public static ComputedTargets UnavailableTargets(Contracts.Planning.V1.Policy policy, string reason) =>
        new() { Model = policy.TargetModel, UnavailableReason = reason };

    private static Contracts.Planning.V1.TargetModel ToWire(Core.TargetModel model) => model switch
    {
        Core.TargetModel.EqualWeight => Contracts.Planning.V1.TargetModel.EqualWeight,
        Core.TargetModel.InverseVolatility => Contracts.Planning.V1.TargetModel.InverseVolatility,
        Core.TargetModel.RiskParity => Contracts.Planning.V1.TargetModel.RiskParity,
        Core.TargetModel.MinimumVariance => Contracts.Planning.V1.TargetModel.MinimumVariance,
        Core.TargetModel.MaximumSharpe => Contracts.Planning.V1.TargetModel.MaximumSharpe,
        Core.TargetModel.MeanVariance => Contracts.Planning.V1.TargetModel.MeanVariance,
        Core.TargetModel.EfficientReturn => Contracts.Planning.V1.TargetModel.EfficientReturn,
        Core.TargetModel.EfficientRisk => Contracts.Planning.V1.TargetModel.EfficientRisk,
        _ => Contracts.Planning.V1.TargetModel.FixedWeights,
    };

    public static PortfolioValuation ToWire(this MarkedPortfolio marked, TargetPolicy? policy, DateTimeOffset asOf, IReadOnlyDictionary<string, InstrumentKind>? kinds = null)
    {
        var valuation = new PortfolioValuation
        {
            Cash = marked.Cash,
            NetValue = marked.NetValue,
            AsOf = asOf.ToTimestamp(),
            TotalDrift = policy is null ? 0 : DriftEvaluator.Evaluate(marked, policy).TotalDrift,
        };
        valuation.CashBalances.AddRange((marked.ForeignCash ?? []).Select(c => new CashValuation { Currency = c.Currency, Amount = c.Amount, Rate = c.Rate, Value = c.Value, Weight = c.Weight }));
        valuation.Positions.AddRange(marked.Positions.Select(p => new PositionValuation
        {
            InstrumentId = p.InstrumentId,
            Quantity = p.Quantity,
            Price = p.Price,
            MarketValue = p.MarketValue,
            Weight = p.Weight,
            TargetWeight = policy?.TargetOf(p.InstrumentId) ?? 0,
            DeltaExposure = p.DeltaExposure,
            Kind = kinds?.GetValueOrDefault(p.InstrumentId, InstrumentKind.Spot) ?? InstrumentKind.Spot,
        }));
        return valuation;
    }

    public static PlanLeg ToWire(this PlannedLeg leg) => new()
    {
        LegId = leg.LegId,
        Sequence = leg.Sequence,
        InstrumentId = leg.InstrumentId,
        Side = leg.Side.ToWire(),
        Quantity = leg.Quantity,
        ReferencePrice = leg.ReferencePrice,
        EstimatedNotional = leg.Notional,
        EstimatedCost = leg.EstimatedCost,
        WeightBefore = leg.WeightBefore,
        WeightAfter = leg.WeightAfter,
        Venue = leg.Venue,
        FilledQuantity = 0m,
        Fees = 0m,
        Status = LegStatus.Pending,
    };

    public static LoanValuation ToWire(this MarkedLoan loan) => new()
    {
        LoanId = loan.Loan.LoanId,
        CollateralValue = decimal.Round(loan.CollateralValue, 8),
        DebtValue = loan.Debt,
        HealthFactor = double.IsInfinity(loan.HealthFactor) ? 0 : loan.HealthFactor,
        Equity = decimal.Round(loan.Equity, 8),
    };

    /// <summary>A hedge leg as a plan leg: a trade of a margined contract, flagged as a hedge.</summary>
    public static PlanLeg ToWire(this HedgeLeg leg, string legId, int sequence, decimal costRate) =>
        MarginedTrade(legId, sequence, leg.Instrument, leg.Side, leg.Quantity, leg.Price, leg.Multiplier, leg.Reason, leg.Venue, costRate, hedge: true);

    public static PlanLeg ToWire(this MarginLeg leg, string legId, int sequence, decimal costRate) =>
        MarginedTrade(legId, sequence, leg.Instrument, leg.Side, leg.Quantity, leg.Price, leg.Multiplier, leg.Reason, leg.Venue, costRate, hedge: false);

    /// <summary>A margin top-up as a plan leg: base-currency cash (at 1) into the venue's margin account.</summary>
    public static PlanLeg ToWire(this MarginTopUp topUp, string legId, int sequence, string baseCurrency) =>
        CollateralLeg(legId, sequence, baseCurrency, LegKind.MarginTopUp, topUp.Amount, string.Empty, topUp.Venue, topUp.Reason);

    /// <summary>A collateral transfer as a plan leg: base-currency collateral (at 1) from one venue's margin account to another's.</summary>
    public static PlanLeg ToWire(this MarginTransfer transfer, string legId, int sequence, string baseCurrency) =>
        CollateralLeg(legId, sequence, baseCurrency, LegKind.CollateralTransfer, transfer.Amount, transfer.FromVenue, transfer.ToVenue, transfer.Reason);

    private static PlanLeg CollateralLeg(string legId, int sequence, string baseCurrency, LegKind kind, decimal amount, string fromVenue, string venue, string reason) => new()
    {
        LegId = legId,
        Sequence = sequence,
        InstrumentId = baseCurrency,
        Kind = kind,
        Side = Side.Unspecified,
        Quantity = amount,
        ReferencePrice = 1m,
        EstimatedNotional = amount,
        EstimatedCost = 0m,
        FromVenue = fromVenue,
        Venue = venue,
        Reason = reason,
        FilledQuantity = 0m,
        Fees = 0m,
        Status = LegStatus.Pending,
    };

    /// <summary>A trade leg in a margined contract: its notional is quantity × price × multiplier; fills move its entry price.</summary>
    private static PlanLeg MarginedTrade(string legId, int sequence, string instrument, TradeSide side, decimal quantity, decimal price, decimal multiplier, string reason, string venue, decimal costRate, bool hedge) => new()
    {
        LegId = legId,
        Sequence = sequence,
        InstrumentId = instrument,
        Kind = LegKind.Trade,
        Side = side.ToWire(),
        Quantity = quantity,
        ReferencePrice = price,
        EstimatedNotional = quantity * price * multiplier,
        EstimatedCost = decimal.Round(quantity * price * multiplier * costRate, 8),
        ContractMultiplier = multiplier,
        Hedge = hedge,
        Venue = venue,
        Reason = reason,
        FilledQuantity = 0m,
        Fees = 0m,
        Status = LegStatus.Pending,
    };

    /// <summary>The plan-leg kind of a guard action: a loan operation, or a trade for sells and buys.</summary>
    public static LegKind ToLegKind(this GuardAction action) => action switch
    {
        GuardAction.Repay => LegKind.Repay,
        GuardAction.SupplyCollateral => LegKind.SupplyCollateral,
        GuardAction.WithdrawCollateral => LegKind.WithdrawCollateral,
        GuardAction.Borrow => LegKind.Borrow,
        _ => LegKind.Trade,
    };

    /// <summary>The loan operation of a plan-leg kind; null for trades.</summary>
    public static GuardAction? ToLoanAction(this LegKind kind) => kind switch
    {
        LegKind.Repay => GuardAction.Repay,
        LegKind.SupplyCollateral => GuardAction.SupplyCollateral,
        LegKind.WithdrawCollateral => GuardAction.WithdrawCollateral,
        LegKind.Borrow => GuardAction.Borrow,
        _ => null,
    };

    /// <summary>Whether a leg trades a margined contract (it carries the contract's multiplier): its notional moves no cash.</summary>
    public static bool IsMargined(this PlanLeg leg) => DecimalValue.TryParse(leg.ContractMultiplier, out var multiplier) && multiplier > 0;

    /// <summary>
    /// Free base-currency cash a leg that is not a trade moves when it completes, as the ledger books it (a top-up pays
    /// out its amount); zero for a trade, whose cash depends on its fills.
    /// </summary>
    public static decimal CashMoved(this PlanLeg leg, string baseCurrency)
    {
        var quantity = leg.Quantity.ToDecimal();
        return leg.Kind switch
        {
            LegKind.MarginTopUp => -quantity,
            LegKind.CollateralTransfer => PortfolioLedger.TransferCash(leg.FromVenue, leg.Venue, quantity),
            _ when leg.Kind.ToLoanAction() is { } action => PortfolioLedger.LoanLegCash(action, leg.InstrumentId, quantity, baseCurrency),
            _ => 0m,
        };
    }

    /// <summary>A guard leg as a plan leg: trades with their side, loan legs with their kind, each with its reason.</summary>
    /// <param name="legIdOf">The wire leg id of the guard leg at a position (for <see cref="GuardLeg.FundedBy"/>).</param>
    public static PlanLeg ToWire(this GuardLeg leg, string legId, int sequence, decimal costRate, Func<int, string> legIdOf) => new()
    {
        FundedByLegId = leg.FundedBy is { } funding ? legIdOf(funding) : string.Empty,
        LegId = legId,
        Sequence = sequence,
        InstrumentId = leg.Asset,
        Kind = leg.Action.ToLegKind(),
        Side = leg.Action switch
        {
            GuardAction.Sell => Side.Sell,
            GuardAction.Buy => Side.Buy,
            _ => Side.Unspecified,
        },
        LoanId = leg.LoanId,
        Venue = leg.Action is GuardAction.Sell or GuardAction.Buy ? string.Empty : leg.Venue, // trades: the default account
        Reason = leg.Reason,
        Quantity = leg.Quantity,
        ReferencePrice = leg.Price,
        EstimatedNotional = leg.Value,
        EstimatedCost = leg.Action is GuardAction.Sell or GuardAction.Buy ? decimal.Round(leg.Value * costRate, 8) : 0m,
        FilledQuantity = 0m,
        Fees = 0m,
        Status = LegStatus.Pending,
    };

    /// <summary>True when no further change can happen to a plan in this status.</summary>
    public static bool IsFinal(this PlanStatus status) => status is PlanStatus.Completed or PlanStatus.PartiallyFilled
        or PlanStatus.Failed or PlanStatus.Cancelled or PlanStatus.NoAction;
}
