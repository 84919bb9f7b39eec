using RebalanceMesh.Domain;
using RebalanceMesh.Numerics;

namespace RebalanceMesh.Planning.Core;

/// <summary>When a backtested strategy rebalances.</summary>
public enum BacktestTrigger
{
    /// <summary>Never after the first day (buy and hold).</summary>
    Never,
    /// <summary>Every <see cref="BacktestStrategy.CalendarDays"/> trading days, to target.</summary>
    Calendar,
    /// <summary>When the policy's bands are breached (the monitor's rule), as the policy says.</summary>
    Bands,
}

/// <summary>
/// A loan opened on the first day for leverage: <paramref name="CollateralShare"/> of the capital buys units of
/// <paramref name="CollateralAsset"/> that are pledged, and <paramref name="LoanToValue"/> of their value is borrowed
/// into cash (debt in the base currency). The lending venue's rules (<see cref="LendingLiquidation"/>) apply at every
/// close: below a health factor of 1 the loan is liquidated with the bonus.
/// </summary>
public sealed record BacktestLoan(string CollateralAsset, decimal CollateralShare, decimal LoanToValue, double LiquidationThreshold, decimal LiquidationBonus = 0.05m);

/// <summary>
/// A strategy to replay: a name, its trigger and the policy it trades with — fixed or computed targets (its target
/// model, re-estimated each day over the trailing history), bands, risk limits, the cost-aware optimiser, the
/// liquidation guard — with the half-spread the optimiser is told, and an optional loan.
/// </summary>
public sealed record BacktestStrategy(string Name, BacktestTrigger Trigger, TargetPolicy Policy, int CalendarDays = 21, double HalfSpreadBps = 0, BacktestLoan? Loan = null)
{
    /// <summary>Days of history the policy needs before it can plan (estimated covariance or mean returns).</summary>
    public int WarmUpDays
    {
        get
        {
            var spec = Policy.ModelSpec;
            var estimated = (spec.Model is not (TargetModel.FixedWeights or TargetModel.EqualWeight) && (spec.Covariance is null || TargetModels.NeedsReturns(spec.Model)))
                || Policy.Part<OptimizerPolicy>() is not null
                || Policy.Part<RiskLimits>() is { MaxVolatility: > 0 } or { MaxVar99: > 0 };
            return estimated ? spec.Lookback : 0;
        }
    }
}

/// <summary>One strategy's daily net values and summary statistics.</summary>
/// <param name="AnnualReturn">Geometric, 252 trading days a year.</param>
/// <param name="Sharpe">Annualised mean / volatility of daily returns (zero risk-free rate).</param>
/// <param name="MaxDrawdown">Largest fall from a previous peak, as a fraction.</param>
/// <param name="Turnover">Σ traded notional / average net value, over the whole run.</param>
/// <param name="TrackingError">Annualised volatility of the daily return difference to the target portfolio rebalanced every day at no cost.</param>
/// <param name="Weights">Each day's weights at the close (after any rebalance), in the order of the instruments.</param>
/// <param name="Liquidations">Liquidation calls the lending venue made on the strategy's loan.</param>
/// <param name="LiquidationPenalty">Value lost to liquidators' bonuses.</param>
/// <param name="MinHealthFactor">Lowest health factor seen at a close (before the guard acted); infinite without a loan.</param>
public sealed record BacktestResult(
    string Name,
    IReadOnlyList<decimal> NetValues,
    IReadOnlyList<double[]> Weights,
    int Rebalances,
    decimal Costs,
    double AnnualReturn,
    double AnnualVolatility,
    double Sharpe,
    double MaxDrawdown,
    double Turnover,
    double TrackingError,
    int Liquidations = 0,
    decimal LiquidationPenalty = 0,
    double MinHealthFactor = double.PositiveInfinity,
    int GuardActions = 0);

