using MathNet.Numerics.LinearAlgebra;

namespace RebalanceMesh.Planning.Core;

/// <summary>
/// A convex quadratic program: minimise ½xᵀPx + qᵀx + Σᵣ gᵣ((Ax)ᵣ) subject to l ≤ Ax ≤ u (P positive semi-definite),
/// where the optional separable row terms g (<see cref="RowTerms"/>) price trades: linear and 3/2-power costs on a row,
/// and ℓ₁ budgets over groups of rows.
/// </summary>
/// <param name="Lower">Lower bounds of Ax; −∞ where there is none. l = u makes a row an equality.</param>
/// <param name="Upper">Upper bounds of Ax; +∞ where there is none.</param>
public sealed record QuadraticProgram(Matrix<double> P, Vector<double> Q, Matrix<double> A, Vector<double> Lower, Vector<double> Upper, RowTerms? Terms = null)
{
    public double Objective(Vector<double> x) => (0.5 * (x * P * x)) + (Q * x) + (Terms?.Value(A * x) ?? 0);
}

/// <summary>
/// Separable convex terms on the rows z = Ax: row r costs Linear[r]·|zᵣ − Offset[r]| + Power[r]·|zᵣ − Offset[r]|^1.5
/// (fees and half-spread, and market impact b·σ·|x|^1.5/√V as in cvxportfolio), and the rows of each group g satisfy
/// Σ |zᵣ − Offset[r]| ≤ GroupBudgets[g] (a turnover cap on trade rows, a gross-leverage cap on holding rows).
/// Group[r] is −1 for rows in no group.
/// </summary>
public sealed record RowTerms(double[] Linear, double[] Power, double[] Offset, int[] Group, double[] GroupBudgets)
{
    /// <summary>Terms for <paramref name="rows"/> rows with no cost and no group; fill in what applies.</summary>
    public static RowTerms None(int rows, int groups = 0) =>
        new(new double[rows], new double[rows], new double[rows], Enumerable.Repeat(-1, rows).ToArray(), new double[groups]);

    /// <summary>Σ linear and power costs at z (the group budgets are constraints, not costs).</summary>
    public double Value(Vector<double> z)
    {
        double total = 0;
        for (var r = 0; r < Linear.Length; r++)
        {
            var d = Math.Abs(z[r] - Offset[r]);
            total += (Linear[r] * d) + (Power[r] * d * Math.Sqrt(d));
        }

        return total;
    }

    private int[][]? _groupRows;

    /// <summary>True for rows the prox must treat specially (a cost or a group).</summary>
    internal bool IsSpecial(int row) => Linear[row] != 0 || Power[row] != 0 || Group[row] >= 0;

    /// <summary>
    /// The z-step of ADMM: for each row, argmin gᵣ(z) + ρᵣ/2 (z − vᵣ)² over [lᵣ, uᵣ] — in closed form, clamped to the
    /// box (a convex scalar problem); for each group with a budget, the budget's multiplier λ ≥ 0 is found by
    /// bisection (Σ|zᵣ(λ) − oᵣ| falls as λ grows) and added to the rows' linear costs.
    /// </summary>
    internal void Prox(Vector<double> v, Vector<double> rho, Vector<double> l, Vector<double> u, Vector<double> result)
    {
        for (var r = 0; r < v.Count; r++)
        {
            if (Group[r] < 0)
            {
                result[r] = RowProx(r, v[r], rho[r], l[r], u[r], 0);
            }
        }

        _groupRows ??= Enumerable.Range(0, GroupBudgets.Length).Select(g => Enumerable.Range(0, Group.Length).Where(r => Group[r] == g).ToArray()).ToArray();
        for (var g = 0; g < GroupBudgets.Length; g++)
        {
            var rows = _groupRows[g];
            double Spend(double lambda)
            {
                double total = 0;
                foreach (var r in rows)
                {
                    result[r] = RowProx(r, v[r], rho[r], l[r], u[r], lambda);
                    total += Math.Abs(result[r] - Offset[r]);
                }

                return total;
            }

            if (Spend(0) <= GroupBudgets[g])
            {
                continue;
            }

            double low = 0, high = 1;
            while (Spend(high) > GroupBudgets[g] && high < 1e12)
            {
                low = high;
                high *= 4;
            }

            for (var i = 0; i < 100 && high - low > 1e-14 * Math.Max(1, high); i++)
            {
                var mid = 0.5 * (low + high);
                if (Spend(mid) > GroupBudgets[g])
                {
                    low = mid;
                }
                else
                {
                    high = mid;
                }
            }

            Spend(high);
        }
    }

