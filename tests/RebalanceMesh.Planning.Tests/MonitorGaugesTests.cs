using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// The monitor's gauges stay a bounded number of series on a large book: the drift distribution per bound and the
/// most drifted portfolios only; loans and margin ratios per portfolio; a partition given away is forgotten.
/// </summary>
public sealed class MonitorGaugesTests
{
    [Fact]
    public void Drift_is_a_distribution_and_the_most_drifted_portfolios_and_a_partition_given_away_is_forgotten()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var meters = services.GetRequiredService<IMeterFactory>();
        using var gauges = new MonitorGauges(meters, Options.Create(new MonitorOptions { DriftSeries = 100 }));

        // 300 portfolios drifting 0, 0.001, …, 0.299; one loan and one margined portfolio.
        for (var i = 0; i < 300; i++)
        {
            gauges.Drift($"p{i:D3}", i / 1000.0);
        }

        gauges.HealthFactor("p007", "L1", 1.35);
        gauges.MarginRatio("p008", 2.5);

        var seen = Collect(meters);
        // Cumulative: drift ≤ 0.005 is p000–p005 (6), ≤ 0.01 11, ≤ 0.02 21, ≤ 0.05 51, ≤ 0.1 101, ≤ 0.2 201, all 300.
        Assert.Equal([("0.005", 6), ("0.01", 11), ("0.02", 21), ("0.05", 51), ("0.1", 101), ("0.2", 201), ("+Inf", 300)],
            seen["rebalancemesh.planning.portfolios_within_drift"].Select(m => ((string)m.Tags["drift_le"]!, (long)m.Value)));
        var largest = seen["rebalancemesh.planning.total_drift"];
        Assert.Equal(100, largest.Count);
        Assert.Equal(Enumerable.Range(200, 100).Select(i => $"p{i:D3}").Order(), largest.Select(m => (string)m.Tags["portfolio_id"]!).Order());
        Assert.All(largest, m => Assert.Equal(int.Parse(((string)m.Tags["portfolio_id"]!)[1..], System.Globalization.CultureInfo.InvariantCulture) / 1000.0, (double)m.Value));
        Assert.Equal(1.35, (double)seen["rebalancemesh.planning.health_factor"].Single().Value);
        Assert.Equal(2.5, (double)seen["rebalancemesh.planning.margin_ratio"].Single().Value);

        // The partitions of p007 and p008 go to another replica: their loan, margin ratio and drift leave this one's gauges.
        const int partitions = 16;
        gauges.Forget(new HashSet<int> { MonitorPartitions.Of("p007", partitions), MonitorPartitions.Of("p008", partitions) }, partitions);
        var after = Collect(meters);
        Assert.Empty(after["rebalancemesh.planning.health_factor"]);
        Assert.Empty(after["rebalancemesh.planning.margin_ratio"]);
        var remaining = Enumerable.Range(0, 300).Count(i => MonitorPartitions.Of($"p{i:D3}", partitions) != MonitorPartitions.Of("p007", partitions) && MonitorPartitions.Of($"p{i:D3}", partitions) != MonitorPartitions.Of("p008", partitions));
        Assert.Equal(remaining, (long)after["rebalancemesh.planning.portfolios_within_drift"].Last().Value);
    }

    private sealed record Observed(object Value, Dictionary<string, object?> Tags);

    /// <summary>One collection of the gauges made by <paramref name="meters"/> (not those of other hosts in the process).</summary>
    private static Dictionary<string, List<Observed>> Collect(IMeterFactory meters)
    {
        var seen = new Dictionary<string, List<Observed>>
        {
            ["rebalancemesh.planning.portfolios_within_drift"] = [],
            ["rebalancemesh.planning.total_drift"] = [],
            ["rebalancemesh.planning.health_factor"] = [],
            ["rebalancemesh.planning.margin_ratio"] = [],
        };
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, meters) && seen.ContainsKey(instrument.Name))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        void Record<T>(Instrument instrument, T value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state) =>
            seen[instrument.Name].Add(new Observed(value!, new Dictionary<string, object?>(tags.ToArray())));
        listener.SetMeasurementEventCallback<long>(Record);
        listener.SetMeasurementEventCallback<double>(Record);
        listener.Start();
        listener.RecordObservableInstruments();
        return seen;
    }
}
