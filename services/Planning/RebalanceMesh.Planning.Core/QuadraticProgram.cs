using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;
using RebalanceMesh.Numerics;

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
    public double Value(Vector<double> z) => Value(z.AsArray() ?? z.ToArray());

    /// <summary>Σ linear and power costs at z.</summary>
    public double Value(ReadOnlySpan<double> z)
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
    private double[]? _lastMultiplier;

    /// <summary>True for rows the prox must treat specially (a cost or a group).</summary>
    internal bool IsSpecial(int row) => Linear[row] != 0 || Power[row] != 0 || Group[row] >= 0;

    /// <summary>
    /// The z-step of ADMM: for each row, argmin gᵣ(z) + ρᵣ/2 (z − vᵣ)² over [lᵣ, uᵣ] — in closed form, clamped to the
    /// box (a convex scalar problem); for each group with a budget, the budget's multiplier λ ≥ 0 is found by
    /// bisection (Σ|zᵣ(λ) − oᵣ| falls as λ grows) and added to the rows' linear costs.
    /// </summary>
    internal void Prox(double[] v, double[] rho, double[] l, double[] u, double[] result)
    {
        for (var r = 0; r < v.Length; r++)
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

            var budget = GroupBudgets[g];
            if (Spend(0) <= budget)
            {
                continue;
            }

            // Bracket the multiplier around the previous iteration's (it moves little between ADMM steps), then
            // Illinois regula falsi on Spend(λ) − budget, which is continuous and non-increasing in λ.
            _lastMultiplier ??= new double[GroupBudgets.Length];
            double low = 0, high = Math.Max(_lastMultiplier[g], 1e-12), fLow = Spend(0) - budget;
            var fHigh = Spend(high) - budget;
            while (fHigh > 0 && high < 1e12)
            {
                (low, fLow) = (high, fHigh);
                high *= 4;
                fHigh = Spend(high) - budget;
            }

            var side = 0;
            for (var i = 0; i < 200 && fHigh < -1e-15 * Math.Max(budget, 1e-300) && high - low > 1e-15 * high; i++)
            {
                var next = high - (fHigh * (high - low) / (fHigh - fLow));
                if (!(next > low && next < high))
                {
                    next = 0.5 * (low + high);
                }

                var fNext = Spend(next) - budget;
                if (fNext > 0)
                {
                    (low, fLow) = (next, fNext);
                    fHigh = side == -1 ? fHigh / 2 : fHigh;
                    side = -1;
                }
                else
                {
                    (high, fHigh) = (next, fNext);
                    fLow = side == 1 ? fLow / 2 : fLow;
                    side = 1;
                }
            }

            _lastMultiplier[g] = high;
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
        var p = problem.P.ToRowMajorArray();
        var q = problem.Q.ToArray();
        var l = problem.Lower.ToArray();
        var u = problem.Upper.ToArray();
        var a = SparseRows.FromDense(m, n, (r, c) => problem.A[r, c]);
        var x = warmX?.ToArray() ?? new double[n];
        var y = warmY?.ToArray() ?? new double[m];
        var z = new double[m];
        a.Multiply(x, z);
        Clamp(z, l, u);

        var rhoScalar = settings.Rho;
        var rho = new double[m];
        void SetRho(double r)
        {
            for (var i = 0; i < m; i++)
            {
                rho[i] = l[i] == u[i] ? 1e3 * r : double.IsInfinity(l[i]) && double.IsInfinity(u[i]) && problem.Terms?.IsSpecial(i) != true ? 1e-6 : r;
            }
        }

        SetRho(rhoScalar);
        var factor = Factor(p, n, a, rho, settings.Sigma);
        var (alpha, sigma) = (settings.Alpha, settings.Sigma);
        var work = new double[m];
        var rhs = new double[n];
        var xTilde = new double[n];
        var zHat = new double[m];
        var zNext = new double[m];
        var ax = new double[m];
        var px = new double[n];
        var aty = new double[n];
        double primal = double.PositiveInfinity, dual = double.PositiveInfinity;
        var iteration = 0;
        var converged = false;
        var nextPolish = 0;
        for (; iteration < settings.MaxIterations; iteration++)
        {
            // x̃ = K⁻¹(σx − q + Aᵀ(ρz − y)); ẑ = αAx̃ + (1 − α)z; z⁺ = prox(ẑ + y/ρ); y += ρ(ẑ − z⁺).
            for (var i = 0; i < m; i++)
            {
                work[i] = (rho[i] * z[i]) - y[i];
            }

            a.TransposeMultiply(work, rhs);
            for (var j = 0; j < n; j++)
            {
                rhs[j] += (sigma * x[j]) - q[j];
            }

            factor.Solve(rhs, xTilde);
            a.Multiply(xTilde, zHat);
            for (var i = 0; i < m; i++)
            {
                zHat[i] = (alpha * zHat[i]) + ((1 - alpha) * z[i]);
                work[i] = zHat[i] + (y[i] / rho[i]);
            }

            Step(problem.Terms, work, rho, l, u, zNext);
            for (var i = 0; i < m; i++)
            {
                y[i] += rho[i] * (zHat[i] - zNext[i]);
            }

            for (var j = 0; j < n; j++)
            {
                x[j] = (alpha * xTilde[j]) + ((1 - alpha) * x[j]);
            }

            (z, zNext) = (zNext, z);

            if (iteration % 10 != 0)
            {
                continue;
            }

            a.Multiply(x, ax);
            a.TransposeMultiply(y, aty);
            for (var j = 0; j < n; j++)
            {
                px[j] = TensorPrimitives.Dot(p.AsSpan(j * n, n), x);
            }

            primal = 0;
            for (var i = 0; i < m; i++)
            {
                primal = Math.Max(primal, Math.Abs(ax[i] - z[i]));
            }

            dual = 0;
            for (var j = 0; j < n; j++)
            {
                dual = Math.Max(dual, Math.Abs(px[j] + q[j] + aty[j]));
            }

            var primalScale = Math.Max(InfinityNorm(ax), InfinityNorm(z));
            var dualScale = Math.Max(Math.Max(InfinityNorm(px), InfinityNorm(aty)), InfinityNorm(q));
            if (primal <= settings.AbsoluteTolerance + (settings.RelativeTolerance * primalScale)
                && dual <= settings.AbsoluteTolerance + (settings.RelativeTolerance * dualScale))
            {
                converged = true;
                break;
            }

            // With separable terms, try to finish by Newton on the face read from a moderately accurate point; a
            // failed attempt (the face was misread) is retried 50 iterations later from a better point.
            if (settings.Polish && problem.Terms is not null && iteration >= nextPolish
                && primal <= 1e-3 * Math.Max(1e-6, primalScale) && dual <= 1e-3 * Math.Max(1e-6, dualScale))
            {
                if (SeparablePolish.TryPolish(p, q, a, l, u, problem.Terms, x, z, y, out var faceX, out var faceY))
                {
                    return new QpSolution(Vector<double>.Build.DenseOfArray(faceX), Vector<double>.Build.DenseOfArray(faceY), Objective(p, q, a, problem.Terms, faceX), iteration, true, true, primal, dual);
                }

                nextPolish = iteration + 20;
            }

            if (iteration % 50 == 0 && iteration > 0)
            {
                var ratio = Math.Sqrt((primal / Math.Max(primalScale, 1e-30)) / Math.Max(dual / Math.Max(dualScale, 1e-30), 1e-30));
                var proposed = Math.Clamp(rhoScalar * ratio, 1e-6, 1e6);
                if (proposed > 5 * rhoScalar || proposed < rhoScalar / 5)
                {
                    rhoScalar = proposed;
                    SetRho(rhoScalar);
                    factor = Factor(p, n, a, rho, sigma);
                }
            }
        }

        var solutionX = Vector<double>.Build.DenseOfArray(x);
        var solutionY = Vector<double>.Build.DenseOfArray(y);
        var polished = false;
        if (settings.Polish && problem.Terms is null && TryPolish(problem, solutionX, solutionY, out var polishedX, out var polishedY))
        {
            solutionX = polishedX;
            solutionY = polishedY;
            polished = true;
        }

        return new QpSolution(solutionX, solutionY, problem.Objective(solutionX), iteration, converged || polished, polished, primal, dual);
    }

    /// <summary>K = P + σI + Σᵣ ρᵣ·aᵣaᵣᵀ over the non-zeros of A (bounds rows O(1), dense rows O(n²)), factored.</summary>
    private static DenseCholesky Factor(double[] p, int n, SparseRows a, double[] rho, double sigma)
    {
        var k = (double[])p.Clone();
        for (var i = 0; i < n; i++)
        {
            k[(i * n) + i] += sigma;
        }

        a.AddWeightedGram(rho, k);
        return DenseCholesky.Factor(k, n);
    }

    /// <summary>½xᵀPx + qᵀx + Σ row terms at Ax, on the solver's own arrays (P row-major).</summary>
    internal static double Objective(double[] p, double[] q, SparseRows a, RowTerms? terms, double[] x)
    {
        var n = q.Length;
        double value = 0;
        for (var i = 0; i < n; i++)
        {
            value += x[i] * ((0.5 * TensorPrimitives.Dot(p.AsSpan(i * n, n), x)) + q[i]);
        }

        if (terms is not null)
        {
            var z = new double[a.Rows];
            a.Multiply(x, z);
            value += terms.Value(z);
        }

        return value;
    }

    /// <summary>max |vᵢ|; zero for an empty vector.</summary>
    internal static double InfinityNorm(ReadOnlySpan<double> v) => v.IsEmpty ? 0 : Math.Abs(TensorPrimitives.MaxMagnitude(v));

    private static void Clamp(Span<double> v, ReadOnlySpan<double> l, ReadOnlySpan<double> u)
    {
        for (var i = 0; i < v.Length; i++)
        {
            v[i] = Math.Min(Math.Max(v[i], l[i]), u[i]);
        }
    }

    /// <summary>The z-update: projection onto [l, u], or the prox of the row terms where there are some.</summary>
    private static void Step(RowTerms? terms, double[] v, double[] rho, double[] l, double[] u, double[] result)
    {
        if (terms is null)
        {
            v.CopyTo(result, 0);
            Clamp(result, l, u);
            return;
        }

        terms.Prox(v, rho, l, u, result);
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
