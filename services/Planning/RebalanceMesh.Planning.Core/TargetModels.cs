using System.Globalization;

namespace RebalanceMesh.Planning.Core;

/// <summary>A parameter of a computed target model.</summary>
public enum ModelParameter
{
    ExpectedReturns,
    RiskFreeRate,
    RiskAversion,
    TargetReturn,
    TargetVolatility,
    Covariance,
}

/// <summary>
/// A model parameter no long-only portfolio can satisfy (a target return outside the assets' returns, a volatility
/// target below the least volatile portfolio, no asset above the risk-free rate): the policy is wrong, not the market.
/// </summary>
public sealed class InfeasibleModelException : ArgumentException
{
    public InfeasibleModelException(ModelParameter parameter, string message)
        : base(message)
    {
        Parameter = parameter;
    }

    public InfeasibleModelException()
    {
    }

    public InfeasibleModelException(string message)
        : base(message)
    {
    }

    public InfeasibleModelException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public ModelParameter Parameter { get; }
}

/// <summary>How a policy's target weights are set.</summary>
public enum TargetModel
{
    /// <summary>The weights given in the policy.</summary>
    FixedWeights,
    /// <summary>1/n of the budget each.</summary>
    EqualWeight,
    /// <summary>Weights ∝ 1/σᵢ.</summary>
    InverseVolatility,
    /// <summary>Equal risk contribution: wᵢ·(Σw)ᵢ equal for every asset.</summary>
    RiskParity,
    /// <summary>Long-only minimum variance: minimise wᵀΣw with Σw = budget, w ≥ 0 (a QP).</summary>
    MinimumVariance,
    /// <summary>Long-only tangency portfolio: maximise (μ − r_f)ᵀw / √(wᵀΣw).</summary>
    MaximumSharpe,
    /// <summary>Long-only mean-variance: maximise μᵀw − γ/2·wᵀΣw.</summary>
    MeanVariance,
    /// <summary>Efficient frontier at a target return: minimise wᵀΣw with μᵀw = target.</summary>
    EfficientReturn,
    /// <summary>Efficient frontier at a target volatility: maximise μᵀw with √(wᵀΣw) ≤ target.</summary>
    EfficientRisk,
}

/// <summary>What the return-aware models need besides the covariance (all annualised, as fractions).</summary>
/// <param name="ExpectedReturns">μ per asset, in covariance order.</param>
/// <param name="RiskFreeRate">r_f of the maximum-Sharpe model.</param>
/// <param name="RiskAversion">γ of the mean-variance model.</param>
/// <param name="TargetReturn">Return of the invested share on the frontier (EfficientReturn).</param>
/// <param name="TargetVolatility">Volatility of the invested share on the frontier (EfficientRisk).</param>
public sealed record ReturnModelInputs(IReadOnlyList<double> ExpectedReturns, double RiskFreeRate = 0, double RiskAversion = 1, double TargetReturn = 0, double TargetVolatility = 0);

/// <summary>
/// Target weights from a covariance matrix. Every model returns long-only weights summing to the budget (the share
/// of net value to invest; the rest stays cash).
/// </summary>
public static class TargetModels
{
    /// <summary>The return-aware models, which need <paramref name="returns"/>.</summary>
    public static bool NeedsReturns(TargetModel model) =>
        model is TargetModel.MaximumSharpe or TargetModel.MeanVariance or TargetModel.EfficientReturn or TargetModel.EfficientRisk;