    private double RowProx(int r, double v, double rho, double l, double u, double extraLinear)
    {
        var k = Linear[r] + extraLinear;
        var c = Power[r];
        var d = v - Offset[r];
        double z;
        if (Math.Abs(d) * rho <= k)
        {
            z = Offset[r];
        }
        else
        {
            // ρe + 1.5c√e = ρ|d| − k for e = |z − o| > 0: a quadratic in √e.
            var rhs = (rho * Math.Abs(d)) - k;
            var root = c == 0 ? Math.Sqrt(rhs / rho) : (-1.5 * c + Math.Sqrt((2.25 * c * c) + (4 * rho * rhs))) / (2 * rho);
            z = Offset[r] + (Math.Sign(d) * root * root);
        }

        return Math.Min(Math.Max(z, l), u);
    }
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
        Vector<double> RhoVector(double r) => Vector<double>.Build.Dense(m, i => l[i] == u[i] ? 1e3 * r : double.IsInfinity(l[i]) && double.IsInfinity(u[i]) && problem.Terms?.IsSpecial(i) != true ? 1e-6 : r);
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
            var zNext = Step(problem, zHat + y.PointwiseDivide(rho), rho, l, u);
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
        if (settings.Polish && problem.Terms is null && TryPolish(problem, x, y, out var polishedX, out var polishedY))
        {
            x = polishedX;
            y = polishedY;
            polished = true;
        }

