using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;
using RebalanceMesh.Numerics;

namespace RebalanceMesh.Planning.Core;

/// <summary>
/// Polishing for programs with separable row terms (<see cref="RowTerms"/>), where every variable has exactly one
/// special row and that row is a unit row (the optimiser's trade rows). From a moderately accurate ADMM point it reads
/// the face the solution lies on — each special row at a bound, at its kink (no trade) or free with a sign; the active
/// general rows and ℓ₁ budgets from the duals — and solves the smooth problem on that face by Newton's method
/// (equality-constrained, kept on the face by a step limit). Where an optimality condition of the original problem
/// fails (a bound crossed, a multiplier of the wrong sign, a kink whose subgradient bound is exceeded) the face is
/// corrected and solved again, a few rounds at most. The result is accepted only when every condition holds, which for
/// a convex problem is optimality — so a wrong guess costs time, never accuracy.
/// </summary>
internal static class SeparablePolish
{
    private const int MaxRounds = 25;
    private const int NewtonConverged = -1;
    private const int NewtonFailed = -2;

    private enum RowState
    {
        Free,
        Zero,
        AtLower,
        AtUpper,
    }

    /// <param name="p">P, row-major.</param>
    public static bool TryPolish(double[] p, double[] q, SparseRows a, double[] l, double[] u, RowTerms terms,
        double[] admmX, double[] admmZ, double[] admmY, out double[] polishedX, out double[] polishedY)
    {
        polishedX = admmX;
        polishedY = admmY;
        var n = q.Length;
        var m = a.Rows;

        // Structure: one special unit row per variable.
        var specialOf = Enumerable.Repeat(-1, n).ToArray();
        var variableOf = Enumerable.Repeat(-1, m).ToArray();
        var coefficient = new double[m];
        for (var r = 0; r < m; r++)
        {
            if (!terms.IsSpecial(r))
            {
                continue;
            }

            var (columns, values) = a.Row(r);
            if (columns.Length != 1)
            {
                return false;
            }

            variableOf[r] = columns.Span[0];
            coefficient[r] = values.Span[0];
            if (specialOf[variableOf[r]] >= 0)
            {
                return false;
            }

            specialOf[variableOf[r]] = r;
        }

        if (specialOf.Any(r => r < 0))
        {
            return false;
        }

        // The face: special rows at a bound, at the kink or free; active general rows; active budgets.
        var largestMove = Enumerable.Range(0, m).Where(terms.IsSpecial).Select(r => Math.Abs(admmZ[r] - terms.Offset[r])).DefaultIfEmpty(0).Max();
        var zeroTolerance = 1e-6 * Math.Max(largestMove, 1e-9);
        var state = new RowState[m];
        var sign = new double[m];
        for (var r = 0; r < m; r++)
        {
            if (!terms.IsSpecial(r))
            {
                continue;
            }

            var boundTolerance = 1e-7 * Math.Max(1, Math.Abs(admmZ[r]));
            var e = admmZ[r] - terms.Offset[r];
            state[r] = !double.IsInfinity(l[r]) && admmZ[r] <= l[r] + boundTolerance ? RowState.AtLower
                : !double.IsInfinity(u[r]) && admmZ[r] >= u[r] - boundTolerance ? RowState.AtUpper
                : Math.Abs(e) <= zeroTolerance ? RowState.Zero
                : RowState.Free;
            sign[r] = Math.Sign(e);
        }

        var dualScale = Math.Max(1e-12, admmY.Select(Math.Abs).DefaultIfEmpty(0).Max() * 1e-7);
        var activeGeneral = new List<(int Row, double Target, bool Lower)>();
        for (var r = 0; r < m; r++)
        {
            if (terms.IsSpecial(r))
            {
                continue;
            }

            if (l[r] == u[r])
            {
                activeGeneral.Add((r, l[r], true));
            }
            else if (admmY[r] < -dualScale && !double.IsInfinity(l[r]))
            {
                activeGeneral.Add((r, l[r], true));
            }
            else if (admmY[r] > dualScale && !double.IsInfinity(u[r]))
            {
                activeGeneral.Add((r, u[r], false));
            }
        }

        var groups = terms.GroupBudgets.Length;
        var activeGroups = new List<int>();
        for (var g = 0; g < groups; g++)
        {
            var spent = Enumerable.Range(0, m).Where(r => terms.Group[r] == g).Sum(r => Math.Abs(admmZ[r] - terms.Offset[r]));
            if (spent >= terms.GroupBudgets[g] * (1 - 1e-6) - 1e-12)
            {
                activeGroups.Add(g);
            }
        }

        // Solve on the face, check every optimality condition, and correct the face where one fails (a primal-dual
        // active-set step): a few rounds settle what the ADMM point left ambiguous.
        for (var round = 0; round < MaxRounds; round++)
        {
            var x = (double[])admmX.Clone();
            var free = new List<int>();
            for (var j = 0; j < n; j++)
            {
                var r = specialOf[j];
                switch (state[r])
                {
                    case RowState.AtLower:
                        x[j] = l[r] / coefficient[r];
                        break;
                    case RowState.AtUpper:
                        x[j] = u[r] / coefficient[r];
                        break;
                    case RowState.Zero:
                        x[j] = terms.Offset[r] / coefficient[r];
                        break;
                    default:
                        // Start a row freed in this round just off its kink, on its side.
                        var e0 = (coefficient[r] * x[j]) - terms.Offset[r];
                        if (sign[r] * e0 <= 0)
                        {
                            x[j] = (terms.Offset[r] + (sign[r] * 1e-9)) / coefficient[r];
                        }

                        free.Add(j);
                        break;
                }
            }

            var multipliers = new double[activeGeneral.Count + activeGroups.Count];
            if (free.Count > 0)
            {
                var outcome = Newton(p, q, a, terms, x, free, specialOf, coefficient, sign, activeGeneral, activeGroups, multipliers);
                if (outcome == NewtonFailed)
                {
                    return false;
                }

                if (outcome >= 0)
                {
                    // A free row would cross its kink: it stops there this round (and is freed again on the other
                    // side if its subgradient says so).
                    state[outcome] = RowState.Zero;
                    continue;
                }
            }

            if (free.Count == 0 && multipliers.Length > 0)
            {
                return false;
            }

            var y = new double[m];
            for (var i = 0; i < activeGeneral.Count; i++)
            {
                y[activeGeneral[i].Row] = multipliers[i];
            }

            var groupMultiplier = new double[groups];
            for (var i = 0; i < activeGroups.Count; i++)
            {
                groupMultiplier[activeGroups[i]] = multipliers[activeGeneral.Count + i];
            }

            // Gradient of the smooth part plus the general rows' duals: Px + q + Aᵀy (special rows' y still zero).
            var px = new double[n];
            for (var j = 0; j < n; j++)
            {
                px[j] = TensorPrimitives.Dot(p.AsSpan(j * n, n), x);
            }

            var gradient = new double[n];
            a.TransposeMultiply(y, gradient);
            for (var j = 0; j < n; j++)
            {
                gradient[j] += px[j] + q[j];
            }

            var scale = Math.Max(1e-12, Math.Max(QpSolver.InfinityNorm(q), Math.Max(QpSolver.InfinityNorm(px), QpSolver.InfinityNorm(terms.Linear))));
            var tolerance = 1e-8 * scale;
            var z = new double[m];
            a.Multiply(x, z);
            var changed = false;

            // Special rows: bounds, sides of the kink, and the subgradient conditions.
            for (var j = 0; j < n; j++)
            {
                var r = specialOf[j];
                var slack = 1e-9 * Math.Max(1, Math.Abs(z[r]));
                var lambda = terms.Group[r] >= 0 ? groupMultiplier[terms.Group[r]] : 0;
                var k = terms.Linear[r] + lambda;
                var e = z[r] - terms.Offset[r];
                var smooth = e == 0 ? 0 : Math.Sign(e) * (k + (1.5 * terms.Power[r] * Math.Sqrt(Math.Abs(e))));
                y[r] = -gradient[j] / coefficient[r];
                RowState? next = null;
                if (z[r] < l[r] - slack)
                {
                    next = RowState.AtLower;
                }
                else if (z[r] > u[r] + slack)
                {
                    next = RowState.AtUpper;
                }
                else
                {
                    switch (state[r])
                    {
                        case RowState.Free when Math.Abs(e) <= 1e-7 * zeroTolerance:
                            next = RowState.Zero; // Newton ran into the kink
                            break;
                        case RowState.Free when Math.Abs(y[r] - smooth) > tolerance:
                            return false; // Newton did not converge; nothing to correct
                        case RowState.Zero when Math.Abs(y[r]) > k + tolerance:
                            next = RowState.Free;
                            sign[r] = Math.Sign(y[r]);
                            break;
                        case RowState.AtLower when e == 0 ? y[r] > k + tolerance : y[r] - smooth > tolerance:
                        case RowState.AtUpper when e == 0 ? y[r] < -k - tolerance : y[r] - smooth < -tolerance:
                            next = RowState.Free;
                            sign[r] = e != 0 ? Math.Sign(e) : Math.Sign(y[r]);
                            break;
                    }
                }

                if (next is { } nextState && nextState != state[r])
                {
                    state[r] = nextState;
                    changed = true;
                }
            }

            // General rows: violated ones become active, active inequalities with the wrong multiplier sign leave.
            for (var r = 0; r < m; r++)
            {
                if (terms.IsSpecial(r))
                {
                    continue;
                }

                var slack = 1e-9 * Math.Max(1, Math.Abs(z[r]));
                var index = activeGeneral.FindIndex(g => g.Row == r);
                if (index < 0 && (z[r] < l[r] - slack || z[r] > u[r] + slack))
                {
                    var lower = z[r] < l[r];
                    activeGeneral.Add((r, lower ? l[r] : u[r], lower));
                    changed = true;
                }
                else if (index >= 0 && l[r] != u[r] && (activeGeneral[index].Lower ? y[r] > tolerance : y[r] < -tolerance))
                {
                    activeGeneral.RemoveAt(index);
                    changed = true;
                }
            }

            // Budgets: an overspent one becomes active, an active one with a negative multiplier leaves.
            for (var g = 0; g < groups; g++)
            {
                var spent = Enumerable.Range(0, m).Where(r => terms.Group[r] == g).Sum(r => Math.Abs(z[r] - terms.Offset[r]));
                if (!activeGroups.Contains(g) && spent > (terms.GroupBudgets[g] * (1 + 1e-9)) + 1e-15)
                {
                    activeGroups.Add(g);
                    changed = true;
                }
                else if (activeGroups.Contains(g) && groupMultiplier[g] < -tolerance)
                {
                    activeGroups.Remove(g);
                    changed = true;
                }
            }

            if (changed)
            {
                continue;
            }

            // Every condition holds: for a convex problem that is optimality. (The ADMM point may have a lower objective
            // than this one: it is not quite feasible yet.)
            polishedX = x;
            polishedY = y;
            return true;
        }

        return false;
    }