    public static double[] Compute(TargetModel model, double[,] covariance, double budget, ReturnModelInputs? returns = null)
    {
        var n = covariance.GetLength(0);
        if (n == 0 || covariance.GetLength(1) != n)
        {
            throw new ArgumentException("A square, non-empty covariance is required.", nameof(covariance));
        }

        if (NeedsReturns(model) && (returns is null || returns.ExpectedReturns.Count != n || !returns.ExpectedReturns.All(double.IsFinite)))
        {
            throw new InfeasibleModelException(ModelParameter.ExpectedReturns, $"{model} needs a finite expected return per asset.");
        }

        double[] raw = model switch
        {
            TargetModel.MaximumSharpe => MaximumSharpe(covariance, returns!),
            TargetModel.MeanVariance => MeanVariance(covariance, returns!.ExpectedReturns, returns.RiskAversion),
            TargetModel.EfficientReturn => EfficientReturn(covariance, returns!),
            TargetModel.EfficientRisk => EfficientRisk(covariance, returns!),
            TargetModel.EqualWeight => Enumerable.Repeat(1.0, n).ToArray(),
            TargetModel.InverseVolatility => Enumerable.Range(0, n).Select(i => 1 / Math.Sqrt(Positive(covariance[i, i], i))).ToArray(),
            TargetModel.RiskParity => RiskParity(covariance),
            TargetModel.MinimumVariance => MinimumVariance(covariance),
            _ => throw new ArgumentOutOfRangeException(nameof(model), "Fixed weights are not computed."),
        };
        var sum = raw.Sum();
        return raw.Select(w => w / sum * budget).ToArray();
    }

    /// <summary>Long-only, fully invested minimum variance by the QP solver; weights sum to 1 before scaling.</summary>
    public static double[] MinimumVariance(double[,] covariance)
    {
        var n = covariance.GetLength(0);
        var w = SolveLongOnly(covariance, 2, new double[n], [(Enumerable.Repeat(1.0, n).ToArray(), 1, 1)]);

        // Clean the last bits: tiny negatives are already zero; renormalise.
        var sum = w.Sum();
        return w.Select(v => v / sum).ToArray();
    }

    /// <summary>
    /// Tangency portfolio, long-only, as a QP (Cornuéjols–Tütüncü): minimise yᵀΣy with (μ − r_f)ᵀy = 1, y ≥ 0, then
    /// w = y / Σy. Needs some asset to beat the risk-free rate.
    /// </summary>
    public static double[] MaximumSharpe(double[,] covariance, ReturnModelInputs returns)
    {
        var excess = returns.ExpectedReturns.Select(r => r - returns.RiskFreeRate).ToArray();
        if (excess.All(e => e <= 0))
        {
            throw new InfeasibleModelException(ModelParameter.RiskFreeRate, "No asset's expected return beats the risk-free rate; the maximum-Sharpe portfolio does not exist.");
        }

        var y = SolveLongOnly(covariance, 2, new double[excess.Length], [(excess, 1, 1)]);
        var sum = y.Sum();
        return y.Select(v => v / sum).ToArray();
    }

    /// <summary>Long-only, fully invested mean-variance: minimise γ/2·wᵀΣw − μᵀw with Σw = 1, w ≥ 0.</summary>
    public static double[] MeanVariance(double[,] covariance, IReadOnlyList<double> expected, double riskAversion, double[]? warm = null)
    {
        if (!(riskAversion > 0))
        {
            throw new InfeasibleModelException(ModelParameter.RiskAversion, "Risk aversion must be positive.");
        }

        var n = expected.Count;
        return SolveLongOnly(covariance, riskAversion, expected.Select(r => -r).ToArray(), [(Enumerable.Repeat(1.0, n).ToArray(), 1, 1)], warm);
    }

    /// <summary>Frontier at a target return: minimise wᵀΣw with μᵀw = target, Σw = 1, w ≥ 0.</summary>
    public static double[] EfficientReturn(double[,] covariance, ReturnModelInputs returns)
    {
        var mu = returns.ExpectedReturns;
        if (returns.TargetReturn < mu.Min() - 1e-12 || returns.TargetReturn > mu.Max() + 1e-12)
        {
            throw new InfeasibleModelException(ModelParameter.TargetReturn, string.Create(CultureInfo.InvariantCulture, $"A long-only portfolio returns between {mu.Min():P2} and {mu.Max():P2}; {returns.TargetReturn:P2} is out of reach."));
        }

        var n = mu.Count;
        return SolveLongOnly(covariance, 2, new double[n], [(Enumerable.Repeat(1.0, n).ToArray(), 1, 1), (mu.ToArray(), returns.TargetReturn, returns.TargetReturn)]);
    }

