using MathNet.Numerics.LinearAlgebra;

namespace RebalanceMesh.Planning.Core;

/// <summary>A convex quadratic program: minimise ½xᵀPx + qᵀx subject to l ≤ Ax ≤ u (P positive semi-definite).</summary>
/// <param name="Lower">Lower bounds of Ax; −∞ where there is none. l = u makes a row an equality.</param>
/// <param name="Upper">Upper bounds of Ax; +∞ where there is none.</param>
public sealed record QuadraticProgram(Matrix<double> P, Vector<double> Q, Matrix<double> A, Vector<double> Lower, Vector<double> Upper)
{
    public double Objective(Vector<double> x) => (0.5 * (x * P * x)) + (Q * x);
}

/// <summary>Outcome of a solve.</summary>
public sealed record QpSolution(Vector<double> X, Vector<double> Y, double Objective, int Iterations, bool Converged, bool Polished, double PrimalResidual, double DualResidual);

/// <summary>Solver settings.</summary>
public sealed record QpSettings(double AbsoluteTolerance = 1e-9, double RelativeTolerance = 1e-9, int MaxIterations = 50_000, double Rho = 0.1, double Sigma = 1e-6, double Alpha = 1.6, bool Polish = true);

/// <summary>
/// OSQP's ADMM (Stellato et al., "OSQP: an operator splitting solver for quadratic programs", 2020) on dense
/// matrices: each iteration solves (P + σI + Aᵀ diag(ρ) A) x̃ = σx − q + Aᵀ(ρz − y) with one cached Cholesky
/// factor, projects onto [l, u], and updates the duals; ρ adapts to balance primal and dual residuals (refactoring
/// when it moves by 5×), equality rows get 10³ρ. After convergence the active set read from the duals is polished:
/// the equality-constrained KKT system on it is solved directly, and kept when it is feasible and not worse — which
/// brings the objective to the precision of an interior-point solver. Warm starts take a previous x and y.
/// </summary>
public static class QpSolver
{
    public static QpSolution Solve(QuadraticProgram problem, QpSettings? settings = null, Vector<double>? warmX = null, Vector<double>? warmY = null)
    {
        settings ??= new QpSettings();
        var n = problem.P.RowCount;
        var m = problem.A.RowCount;
        var (p, q, a, l, u) = (problem.P, problem.Q, problem.A, problem.Lower, problem.Upper);
        var x = warmX?.Clone() ?? Vector<double>.Build.Dense(n);
        var y = warmY?.Clone() ?? Vector<double>.Build.Dense(m);
        var z = Project(a * x, l, u);
        var rhoScalar = settings.Rho;
        Vector<double> RhoVector(double r) => Vector<double>.Build.Dense(m, i => l[i] == u[i] ? 1e3 * r : double.IsInfinity(l[i]) && double.IsInfinity(u[i]) ? 1e-6 : r);
        var rho = RhoVector(rhoScalar);
        var factor = Factor(p, a, rho, settings.Sigma);
        double primal = double.PositiveInfinity, dual = double.PositiveInfinity;
        var iteration = 0;
        var converged = false;
        for (; iteration < settings.MaxIterations; iteration++)
        {
            var rhs = (settings.Sigma * x) - q + (a.TransposeThisAndMultiply(rho.PointwiseMultiply(z) - y));
            var xTilde = factor.Solve(rhs);
            var zTilde = a * xTilde;
            var xNext = (settings.Alpha * xTilde) + ((1 - settings.Alpha) * x);
            var zHat = (settings.Alpha * zTilde) + ((1 - settings.Alpha) * z);
            var zNext = Project(zHat + y.PointwiseDivide(rho), l, u);
            y += rho.PointwiseMultiply(zHat - zNext);
            x = xNext;
            z = zNext;

            if (iteration % 10 != 0)
            {
                continue;
            }

            var ax = a * x;
            var px = p * x;
            var aty = a.TransposeThisAndMultiply(y);
            primal = (ax - z).InfinityNorm();
            dual = (px + q + aty).InfinityNorm();
            var primalScale = Math.Max(ax.InfinityNorm(), z.InfinityNorm());
            var dualScale = Math.Max(Math.Max(px.InfinityNorm(), aty.InfinityNorm()), q.InfinityNorm());
            if (primal <= settings.AbsoluteTolerance + (settings.RelativeTolerance * primalScale)
                && dual <= settings.AbsoluteTolerance + (settings.RelativeTolerance * dualScale))
            {
                converged = true;
                break;
            }

            if (iteration % 50 == 0 && iteration > 0)
            {
                var ratio = Math.Sqrt((primal / Math.Max(primalScale, 1e-30)) / Math.Max(dual / Math.Max(dualScale, 1e-30), 1e-30));
                var proposed = Math.Clamp(rhoScalar * ratio, 1e-6, 1e6);
                if (proposed > 5 * rhoScalar || proposed < rhoScalar / 5)
                {
                    rhoScalar = proposed;
                    rho = RhoVector(rhoScalar);
                    factor = Factor(p, a, rho, settings.Sigma);
                }
            }
        }

        var polished = false;
        if (settings.Polish && TryPolish(problem, x, y, out var polishedX, out var polishedY))
        {
            x = polishedX;
            y = polishedY;
            polished = true;
        }

        return new QpSolution(x, y, problem.Objective(x), iteration, converged || polished, polished, primal, dual);
    }

