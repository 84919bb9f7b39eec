namespace RebalanceMesh.Planning.Core;

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
}

/// <summary>
/// Target weights from a covariance matrix. Every model returns long-only weights summing to the budget (the share
/// of net value to invest; the rest stays cash).
/// </summary>
public static class TargetModels
{
    public static double[] Compute(TargetModel model, double[,] covariance, double budget)
    {
        var n = covariance.GetLength(0);
        if (n == 0 || covariance.GetLength(1) != n)
        {
            throw new ArgumentException("A square, non-empty covariance is required.", nameof(covariance));
        }

        double[] raw = model switch
        {
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
        var p = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseOfArray(covariance) * 2;
        var a = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.Dense(n + 1, n, (i, j) => i == 0 ? 1.0 : (i - 1 == j ? 1.0 : 0.0));
        var lower = MathNet.Numerics.LinearAlgebra.Vector<double>.Build.Dense(n + 1, i => i == 0 ? 1.0 : 0.0);
        var upper = MathNet.Numerics.LinearAlgebra.Vector<double>.Build.Dense(n + 1, i => i == 0 ? 1.0 : double.PositiveInfinity);
        var solution = QpSolver.Solve(new QuadraticProgram(p, MathNet.Numerics.LinearAlgebra.Vector<double>.Build.Dense(n), a, lower, upper));
        if (!solution.Converged)
        {
            throw new ArgumentException("The minimum-variance problem did not converge.", nameof(covariance));
        }

        // Clean the last bits: tiny negatives to zero, renormalise.
        var w = solution.X.Select(v => Math.Max(v, 0)).ToArray();
        var sum = w.Sum();
        return w.Select(v => v / sum).ToArray();
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
        variance > 0 ? variance : throw new ArgumentException($"Asset {index} has no variance; its weight cannot be set by risk.", nameof(variance));
}
