using MathNet.Numerics.LinearAlgebra;

namespace RebalanceMesh.Planning.Core;

/// <summary>What the optimiser trades off against costs.</summary>
public enum OptimizerObjective
{
    /// <summary>γ·(w − w*)ᵀΣ(w − w*): annualised tracking-error variance to the target weights.</summary>
    TrackingError,

    /// <summary>γ·wᵀΣw − μᵀw: mean-variance with risk aversion γ.</summary>
    MeanVariance,
}

/// <summary>One tradable asset of an optimisation, in weights (fractions of net value).</summary>
/// <param name="Weight">Exposure held now (value for spot, notional for delta-one contracts) / net value.</param>
/// <param name="Target">Target weight (tracking-error objective).</param>
/// <param name="CashPerUnit">Cash spent per unit of weight bought: 1 for spot, 0 for margined contracts.</param>
/// <param name="LinearCost">Fee plus half-spread, as a fraction of traded notional.</param>
/// <param name="ImpactCoefficient">Market impact in weight units: cost / net value = this × |trade|^1.5; for the
/// cvxportfolio model b·σ·|x|^1.5/√V (x and V in currency, σ daily) it is b·σ·√(net value / V).</param>
/// <param name="Lower">Smallest weight allowed after trading (0 for long-only; equal to Upper freezes the asset).</param>
/// <param name="Upper">Largest weight allowed after trading.</param>
/// <param name="Underlying">Underlying whose delta the asset carries, for delta targets; null for none.</param>
/// <param name="DeltaPerUnit">Delta (in weight of the underlying) per unit of weight held.</param>
/// <param name="ExpectedReturn">Annualised expected return (mean-variance objective).</param>
public sealed record OptimizerAsset(
    string InstrumentId,
    double Weight,
    double Target,
    double CashPerUnit,
    double LinearCost,
    double ImpactCoefficient,
    double Lower,
    double Upper,
    string? Underlying = null,
    double DeltaPerUnit = 1,
    double ExpectedReturn = 0);

/// <summary>Net delta on one underlying kept within Target ± Tolerance (weights of net value).</summary>
/// <param name="FixedDelta">Delta on the underlying from positions the optimiser does not trade (options overlays).</param>
public sealed record DeltaTarget(string Underlying, double FixedDelta, double Tolerance, double Target = 0);

/// <summary>An optimisation: assets, their annualised covariance, cash and the constraints that apply.</summary>
/// <param name="Covariance">Annualised covariance of the assets' exposures (row and column per asset).</param>
/// <param name="CashWeight">Cash / net value now.</param>
/// <param name="MinCashWeight">Cash / net value to keep after trading (before costs).</param>
/// <param name="TurnoverCap">Σ|trade| at most this (weights); null for none.</param>
/// <param name="MaxGrossLeverage">Σ|weight| of the assets plus <paramref name="FixedGross"/> at most this; null for none.</param>
/// <param name="FixedGross">Gross exposure weight of positions the optimiser does not trade.</param>
public sealed record OptimizerProblem(
    IReadOnlyList<OptimizerAsset> Assets,
    double[,] Covariance,
    double CashWeight,
    double MinCashWeight = 0,
    OptimizerObjective Objective = OptimizerObjective.TrackingError,
    double RiskAversion = 1,
    double? TurnoverCap = null,
    double? MaxGrossLeverage = null,
    double FixedGross = 0,
    IReadOnlyList<DeltaTarget>? DeltaTargets = null);

/// <summary>The optimiser's trades and what they cost.</summary>
/// <param name="Trades">Change of weight per asset.</param>
/// <param name="Weights">Weight per asset after the trades.</param>
/// <param name="Objective">Risk term plus costs at the solution.</param>
/// <param name="RiskTerm">γ·tracking variance, or γ·variance − expected return.</param>
/// <param name="LinearCost">Fees and half-spread / net value.</param>
/// <param name="ImpactCost">Market impact / net value.</param>
public sealed record OptimizerResult(
    double[] Trades,
    double[] Weights,
    double Objective,
    double RiskTerm,
    double LinearCost,
    double ImpactCost,
    double Turnover,
    int Iterations,
    bool Converged,
    QpSolution Solution);