    private static MathNet.Numerics.LinearAlgebra.Factorization.Cholesky<double> Factor(Matrix<double> p, Matrix<double> a, Vector<double> rho, double sigma)
    {
        var k = p + (Matrix<double>.Build.DenseIdentity(p.RowCount) * sigma) + a.TransposeThisAndMultiply(Matrix<double>.Build.DenseOfDiagonalVector(rho) * a);
        return k.Cholesky();
    }

    private static Vector<double> Project(Vector<double> v, Vector<double> l, Vector<double> u) =>
        Vector<double>.Build.Dense(v.Count, i => Math.Min(Math.Max(v[i], l[i]), u[i]));

    /// <summary>
    /// Solves the KKT system on the active set guessed from the duals (y &lt; 0 lower bound active, y &gt; 0 upper, and
    /// every equality), with a little regularisation and iterative refinement. Accepted when feasible within 1e-10,
    /// its duals have the right signs, and its objective is not worse than the ADMM point's.
    /// </summary>
    private static bool TryPolish(QuadraticProgram problem, Vector<double> x, Vector<double> y, out Vector<double> polishedX, out Vector<double> polishedY)
    {
        polishedX = x;
        polishedY = y;
        var (p, q, a, l, u) = (problem.P, problem.Q, problem.A, problem.Lower, problem.Upper);
        var n = p.RowCount;
        var scale = Math.Max(1e-12, y.AbsoluteMaximum() * 1e-7);
        var active = Enumerable.Range(0, a.RowCount)
            .Where(i => l[i] == u[i] || (y[i] < -scale && !double.IsInfinity(l[i])) || (y[i] > scale && !double.IsInfinity(u[i])))
            .ToArray();
        var k = active.Length;
        var kkt = Matrix<double>.Build.Dense(n + k, n + k);
        kkt.SetSubMatrix(0, 0, p + (Matrix<double>.Build.DenseIdentity(n) * 1e-12));
        var rhs = Vector<double>.Build.Dense(n + k);
        rhs.SetSubVector(0, n, -q);
        for (var r = 0; r < k; r++)
        {
            var row = active[r];
            for (var j = 0; j < n; j++)
            {
                kkt[n + r, j] = a[row, j];
                kkt[j, n + r] = a[row, j];
            }

            kkt[n + r, n + r] = -1e-12;
            rhs[n + r] = l[row] == u[row] ? l[row] : y[row] < 0 ? l[row] : u[row];
        }

        Vector<double> solution;
        try
        {
            var lu = kkt.LU();
            solution = lu.Solve(rhs);
            for (var refine = 0; refine < 3; refine++)
            {
                solution += lu.Solve(rhs - (kkt * solution));
            }
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
        {
            return false;
        }

        var candidate = solution.SubVector(0, n);
        if (!candidate.All(double.IsFinite))
        {
            return false;
        }

        var ax = a * candidate;
        var feasible = Enumerable.Range(0, a.RowCount).All(i => ax[i] >= l[i] - 1e-10 && ax[i] <= u[i] + 1e-10);
        var duals = Vector<double>.Build.Dense(a.RowCount);
        for (var r = 0; r < k; r++)
        {
            duals[active[r]] = solution[n + r];
        }

        var signsOk = active.All(i => l[i] == u[i] || (rhs[Array.IndexOf(active, i) + n] == l[i] ? duals[i] <= 1e-9 : duals[i] >= -1e-9));
        if (!feasible || !signsOk || problem.Objective(candidate) > problem.Objective(x) + (1e-9 * Math.Max(1, Math.Abs(problem.Objective(x)))))
        {
            return false;
        }

        polishedX = candidate;
        polishedY = duals;
        return true;
    }
}