    /// <summary>
    /// Frontier at a target volatility: the highest expected return with √(wᵀΣw) ≤ target. By duality it is the
    /// mean-variance portfolio for some γ, found by bisection on log γ (volatility falls as γ grows). When even the
    /// highest-return corner is within the target, that corner; when the minimum-variance portfolio exceeds it, an error.
    /// </summary>
    public static double[] EfficientRisk(double[,] covariance, ReturnModelInputs returns)
    {
        var mu = returns.ExpectedReturns;
        var target = returns.TargetVolatility;
        double Volatility(IReadOnlyList<double> w) => Math.Sqrt(Math.Max(Quadratic(covariance, w), 0));
        var minimum = MinimumVariance(covariance);
        if (Volatility(minimum) > target * (1 + 1e-12))
        {
            throw new InfeasibleModelException(ModelParameter.TargetVolatility, string.Create(CultureInfo.InvariantCulture, $"The least volatile long-only portfolio has volatility {Volatility(minimum):P2}, above the target {target:P2}."));
        }

        var best = Enumerable.Range(0, mu.Count).MaxBy(i => mu[i]);
        var corner = Enumerable.Range(0, mu.Count).Select(i => i == best ? 1.0 : 0.0).ToArray();
        if (Volatility(corner) <= target)
        {
            return corner;
        }

        double low = Math.Log(1e-4), high = Math.Log(1e6);
        double[] weights = MeanVariance(covariance, mu, Math.Exp(high));
        for (var i = 0; i < 80 && high - low > 1e-13; i++)
        {
            var mid = 0.5 * (low + high);
            var candidate = MeanVariance(covariance, mu, Math.Exp(mid), weights);
            if (Volatility(candidate) > target)
            {
                low = mid;
            }
            else
            {
                high = mid;
                weights = candidate;
            }
        }

        return weights;
    }

    /// <summary>
    /// minimise scale/2·wᵀΣw + qᵀw over w ≥ 0 with extra rows lᵣ ≤ aᵣᵀw ≤ uᵣ, by the QP solver. The problem is
    /// normalised first, which changes neither its solution nor its feasible set: the objective is divided by the mean
    /// variance (daily and annual covariances, or returns in any unit, become the same problem) and each row by its
    /// largest coefficient. The solver's tolerances are absolute, so without this a daily covariance (variances near
    /// 1e-5) left it far from convergence.
    /// </summary>
    private static double[] SolveLongOnly(double[,] covariance, double scale, double[] q, IReadOnlyList<(double[] Row, double Lower, double Upper)> rows, double[]? warm = null)
    {
        var n = q.Length;
        var m = rows.Count + n;
        var meanVariance = Enumerable.Range(0, n).Average(i => covariance[i, i]);
        var objective = meanVariance > 0 && double.IsFinite(meanVariance) ? scale / meanVariance : scale;
        var rowScale = rows.Select(r => r.Row.Max(Math.Abs) is var largest && largest > 0 ? 1 / largest : 1.0).ToArray();
        var p = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseOfArray(covariance) * objective;
        q = q.Select(v => v * objective / scale).ToArray();
        var a = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.Dense(m, n, (i, j) => i < rows.Count ? rows[i].Row[j] * rowScale[i] : (i - rows.Count == j ? 1.0 : 0.0));
        var lower = MathNet.Numerics.LinearAlgebra.Vector<double>.Build.Dense(m, i => i < rows.Count ? rows[i].Lower * rowScale[i] : 0.0);
        var upper = MathNet.Numerics.LinearAlgebra.Vector<double>.Build.Dense(m, i => i < rows.Count ? rows[i].Upper * rowScale[i] : double.PositiveInfinity);
        var solution = QpSolver.Solve(
            new QuadraticProgram(p, MathNet.Numerics.LinearAlgebra.Vector<double>.Build.DenseOfArray(q), a, lower, upper),
            warmX: warm is null ? null : MathNet.Numerics.LinearAlgebra.Vector<double>.Build.DenseOfArray(warm));
        if (!solution.Converged)
        {
            throw new ArgumentException("The target model's optimisation did not converge.", nameof(covariance));
        }

        return solution.X.Select(v => Math.Max(v, 0)).ToArray();
    }

