using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using Microsoft.Extensions.Options;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning;

/// <summary>
/// What the monitor last measured on the portfolios this replica evaluates, as gauges sized for a book of 100,000: the
/// distribution of total drift (a series per drift bound, not per portfolio), the total drift of the
/// <see cref="MonitorOptions.DriftSeries"/> most drifted portfolios by portfolio (what a dashboard's "worst
/// portfolios" shows), and the health factor of each monitored loan and the margin ratio of each margined portfolio —
/// per portfolio, since an alert names the one near liquidation, and only portfolios with loans or margined contracts
/// have them. Partitions given away are forgotten (<see cref="Forget"/>): another replica exports them.
/// </summary>
public sealed class MonitorGauges : IDisposable
{
    /// <summary>Upper bounds of the drift distribution (cumulative, as a Prometheus histogram's buckets).</summary>
    public static readonly double[] DriftBounds = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, double.PositiveInfinity];

    private static readonly string[] BoundNames = [.. DriftBounds.Select(b => double.IsPositiveInfinity(b) ? "+Inf" : b.ToString(CultureInfo.InvariantCulture))];

    private readonly Meter _meter;
    private readonly int _driftSeries;
    private readonly ConcurrentDictionary<string, double> _drift = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Portfolio, string Loan), double> _healthFactors = new();
    private readonly ConcurrentDictionary<string, double> _marginRatios = new(StringComparer.Ordinal);

    public MonitorGauges(IMeterFactory meters, IOptions<MonitorOptions> options)
    {
        _driftSeries = Math.Max(0, options.Value.DriftSeries);
        _meter = meters.Create("RebalanceMesh.Planning.Monitor");
        _meter.CreateObservableGauge("rebalancemesh.planning.portfolios_within_drift", DriftDistribution,
            description: "Monitored portfolios (this replica's) whose total drift is at most drift_le, cumulative: drift_le=\"+Inf\" counts them all.");
        _meter.CreateObservableGauge("rebalancemesh.planning.total_drift", LargestDrifts,
            description: "Total drift Σ|w − w*| / 2 of the most drifted monitored portfolios (Monitor:DriftSeries of them), by portfolio.");
        _meter.CreateObservableGauge("rebalancemesh.planning.health_factor", () =>
            _healthFactors.Select(kv => new Measurement<double>(kv.Value,
                new KeyValuePair<string, object?>("portfolio_id", kv.Key.Portfolio), new KeyValuePair<string, object?>("loan_id", kv.Key.Loan))),
            description: "Health factor of each monitored loan.");
        _meter.CreateObservableGauge("rebalancemesh.planning.margin_ratio", () =>
            _marginRatios.Select(kv => new Measurement<double>(kv.Value, new KeyValuePair<string, object?>("portfolio_id", kv.Key))),
            description: "Margin ratio (net value over maintenance margin) of each monitored portfolio with margined contracts.");
    }

    public void Drift(string portfolioId, double totalDrift) => _drift[portfolioId] = totalDrift;

    public void HealthFactor(string portfolioId, string loanId, double healthFactor) => _healthFactors[(portfolioId, loanId)] = healthFactor;

    public void MarginRatio(string portfolioId, double ratio) => _marginRatios[portfolioId] = ratio;

    /// <summary>Drops what was measured on the portfolios in <paramref name="partitions"/> (another replica measures them now).</summary>
    public void Forget(IReadOnlySet<int> partitions, int partitionCount)
    {
        foreach (var id in _drift.Keys.Where(id => partitions.Contains(MonitorPartitions.Of(id, partitionCount))))
        {
            _drift.TryRemove(id, out _);
            _marginRatios.TryRemove(id, out _);
        }

        foreach (var key in _healthFactors.Keys.Where(k => partitions.Contains(MonitorPartitions.Of(k.Portfolio, partitionCount))))
        {
            _healthFactors.TryRemove(key, out _);
        }
    }

    private IEnumerable<Measurement<long>> DriftDistribution()
    {
        var counts = new long[DriftBounds.Length];
        foreach (var drift in _drift.Values)
        {
            var bucket = 0;
            while (bucket < DriftBounds.Length - 1 && !(drift <= DriftBounds[bucket]))
            {
                bucket++;
            }

            counts[bucket]++;
        }

        long cumulative = 0;
        var measurements = new Measurement<long>[DriftBounds.Length];
        for (var b = 0; b < DriftBounds.Length; b++)
        {
            cumulative += counts[b];
            measurements[b] = new Measurement<long>(cumulative, new KeyValuePair<string, object?>("drift_le", BoundNames[b]));
        }

        return measurements;
    }

    /// <summary>The <see cref="MonitorOptions.DriftSeries"/> largest drifts (ties by portfolio id), each a series.</summary>
    private IEnumerable<Measurement<double>> LargestDrifts()
    {
        if (_driftSeries == 0)
        {
            return [];
        }

        // A min-heap of the largest seen so far: O(n log k) over the book per collection.
        var largest = new PriorityQueue<string, (double Drift, string Id)>(_driftSeries + 1, Comparer<(double Drift, string Id)>.Create((a, b) =>
            a.Drift != b.Drift ? a.Drift.CompareTo(b.Drift) : string.CompareOrdinal(b.Id, a.Id)));
        foreach (var (id, drift) in _drift)
        {
            largest.Enqueue(id, (drift, id));
            if (largest.Count > _driftSeries)
            {
                largest.Dequeue();
            }
        }

        var measurements = new List<Measurement<double>>(largest.Count);
        while (largest.TryDequeue(out var id, out var key))
        {
            measurements.Add(new Measurement<double>(key.Drift, new KeyValuePair<string, object?>("portfolio_id", id)));
        }

        return measurements;
    }

    public void Dispose() => _meter.Dispose();
}