/// <summary>
/// Market data of one day of a backtest, from the closes up to and including that day only: annualised sample
/// covariance and mean of daily log returns over the lookback (the estimator the risk service uses), and a fixed
/// half-spread.
/// </summary>
public sealed class HistoricalMarketData(IReadOnlyList<string> universe, IReadOnlyList<double[]> closes, int day, double halfSpread) : IPlanningMarketData
{
    private readonly Dictionary<string, int> _columns = universe.Select((id, j) => (id, j)).ToDictionary(x => x.id, x => x.j, StringComparer.Ordinal);

    public Task<CovarianceEstimate> EstimateCovarianceAsync(IReadOnlyList<string> instruments, int lookbackDays, CancellationToken cancellationToken)
    {
        var columns = instruments.Select(id => _columns.TryGetValue(id, out var j) ? j : throw new DomainException(DomainErrorKind.FailedPrecondition, $"No price history for {id}.")).ToArray();
        var first = Math.Max(0, day - lookbackDays);
        if (day - first < 2)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, "Not enough price history: fewer than 3 days.");
        }

        var returns = new double[day - first, columns.Length];
        for (var t = first + 1; t <= day; t++)
        {
            for (var k = 0; k < columns.Length; k++)
            {
                returns[t - first - 1, k] = Math.Log(closes[t][columns[k]] / closes[t - 1][columns[k]]);
            }
        }

        var covariance = SampleMoments.Covariance(returns);
        for (var a = 0; a < columns.Length; a++)
        {
            for (var b = 0; b < columns.Length; b++)
            {
                covariance[a, b] *= TradingDays;
            }
        }

        return Task.FromResult(new CovarianceEstimate(instruments.ToArray(), covariance, SampleMoments.Means(returns).Select(m => m * TradingDays).ToArray()));
    }

    public Task<IReadOnlyDictionary<string, double>> HalfSpreadsAsync(IReadOnlyList<string> instruments, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyDictionary<string, double>>(instruments.ToDictionary(id => id, _ => halfSpread, StringComparer.Ordinal));

    private const double TradingDays = 252;
}

/// <summary>
/// Replays strategies over daily closes with the production planning pipeline (<see cref="PlanComposer"/>: policy
/// resolution with the target model and risk limits, liquidation guard, bands, optimiser, plan builder). Each day the
/// portfolio is marked at the close; the lending venue liquidates a loan below a health factor of 1; the guard acts
/// every day it has to; the trigger decides whether the rest of the pipeline trades (the policy's bands, a calendar,
/// or never). Legs fill at the close with the policy's cost estimate through <see cref="PortfolioLedger"/>. Every
/// strategy is compared with its target portfolio rebalanced every day at no cost (its tracking error), and all are
/// measured from the same first day: the longest history any policy needs is used as warm-up.
/// </summary>
public static class Backtester
{
    /// <param name="closes">Daily closes, one row per day (oldest first), one column per instrument.</param>
    public static async Task<IReadOnlyList<BacktestResult>> RunAsync(IReadOnlyList<string> instruments, IReadOnlyList<double[]> closes, decimal capital, IReadOnlyList<BacktestStrategy> strategies, CancellationToken cancellationToken = default)
    {
        if (closes.Count < 2 || closes.Any(row => row.Length != instruments.Count || row.Any(v => !(v > 0))))
        {
            throw new ArgumentException("At least two days of positive closes, one per instrument, are required.", nameof(closes));
        }

        var start = strategies.Count == 0 ? 0 : strategies.Max(s => s.WarmUpDays);
        if (closes.Count - start < 2)
        {
            throw new ArgumentException($"The policies need {start} days of history before the first trade; the closes hold {closes.Count}.", nameof(closes));
        }

        var results = new List<BacktestResult>();
        foreach (var strategy in strategies)
        {
            results.Add(await ReplayAsync(instruments, closes, start, capital, strategy, cancellationToken));
        }

        return results;
    }