/// <summary>
/// The cost-aware rebalancing optimiser: starting from current holdings w₀, choose trades t to minimise
/// <c>risk(w₀ + t) + Σ kᵢ|tᵢ| + Σ cᵢ|tᵢ|^1.5</c> (tracking error to target or mean-variance; fees and half-spread;
/// market impact) subject to position bounds, cash (Σ cashᵢ·tᵢ ≤ cash − minimum), a turnover cap (Σ|t| ≤ τ), a gross
/// leverage cap and delta targets per underlying. Solved by <see cref="QpSolver"/> with the costs and the turnover and
/// leverage budgets as separable row terms (their prox is closed form), warm-startable from a previous solution.
/// </summary>
public static class RebalanceOptimizer
{
    public static OptimizerResult Optimize(OptimizerProblem problem, QpSettings? settings = null, QpSolution? warm = null)
    {
        Validate(problem);
        var assets = problem.Assets;
        var n = assets.Count;
        var sigma = Matrix<double>.Build.DenseOfArray(problem.Covariance);
        var w0 = Vector<double>.Build.Dense(n, i => assets[i].Weight);
        var gamma = problem.RiskAversion;

        // Objective in t: γ(w₀ + t − w*)ᵀΣ(w₀ + t − w*) − μᵀt (+ constants) → P = 2γΣ, q = 2γΣ(w₀ − w*) − μ.
        var p = 2 * gamma * sigma;
        var anchor = problem.Objective == OptimizerObjective.TrackingError ? w0 - Vector<double>.Build.Dense(n, i => assets[i].Target) : w0;
        var q = (2 * gamma * (sigma * anchor)) - Vector<double>.Build.Dense(n, i => problem.Objective == OptimizerObjective.MeanVariance ? assets[i].ExpectedReturn : 0);

        var longOnly = assets.All(a => a.Lower >= 0);
        var rows = new List<(double[] Row, double Lower, double Upper)>();
        var linear = new List<double>();
        var power = new List<double>();
        var offset = new List<double>();
        var group = new List<int>();
        var budgets = new List<double>();
        void AddRow(double[] row, double lower, double upper, double k = 0, double c = 0, double o = 0, int g = -1)
        {
            rows.Add((row, lower, upper));
            linear.Add(k);
            power.Add(c);
            offset.Add(o);
            group.Add(g);
        }

        double[] Unit(int i)
        {
            var row = new double[n];
            row[i] = 1;
            return row;
        }

        // Trade rows: the weight after trading within bounds; costs on |t|; the turnover cap as an ℓ₁ budget.
        var turnoverGroup = -1;
        if (problem.TurnoverCap is { } cap)
        {
            turnoverGroup = budgets.Count;
            budgets.Add(cap);
        }

        for (var i = 0; i < n; i++)
        {
            AddRow(Unit(i), assets[i].Lower - assets[i].Weight, assets[i].Upper - assets[i].Weight, assets[i].LinearCost, assets[i].ImpactCoefficient, 0, turnoverGroup);
        }

        // Cash: what buys spend less what sells raise stays within cash above its minimum.
        AddRow(assets.Select(a => a.CashPerUnit).ToArray(), double.NegativeInfinity, problem.CashWeight - problem.MinCashWeight);

        // Gross leverage: linear when every weight is non-negative, else an ℓ₁ budget on holding rows (offset −w₀).
        if (problem.MaxGrossLeverage is { } leverage)
        {
            var room = leverage - problem.FixedGross;
            if (longOnly)
            {
                AddRow(Enumerable.Repeat(1.0, n).ToArray(), double.NegativeInfinity, room - assets.Sum(a => a.Weight));
            }
            else
            {
                var leverageGroup = budgets.Count;
                budgets.Add(room);
                for (var i = 0; i < n; i++)
                {
                    AddRow(Unit(i), double.NegativeInfinity, double.PositiveInfinity, o: -assets[i].Weight, g: leverageGroup);
                }
            }
        }

        // Delta per underlying: fixed delta + Σ δᵢ(w₀ᵢ + tᵢ) within target ± tolerance.
        foreach (var delta in problem.DeltaTargets ?? [])
        {
            var row = assets.Select(a => a.Underlying == delta.Underlying ? a.DeltaPerUnit : 0).ToArray();
            var now = delta.FixedDelta + assets.Select((a, i) => row[i] * a.Weight).Sum();
            AddRow(row, delta.Target - delta.Tolerance - now, delta.Target + delta.Tolerance - now);
        }

        var m = rows.Count;
        var a = Matrix<double>.Build.Dense(m, n, (r, j) => rows[r].Row[j]);
        var terms = new RowTerms(linear.ToArray(), power.ToArray(), offset.ToArray(), group.ToArray(), budgets.ToArray());
        var qp = new QuadraticProgram(p, q, a, Vector<double>.Build.DenseOfEnumerable(rows.Select(r => r.Lower)), Vector<double>.Build.DenseOfEnumerable(rows.Select(r => r.Upper)), terms);
        var solution = QpSolver.Solve(qp, settings ?? new QpSettings(AbsoluteTolerance: 1e-10, RelativeTolerance: 1e-10, MaxIterations: 20_000), warm?.X, warm?.Y);

        var t = solution.X;
        var w = w0 + t;
        var linearCost = Enumerable.Range(0, n).Sum(i => assets[i].LinearCost * Math.Abs(t[i]));
        var impactCost = Enumerable.Range(0, n).Sum(i => assets[i].ImpactCoefficient * Math.Pow(Math.Abs(t[i]), 1.5));
        var risk = problem.Objective == OptimizerObjective.TrackingError
            ? gamma * ((w - Vector<double>.Build.Dense(n, i => assets[i].Target)) * sigma * (w - Vector<double>.Build.Dense(n, i => assets[i].Target)))
            : (gamma * (w * sigma * w)) - Enumerable.Range(0, n).Sum(i => assets[i].ExpectedReturn * w[i]);
        return new OptimizerResult(t.ToArray(), w.ToArray(), risk + linearCost + impactCost, risk, linearCost, impactCost, t.L1Norm(), solution.Iterations, solution.Converged, solution);
    }

    private static void Validate(OptimizerProblem problem)
    {
        var n = problem.Assets.Count;
        if (n == 0 || problem.Covariance.GetLength(0) != n || problem.Covariance.GetLength(1) != n)
        {
            throw new ArgumentException("The covariance must be n × n for n > 0 assets.", nameof(problem));
        }

        foreach (var asset in problem.Assets)
        {
            if (!(asset.Lower <= asset.Upper) || asset.LinearCost < 0 || asset.ImpactCoefficient < 0
                || !double.IsFinite(asset.Weight) || !double.IsFinite(asset.Target) || !double.IsFinite(asset.LinearCost) || !double.IsFinite(asset.ImpactCoefficient))
            {
                throw new ArgumentException($"Asset {asset.InstrumentId}: bounds must be ordered and costs finite and non-negative.", nameof(problem));
            }
        }

        if (!(problem.RiskAversion > 0) || problem.TurnoverCap is < 0 || problem.MaxGrossLeverage is < 0)
        {
            throw new ArgumentException("Risk aversion must be positive; turnover and leverage caps non-negative.", nameof(problem));
        }
    }
}
