using System.Text.Json;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Reads an optimiser case as tests/reference/optimizer_reference.py and benchmarks/compare/rebalance_optimizer.py
/// write it. Shared (linked) by the tests and the benchmark so both solve exactly what cvxopt solved.
/// </summary>
public static class OptimizerCase
{
    public static OptimizerProblem Parse(JsonElement c)
    {
        double? Optional(string key) => c.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
        var assets = c.GetProperty("assets").EnumerateArray().Select(a => new OptimizerAsset(
            a.GetProperty("id").GetString()!,
            a.GetProperty("weight").GetDouble(),
            a.GetProperty("target").GetDouble(),
            a.GetProperty("cash_per_unit").GetDouble(),
            a.GetProperty("linear_cost").GetDouble(),
            a.GetProperty("impact").GetDouble(),
            a.GetProperty("lower").GetDouble(),
            a.GetProperty("upper").GetDouble(),
            a.TryGetProperty("underlying", out var u) ? u.GetString() : null,
            a.TryGetProperty("delta_per_unit", out var d) ? d.GetDouble() : 1,
            a.TryGetProperty("expected_return", out var mu) ? mu.GetDouble() : 0)).ToArray();
        var rows = c.GetProperty("covariance").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetDouble()).ToArray()).ToArray();
        var covariance = new double[rows.Length, rows.Length];
        for (var i = 0; i < rows.Length; i++)
        {
            for (var j = 0; j < rows.Length; j++)
            {
                covariance[i, j] = rows[i][j];
            }
        }

        var deltas = c.TryGetProperty("delta_targets", out var dt)
            ? dt.EnumerateArray().Select(x => new DeltaTarget(x.GetProperty("underlying").GetString()!, x.GetProperty("fixed_delta").GetDouble(), x.GetProperty("tolerance").GetDouble(), x.GetProperty("target").GetDouble())).ToArray()
            : null;
        return new OptimizerProblem(
            assets,
            covariance,
            c.GetProperty("cash_weight").GetDouble(),
            c.GetProperty("min_cash_weight").GetDouble(),
            c.GetProperty("objective").GetString() == "mean_variance" ? OptimizerObjective.MeanVariance : OptimizerObjective.TrackingError,
            c.GetProperty("risk_aversion").GetDouble(),
            Optional("turnover_cap"),
            Optional("max_gross_leverage"),
            Optional("fixed_gross") ?? 0,
            deltas);
    }
}