    private static async Task<BacktestResult> ReplayAsync(IReadOnlyList<string> instruments, IReadOnlyList<double[]> closes, int start, decimal capital, BacktestStrategy strategy, CancellationToken cancellationToken)
    {
        var costRate = strategy.Policy.CostRate;
        var portfolio = new PortfolioSnapshot(strategy.Name, [], capital, 0, BaseCurrency: BaseCurrency);
        var values = new List<decimal>();
        var weights = new List<double[]>();
        var benchmarkReturns = new List<double>();
        IReadOnlyDictionary<string, double>? previousTargets = null;
        int rebalances = 0, sinceLast = 0, liquidations = 0, guardActions = 0;
        decimal costs = 0, traded = 0, penalty = 0;
        var minHealth = double.PositiveInfinity;
        for (var day = start; day < closes.Count; day++)
        {
            var prices = instruments.Select((id, j) => (id, p: decimal.Round((decimal)closes[day][j], 6))).ToDictionary(x => x.id, x => x.p, StringComparer.Ordinal);
            var marks = prices.ToDictionary(kv => kv.Key, kv => InstrumentMark.Spot(kv.Value), StringComparer.Ordinal);
            var market = new SharedMarketData(new HistoricalMarketData(instruments, closes, day, strategy.HalfSpreadBps / 10_000));
            var (policy, _) = await PlanComposer.ResolvePolicyAsync(strategy.Policy, market, cancellationToken);
            if (day == start && strategy.Loan is { } setup)
            {
                portfolio = OpenLoan(portfolio, setup, prices[setup.CollateralAsset], capital);
            }

            // The lending venue first: liquidators act as soon as the health factor is below 1.
            foreach (var loan in portfolio.LoanList)
            {
                minHealth = Math.Min(minHealth, MarkedLoan.Mark(loan, a => a == BaseCurrency ? 1m : prices[a]).HealthFactor);
            }

            (portfolio, var calls, var lost) = Liquidate(portfolio, prices, strategy.Loan);
            liquidations += calls;
            penalty += lost;

            sinceLast++;
            var due = day == start || strategy.Trigger switch
            {
                BacktestTrigger.Calendar => sinceLast >= strategy.CalendarDays,
                BacktestTrigger.Bands => true, // the pipeline trades only when its bands (or risk limits) are breached
                _ => false,
            };
            if (due)
            {
                // The first day and calendar dates trade to target; band breaches trade as the policy says.
                var force = day == start || strategy.Trigger != BacktestTrigger.Bands;
                var composed = await PlanComposer.ComposeAsync(portfolio, policy, marks, force, market, TimeProvider.System, cancellationToken);
                portfolio = composed.Snapshot;
                (costs, traded, guardActions) = CountGuard(composed.GuardLegs, costRate, costs, traded, guardActions);
                foreach (var leg in composed.Proposal.Legs)
                {
                    portfolio = PortfolioLedger.ApplyFill(portfolio, leg.InstrumentId, leg.Side, leg.Quantity, leg.ReferencePrice, leg.EstimatedCost);
                    costs += leg.EstimatedCost;
                    traded += leg.Notional;
                }

                if (composed.Proposal.HasTrades)
                {
                    rebalances += day == start ? 0 : 1;
                    sinceLast = 0;
                }
            }
            else if (PlanComposer.Guard(portfolio, policy, marks) is { Acts: true } guard)
            {
                // Between rebalances the guard still protects the loans.
                portfolio = LiquidationGuard.Apply(portfolio, guard, BaseCurrency, costRate);
                (costs, traded, guardActions) = CountGuard(guard.Legs, costRate, costs, traded, guardActions);
            }

            var marked = PortfolioMarking.Mark(portfolio, policy, prices);
            values.Add(marked.NetValue + portfolio.LoanList.Sum(l => MarkedLoan.Mark(l, a => a == BaseCurrency ? 1m : prices[a]).Equity));
            weights.Add(instruments.Select(id => marked.Find(id)?.Weight ?? 0).ToArray());
            if (previousTargets is not null)
            {
                // The target portfolio rebalanced daily at no cost: Σ w*ᵢ·rᵢ (cash earns nothing).
                benchmarkReturns.Add(instruments.Select((id, j) => previousTargets.GetValueOrDefault(id) * ((closes[day][j] / closes[day - 1][j]) - 1)).Sum());
            }

            previousTargets = policy.Targets;
        }

        var returns = values.Zip(values.Skip(1), (a, b) => (double)(b / a) - 1).ToArray();
        var mean = returns.Average();
        var volatility = StandardDeviation(returns) * Math.Sqrt(252);
        var years = returns.Length / 252.0;
        var peak = values[0];
        double drawdown = 0;
        foreach (var value in values)
        {
            peak = Math.Max(peak, value);
            drawdown = Math.Max(drawdown, (double)((peak - value) / peak));
        }

        var tracking = StandardDeviation(returns.Zip(benchmarkReturns, (r, b) => r - b).ToArray()) * Math.Sqrt(252);
        return new BacktestResult(
            strategy.Name,
            values,
            weights,
            rebalances,
            costs,
            Math.Pow((double)(values[^1] / values[0]), 1 / years) - 1,
            volatility,
            volatility > 0 ? mean * 252 / volatility : 0,
            drawdown,
            (double)(traded / values.Average()),
            tracking,
            liquidations,
            penalty,
            minHealth,
            guardActions);
    }