    /// <summary>wᵀΣw.</summary>
    internal static double Quadratic(double[,] covariance, IReadOnlyList<double> w)
    {
        double total = 0;
        for (var i = 0; i < w.Count; i++)
        {
            for (var j = 0; j < w.Count; j++)
            {
                total += w[i] * covariance[i, j] * w[j];
            }
        }

        return total;
    }

    /// <summary>Risk contributions wᵢ(Σw)ᵢ / wᵀΣw; they sum to 1.</summary>
    public static double[] RiskContributions(double[,] covariance, IReadOnlyList<double> weights)
    {
        var n = weights.Count;
        var sigmaW = new double[n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                sigmaW[i] += covariance[i, j] * weights[j];
            }
        }

        var total = Enumerable.Range(0, n).Sum(i => weights[i] * sigmaW[i]);
        return Enumerable.Range(0, n).Select(i => weights[i] * sigmaW[i] / total).ToArray();
    }

    /// <summary>
    /// Equal risk contribution by Spinu's convex formulation (2013): minimise ½xᵀΣx − Σ ln xᵢ over x &gt; 0; the
    /// minimiser has xᵢ(Σx)ᵢ = 1 for all i, so x/Σx has equal risk contributions. Newton's method with a
    /// backtracking line search that keeps x positive; quadratic convergence to machine precision.
    /// </summary>
    public static double[] RiskParity(double[,] covariance)
    {
        var n = covariance.GetLength(0);
        var x = Enumerable.Range(0, n).Select(i => 1 / Math.Sqrt(Positive(covariance[i, i], i))).ToArray();
        double Objective(double[] v)
        {
            double quadratic = 0, logs = 0;
            for (var i = 0; i < n; i++)
            {
                double row = 0;
                for (var j = 0; j < n; j++)
                {
                    row += covariance[i, j] * v[j];
                }

                quadratic += v[i] * row;
                logs += Math.Log(v[i]);
            }

            return (0.5 * quadratic) - logs;
        }

        for (var iteration = 0; iteration < 100; iteration++)
        {
            // Gradient Σx − 1/x and Hessian Σ + diag(1/x²).
            var gradient = new double[n];
            var hessian = new double[n, n];
            for (var i = 0; i < n; i++)
            {
                double row = 0;
                for (var j = 0; j < n; j++)
                {
                    row += covariance[i, j] * x[j];
                    hessian[i, j] = covariance[i, j];
                }

                gradient[i] = row - (1 / x[i]);
                hessian[i, i] += 1 / (x[i] * x[i]);
            }

            var step = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseOfArray(hessian)
                .Cholesky()
                .Solve(MathNet.Numerics.LinearAlgebra.Vector<double>.Build.DenseOfArray(gradient))
                .ToArray();
            var decrement = gradient.Zip(step, (g, s) => g * s).Sum();
            if (decrement < 1e-24)
            {
                break;
            }

            var t = 1.0;
            while (Enumerable.Range(0, n).Any(i => x[i] - (t * step[i]) <= 0))
            {
                t /= 2;
            }

            var current = Objective(x);
            double[] candidate;
            while (true)
            {
                candidate = x.Select((v, i) => v - (t * step[i])).ToArray();
                if (Objective(candidate) <= current - (0.25 * t * decrement) || t < 1e-12)
                {
                    break;
                }

                t /= 2;
            }

            x = candidate;
        }

        return x;
    }

    private static double Positive(double variance, int index) =>
        variance > 0 ? variance : throw new InfeasibleModelException(ModelParameter.Covariance, $"Asset {index} has no variance; its weight cannot be set by risk.");
}
