using System.Text.Json;
using MathNet.Numerics.LinearAlgebra;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>The ADMM QP solver against cvxopt (values from tests/reference/qp_reference.py).</summary>
public class QpSolverTests
{
    public static TheoryData<string> Cases() => ReferenceCases.Names("qp_cases.json");

    private static double Number(JsonElement e) => e.ValueKind == JsonValueKind.String
        ? (e.GetString() == "inf" ? double.PositiveInfinity : double.NegativeInfinity)
        : e.GetDouble();

    [Theory]
    [MemberData(nameof(Cases))]
    public void Objective_matches_cvxopt_to_1e6_relative(string name)
    {
        var c = ReferenceCases.Case("qp_cases.json", name);
        Matrix<double> M(string key) => Matrix<double>.Build.DenseOfRows(c.GetProperty(key).EnumerateArray().Select(r => r.EnumerateArray().Select(Number)));
        Vector<double> V(string key) => Vector<double>.Build.DenseOfEnumerable(c.GetProperty(key).EnumerateArray().Select(Number));
        var problem = new QuadraticProgram(M("P"), V("q"), M("A"), V("l"), V("u"));
        var solution = QpSolver.Solve(problem);
        var expected = c.GetProperty("objective").GetDouble();
        Assert.True(solution.Converged, $"not converged after {solution.Iterations} iterations");
        Assert.True(Math.Abs(solution.Objective - expected) <= 1e-6 * Math.Max(1, Math.Abs(expected)),
            $"objective {solution.Objective:R} vs cvxopt {expected:R} (polished: {solution.Polished})");
        var ax = problem.A * solution.X;
        for (var i = 0; i < ax.Count; i++)
        {
            Assert.InRange(ax[i], problem.Lower[i] - 1e-7, problem.Upper[i] + 1e-7);
        }

        var x = V("x");
        Assert.True((solution.X - x).InfinityNorm() < 1e-5, $"x differs from cvxopt's by {(solution.X - x).InfinityNorm():E2}");
    }

    [Fact]
    public void Warm_start_from_the_solution_converges_at_once()
    {
        var p = Matrix<double>.Build.DenseOfArray(new[,] { { 2.0, 0.5 }, { 0.5, 1.0 } });
        var problem = new QuadraticProgram(p, Vector<double>.Build.Dense([-1.0, -1.0]), Matrix<double>.Build.DenseIdentity(2),
            Vector<double>.Build.Dense([0.0, 0.0]), Vector<double>.Build.Dense([0.2, 10.0]));
        var cold = QpSolver.Solve(problem);
        var warm = QpSolver.Solve(problem, warmX: cold.X, warmY: cold.Y);
        Assert.True(warm.Iterations <= 10, $"warm start took {warm.Iterations} iterations");
        // By hand: unconstrained x = (2/7, 6/7) violates x₁ ≤ 0.2, so x₁ = 0.2 and x₂ minimises ½x₂² + 0.1x₂ − x₂ → 0.9.
        Assert.Equal(0.2, cold.X[0], 9);
        Assert.Equal(0.9, cold.X[1], 9);
    }
}