    /// <summary>The base currency of backtested portfolios (cash, debt).</summary>
    public const string BaseCurrency = "CASH";

    private static (decimal Costs, decimal Traded, int Actions) CountGuard(IReadOnlyList<GuardLeg> legs, decimal costRate, decimal costs, decimal traded, int actions)
    {
        foreach (var leg in legs.Where(l => l.Action is GuardAction.Sell or GuardAction.Buy))
        {
            costs += leg.Value * costRate;
            traded += leg.Value;
        }

        return (costs, traded, actions + (legs.Count > 0 ? 1 : 0));
    }

    private static PortfolioSnapshot OpenLoan(PortfolioSnapshot portfolio, BacktestLoan setup, decimal price, decimal capital)
    {
        var units = decimal.Round(capital * setup.CollateralShare / price, 6, MidpointRounding.ToZero);
        var debt = decimal.Round(units * price * setup.LoanToValue, 2, MidpointRounding.ToZero);
        var loan = new Loan("LOAN-1", "LEND", [new LoanCollateral(setup.CollateralAsset, units, setup.LiquidationThreshold)], debt);
        return portfolio with { Cash = portfolio.Cash - (units * price) + debt, Loans = [loan] };
    }

    /// <summary>The lending venue's liquidations at today's prices, repeated while a loan stays below 1 (bounded).</summary>
    private static (PortfolioSnapshot Portfolio, int Calls, decimal Penalty) Liquidate(PortfolioSnapshot portfolio, IReadOnlyDictionary<string, decimal> prices, BacktestLoan? setup)
    {
        int count = 0;
        decimal penalty = 0;
        var loans = portfolio.LoanList.Select(loan =>
        {
            var collateral = loan.Collateral.Select(c => new LendingCollateral(c.Asset, c.Quantity, prices[c.Asset], (decimal)c.LiquidationThreshold, setup?.LiquidationBonus ?? 0.05m)).ToArray();
            var calls = LendingLiquidation.Run(collateral, loan.Debt);
            count += calls.Count;
            penalty += calls.Sum(call => (call.SeizedQuantity * prices[call.SeizedAsset]) - call.DebtValueRepaid);
            return loan with
            {
                Debt = loan.Debt - calls.Sum(call => call.DebtValueRepaid),
                Collateral = loan.Collateral.Select(c => c with { Quantity = c.Quantity - calls.Where(call => call.SeizedAsset == c.Asset).Sum(call => call.SeizedQuantity) }).ToArray(),
            };
        }).ToArray();
        return (portfolio with { Loans = loans }, count, penalty);
    }

    private static double StandardDeviation(IReadOnlyList<double> values)
    {
        if (values.Count < 2)
        {
            return 0;
        }

        var mean = values.Average();
        return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
    }
}