    /// <summary>
    /// Newton's method on the free variables with the face's equalities, by the Schur complement of the Hessian's
    /// Cholesky factor. A step that would take a free row across its kink stops at the kink and returns that row;
    /// otherwise the result is <see cref="NewtonConverged"/> or <see cref="NewtonFailed"/>.
    /// </summary>
    private static int Newton(double[] p, double[] q, SparseRows a, RowTerms terms, double[] x, List<int> free, int[] specialOf, double[] coefficient, double[] sign,
        List<(int Row, double Target, bool Lower)> activeGeneral, List<int> activeGroups, double[] multipliers)
    {
        var n = x.Length;
        var f = free.Count;
        var nc = multipliers.Length;

        // Constraint rows on the free variables, and their right-hand sides net of the fixed variables.
        var c = new double[nc, f];
        var d = new double[nc];
        var position = Enumerable.Repeat(-1, n).ToArray();
        for (var k = 0; k < free.Count; k++)
        {
            position[free[k]] = k;
        }

        for (var i = 0; i < activeGeneral.Count; i++)
        {
            var (row, target, _) = activeGeneral[i];
            d[i] = target;
            var (columns, values) = a.Row(row);
            for (var k = 0; k < columns.Length; k++)
            {
                var j = columns.Span[k];
                if (position[j] >= 0)
                {
                    c[i, position[j]] = values.Span[k];
                }
                else
                {
                    d[i] -= values.Span[k] * x[j];
                }
            }
        }

        for (var gi = 0; gi < activeGroups.Count; gi++)
        {
            var g = activeGroups[gi];
            var i = activeGeneral.Count + gi;
            d[i] = terms.GroupBudgets[g];
            for (var j = 0; j < n; j++)
            {
                var r = specialOf[j];
                if (terms.Group[r] != g)
                {
                    continue;
                }

                if (position[j] >= 0)
                {
                    c[i, position[j]] = sign[r] * coefficient[r];
                    d[i] += sign[r] * terms.Offset[r];
                }
                else
                {
                    d[i] -= Math.Abs((coefficient[r] * x[j]) - terms.Offset[r]);
                }
            }
        }

        for (var iteration = 0; iteration < 60; iteration++)
        {
            var gradient = new double[f];
            var hessian = new double[f * f];
            for (var a1 = 0; a1 < f; a1++)
            {
                var j = free[a1];
                var r = specialOf[j];
                var e = (coefficient[r] * x[j]) - terms.Offset[r];
                if (sign[r] * e <= 0)
                {
                    return NewtonFailed;
                }

                var abs = Math.Abs(e);
                var pRow = p.AsSpan(j * n, n);
                gradient[a1] = TensorPrimitives.Dot(pRow, x) + q[j] + (sign[r] * coefficient[r] * (terms.Linear[r] + (1.5 * terms.Power[r] * Math.Sqrt(abs))));
                for (var b1 = 0; b1 < f; b1++)
                {
                    hessian[(a1 * f) + b1] = pRow[free[b1]];
                }

                hessian[(a1 * f) + a1] += (0.75 * terms.Power[r] * coefficient[r] * coefficient[r] / Math.Sqrt(abs)) + 1e-14;
            }

            DenseCholesky factor;
            try
            {
                factor = DenseCholesky.Factor(hessian, f);
            }
            catch (ArgumentException)
            {
                return NewtonFailed;
            }

            // dx = −H⁻¹(g + Cᵀν), with (C H⁻¹ Cᵀ)ν = r − C H⁻¹ g … written as S ν = −C H⁻¹ g − residual.
            var hg = new double[f];
            factor.Solve(gradient, hg);
            var hct = new double[nc][];
            var residual = new double[nc];
            for (var i = 0; i < nc; i++)
            {
                var column = new double[f];
                for (var k = 0; k < f; k++)
                {
                    column[k] = c[i, k];
                    residual[i] += c[i, k] * x[free[k]];
                }

                residual[i] = d[i] - residual[i];
                hct[i] = new double[f];
                factor.Solve(column, hct[i]);
            }

            var nu = new double[nc];
            if (nc > 0)
            {
                var s = Matrix<double>.Build.Dense(nc, nc);
                var rhs = Vector<double>.Build.Dense(nc);
                for (var i = 0; i < nc; i++)
                {
                    double chg = 0;
                    for (var k = 0; k < f; k++)
                    {
                        chg += c[i, k] * hg[k];
                    }

                    rhs[i] = -chg - residual[i];
                    for (var i2 = 0; i2 < nc; i2++)
                    {
                        double sum = 0;
                        for (var k = 0; k < f; k++)
                        {
                            sum += c[i, k] * hct[i2][k];
                        }

                        s[i, i2] = sum;
                    }

                    s[i, i] += 1e-16;
                }

                var solved = s.Svd().Solve(rhs);
                if (!solved.All(double.IsFinite))
                {
                    return NewtonFailed;
                }

                for (var i = 0; i < nc; i++)
                {
                    nu[i] = solved[i];
                }
            }

            var dx = new double[f];
            for (var k = 0; k < f; k++)
            {
                dx[k] = -hg[k];
                for (var i = 0; i < nc; i++)
                {
                    dx[k] -= hct[i][k] * nu[i];
                }
            }

            // Stay on the face: a step that would take a free row across its kink stops at the kink.
            var step = 1.0;
            var blocking = -1;
            for (var k = 0; k < f; k++)
            {
                var r = specialOf[free[k]];
                var e = sign[r] * ((coefficient[r] * x[free[k]]) - terms.Offset[r]);
                var change = sign[r] * coefficient[r] * dx[k];
                if (change < 0 && e + (step * change) <= 0)
                {
                    step = e / -change;
                    blocking = k;
                }
            }

            if (blocking >= 0)
            {
                for (var k = 0; k < f; k++)
                {
                    x[free[k]] += step * dx[k];
                }

                var row = specialOf[free[blocking]];
                x[free[blocking]] = terms.Offset[row] / coefficient[row];
                return row;
            }

            double largest = 0, size = 0;
            for (var k = 0; k < f; k++)
            {
                x[free[k]] += step * dx[k];
                largest = Math.Max(largest, Math.Abs(dx[k]));
                size = Math.Max(size, Math.Abs(x[free[k]]));
            }

            Array.Copy(nu, multipliers, nc);
            if (step == 1 && largest <= 1e-13 * Math.Max(size, 1e-12))
            {
                return NewtonConverged;
            }
        }

        return NewtonFailed;
    }
}
