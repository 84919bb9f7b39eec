using System.Globalization;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Planning.Core;

/// <summary>What the optimiser needs from the market, fetched by the host: covariance of the universe and half-spreads.</summary>
/// <param name="Instruments">The universe (see <see cref="OptimizedRebalance.Universe"/>), in covariance order.</param>
/// <param name="AnnualCovariance">Annualised covariance of the universe's returns.</param>
/// <param name="HalfSpreads">Half the best bid-ask spread over the mid, per instrument; missing means zero.</param>
public sealed record OptimizerMarket(IReadOnlyList<string> Instruments, double[,] AnnualCovariance, IReadOnlyDictionary<string, double> HalfSpreads);

/// <summary>The optimiser's chosen weights, the cost rates behind them, and the reason that explains them.</summary>
/// <param name="CostRates">Per instrument: linear cost per unit of traded weight and impact coefficient of |t|^1.5.</param>
public sealed record OptimizedWeights(
    IReadOnlyDictionary<string, double> Weights,
    IReadOnlyDictionary<string, (double Linear, double Impact)> CostRates,
    DriftReason Reason,
    OptimizerResult Result)
{
    /// <summary>Expected cost of trading <paramref name="notional"/> of an instrument in a portfolio of <paramref name="netValue"/>.</summary>
    public decimal CostOf(string instrument, decimal notional, decimal netValue)
    {
        if (!CostRates.TryGetValue(instrument, out var rate) || netValue <= 0)
        {
            return 0m;
        }

        var t = Math.Abs((double)(notional / netValue));
        return decimal.Round((decimal)(((rate.Linear * t) + (rate.Impact * t * Math.Sqrt(t))) * (double)netValue), 8);
    }
}

/// <summary>
/// Sets up and runs the cost-aware optimiser for a triggered rebalance: the universe is every spot position the policy
/// rebalances (held or targeted); derivative overlays and no-trade holdings stay as they are but count in the delta
/// bands (their delta from pricing) and in gross leverage.
/// </summary>
public static class OptimizedRebalance
{
    public const string Rule = "optimizer";

    /// <summary>Instruments the optimiser trades, in the portfolio's order.</summary>
    public static IReadOnlyList<string> Universe(MarkedPortfolio marked, TargetPolicy policy) =>
        marked.Positions.Where(p => p.IsSpot && DriftEvaluator.IsRebalanced(p, policy)).Select(p => p.InstrumentId).ToArray();

    public static OptimizedWeights Choose(MarkedPortfolio marked, TargetPolicy policy, OptimizerMarket market)
    {
        var settings = policy.Part<OptimizerPolicy>() ?? throw new ArgumentException("The policy has no optimiser settings.", nameof(policy));
        var nav = (double)marked.NetValue;
        if (nav <= 0)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition, "The optimiser needs a positive net value.");
        }

        var positions = marked.Positions.ToDictionary(p => p.InstrumentId, StringComparer.Ordinal);
        var ids = market.Instruments;
        var rates = new Dictionary<string, (double Linear, double Impact)>(StringComparer.Ordinal);
        var assets = new List<OptimizerAsset>();
        for (var i = 0; i < ids.Count; i++)
        {
            var position = positions[ids[i]];
            var dailySigma = Math.Sqrt(Math.Max(market.AnnualCovariance[i, i], 0) / 252.0);
            var volume = settings.DailyVolumes.TryGetValue(ids[i], out var v) ? (double)v : 0;
            var impact = volume > 0 ? settings.ImpactCoefficient * dailySigma * Math.Sqrt(nav / volume) : 0;
            var linear = (settings.FeeBps / 10_000) + market.HalfSpreads.GetValueOrDefault(ids[i]);
            var (lower, upper) = settings.Bounds.TryGetValue(ids[i], out var b) ? b : (0.0, 1.0);
            rates[ids[i]] = (linear, impact);
            assets.Add(new OptimizerAsset(ids[i], position.Weight, policy.TargetOf(ids[i]), 1, linear, impact, lower, upper,
                ids[i], 1, policy.ExpectedReturns?.GetValueOrDefault(ids[i]) ?? 0));
        }

        // What the optimiser does not trade still counts: its delta per underlying and its gross exposure.
        var universe = ids.ToHashSet(StringComparer.Ordinal);
        var fixedDelta = new Dictionary<string, double>(StringComparer.Ordinal);
        double fixedGross = 0;
        foreach (var position in marked.Positions.Where(p => !universe.Contains(p.InstrumentId)))
        {
            fixedDelta[position.UnderlyingId] = fixedDelta.GetValueOrDefault(position.UnderlyingId) + (position.DeltaExposure / nav);
            fixedGross += Math.Abs(position.DeltaExposure) / nav;
        }

        var problem = new OptimizerProblem(
            assets,
            market.AnnualCovariance,
            marked.CashWeight,
            settings.MinCashWeight,
            settings.Objective,
            settings.RiskAversion,
            settings.TurnoverCap,
            settings.MaxGrossLeverage,
            fixedGross,
            settings.DeltaBands.Select(d => new DeltaTarget(d.Underlying, fixedDelta.GetValueOrDefault(d.Underlying), d.Tolerance, d.Target)).ToArray());
        var result = RebalanceOptimizer.Optimize(problem, new QpSettings(AbsoluteTolerance: 1e-10, RelativeTolerance: 1e-10, MaxIterations: 10_000));
        if (!result.Converged)
        {
            throw new DomainException(DomainErrorKind.FailedPrecondition,
                $"The optimiser did not converge in {result.Iterations} iterations; the policy's bounds, turnover cap, leverage cap and delta bands may not be satisfiable together.");
        }

        var weights = ids.Select((id, i) => (id, w: result.Weights[i])).ToDictionary(x => x.id, x => x.w, StringComparer.Ordinal);
        var message = string.Create(CultureInfo.InvariantCulture,
            $"optimiser ({settings.Objective}, γ {settings.RiskAversion:G3}): risk term {result.RiskTerm:E3}, expected cost {(result.LinearCost + result.ImpactCost) * 10_000:F2} bp of net value (fees and spread {result.LinearCost * 10_000:F2}, impact {result.ImpactCost * 10_000:F2}), turnover {result.Turnover:P2}{(settings.TurnoverCap is { } cap ? string.Create(CultureInfo.InvariantCulture, $" of cap {cap:P2}") : string.Empty)}, {result.Iterations} iterations");
        var reason = new DriftReason(Rule, string.Empty, result.Turnover, settings.TurnoverCap ?? 0, false, message);
        return new OptimizedWeights(weights, rates, reason, result);
    }
}