        return new QpSolution(x, y, problem.Objective(x), iteration, converged || polished, polished, primal, dual);
    }

    private static MathNet.Numerics.LinearAlgebra.Factorization.Cholesky<double> Factor(Matrix<double> p, Matrix<double> a, Vector<double> rho, double sigma)
    {
        // K = P + σI + Σᵣ ρᵣ·aᵣaᵣᵀ, accumulated row by row over the non-zeros of A: bounds rows (one non-zero) cost O(1),
        // dense rows O(n²), never the O(m·n²) of a dense AᵀDA product.
        var n = p.RowCount;
        var k = p.Clone();
        for (var i = 0; i < n; i++)
        {
            k[i, i] += sigma;
        }

        var nonZeros = new List<int>(n);
        for (var r = 0; r < a.RowCount; r++)
        {
            nonZeros.Clear();
            for (var j = 0; j < n; j++)
            {
                if (a[r, j] != 0)
                {
                    nonZeros.Add(j);
                }
            }

            foreach (var i in nonZeros)
            {
                var scaled = rho[r] * a[r, i];
                foreach (var j in nonZeros)
                {
                    k[i, j] += scaled * a[r, j];
                }
            }
        }

        return k.Cholesky();
    }

    private static Vector<double> Project(Vector<double> v, Vector<double> l, Vector<double> u) =>
        Vector<double>.Build.Dense(v.Count, i => Math.Min(Math.Max(v[i], l[i]), u[i]));

    /// <summary>The z-update: projection onto [l, u], or the prox of the row terms where there are some.</summary>
    private static Vector<double> Step(QuadraticProgram problem, Vector<double> v, Vector<double> rho, Vector<double> l, Vector<double> u)
    {
        var z = Project(v, l, u);
        problem.Terms?.Prox(v, rho, l, u, z);
        return z;
    }

    /// <summary>
    /// Solves the KKT system on the active set guessed from the duals (y &lt; 0 lower bound active, y &gt; 0 upper, and
    /// every equality). Active rows with a single non-zero fix their variable, which is eliminated; the rest is a small
    /// equality-constrained system over the free variables, solved with a little regularisation and iterative
    /// refinement. Accepted when feasible within 1e-10, its duals have the right signs, and its objective is not worse
    /// than the ADMM point's.
    /// </summary>
    private static bool TryPolish(QuadraticProgram problem, Vector<double> x, Vector<double> y, out Vector<double> polishedX, out Vector<double> polishedY)
    {
        polishedX = x;
        polishedY = y;
        var (p, q, a, l, u) = (problem.P, problem.Q, problem.A, problem.Lower, problem.Upper);
        var n = p.RowCount;
        var m = a.RowCount;
        var scale = Math.Max(1e-12, y.AbsoluteMaximum() * 1e-7);
        var target = new double[m];
        var active = new List<int>();
        for (var i = 0; i < m; i++)
        {
            if (l[i] == u[i] || (y[i] < -scale && !double.IsInfinity(l[i])) || (y[i] > scale && !double.IsInfinity(u[i])))
            {
                active.Add(i);
                target[i] = l[i] == u[i] ? l[i] : y[i] < 0 ? l[i] : u[i];
            }
        }

        // Rows with one non-zero fix a variable; the others stay as constraints.
        var fixedBy = new Dictionary<int, int>();
        var general = new List<int>();
        foreach (var row in active)
        {
            var single = -1;
            var count = 0;
            for (var j = 0; j < n && count < 2; j++)
            {
                if (a[row, j] != 0)
                {
                    single = j;
                    count++;
                }
            }

            if (count == 1 && !fixedBy.ContainsKey(single))
            {
                fixedBy[single] = row;
            }
            else
            {
                general.Add(row);
            }
        }

        var candidate = Vector<double>.Build.Dense(n);
        foreach (var (variable, row) in fixedBy)
        {
            candidate[variable] = target[row] / a[row, variable];
        }

        var free = Enumerable.Range(0, n).Where(j => !fixedBy.ContainsKey(j)).ToArray();
        var f = free.Length;
        var g = general.Count;
        var kkt = Matrix<double>.Build.Dense(f + g, f + g);
        var rhs = Vector<double>.Build.Dense(f + g);
        for (var i = 0; i < f; i++)
        {
            double known = 0;
            foreach (var (variable, _) in fixedBy)
            {
                known += p[free[i], variable] * candidate[variable];
            }

            rhs[i] = -q[free[i]] - known;
            for (var j = 0; j < f; j++)
            {
                kkt[i, j] = p[free[i], free[j]];
            }

            kkt[i, i] += 1e-12;
        }

        for (var r = 0; r < g; r++)
        {
            var row = general[r];
            double known = 0;
            foreach (var (variable, _) in fixedBy)
            {
                known += a[row, variable] * candidate[variable];
            }

            rhs[f + r] = target[row] - known;
            for (var j = 0; j < f; j++)
            {
                kkt[f + r, j] = a[row, free[j]];
                kkt[j, f + r] = a[row, free[j]];
            }

            kkt[f + r, f + r] = -1e-12;
        }

        if (f + g > 0)
        {
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

            for (var i = 0; i < f; i++)
            {
                candidate[free[i]] = solution[i];
            }

            for (var r = 0; r < g; r++)
            {
                polishedY = polishedY == y ? Vector<double>.Build.Dense(m) : polishedY;
                polishedY[general[r]] = solution[f + r];
            }
        }

        if (!candidate.All(double.IsFinite))
        {
            polishedY = y;
            return false;
        }

        var duals = polishedY == y ? Vector<double>.Build.Dense(m) : polishedY;
        // Duals of the rows that fixed a variable, from stationarity: (Px + q + Aᵀy)ⱼ = 0.
        var gradient = (p * candidate) + q + a.TransposeThisAndMultiply(duals);
        foreach (var (variable, row) in fixedBy)
        {
            duals[row] = -gradient[variable] / a[row, variable];
        }

        var ax = a * candidate;
        var feasible = Enumerable.Range(0, m).All(i => ax[i] >= l[i] - 1e-10 && ax[i] <= u[i] + 1e-10);
        var signsOk = active.All(i => l[i] == u[i] || (target[i] == l[i] ? duals[i] <= 1e-9 : duals[i] >= -1e-9));
        if (!feasible || !signsOk || problem.Objective(candidate) > problem.Objective(x) + (1e-9 * Math.Max(1, Math.Abs(problem.Objective(x)))))
        {
            polishedY = y;
            return false;
        }

        polishedX = candidate;
        polishedY = duals;
        return true;
    }
}
