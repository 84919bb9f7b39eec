using RebalanceMesh.Cli;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>`rmesh top`'s arithmetic on the Prometheus text format, by hand.</summary>
public sealed class PrometheusTextTests
{
    [Fact]
    public void Samples_are_read_with_their_labels_and_comments_and_junk_are_skipped()
    {
        var samples = PrometheusText.Parse("""
            # HELP rebalancemesh_rpc_server_calls_total Completed RPCs
            # TYPE rebalancemesh_rpc_server_calls_total counter
            rebalancemesh_rpc_server_calls_total{otel_scope_name="RebalanceMesh.Rpc",rpc_method="/a.B/C",rpc_grpc_status_code="0"} 12 1733400000000
            target_info{service_name="planning",note="a \"quoted\" \\ value"} 1
            dotnet_gc_heap_size 1.5e+06
            http_server_request_duration_seconds_bucket{le="+Inf"} +Inf
            not a sample
            broken{le="1} 3
            """);
        Assert.Equal(4, samples.Count);
        Assert.Equal(("rebalancemesh_rpc_server_calls_total", "/a.B/C", "0", 12.0), (samples[0].Name, samples[0].Label("rpc_method"), samples[0].Label("rpc_grpc_status_code"), samples[0].Value));
        Assert.Equal("a \"quoted\" \\ value", samples[1].Label("note"));
        Assert.Equal(1.5e6, samples[2].Value);
        Assert.Empty(samples[2].Labels);
        Assert.Equal(double.PositiveInfinity, samples[3].Value);
    }

    [Fact]
    public void The_quantile_of_an_interval_interpolates_within_the_bucket_of_the_new_observations()
    {
        // Before: 10 observations ≤ 0.1. After: 10 more ≤ 0.1, 80 in (0.1, 0.5], 10 in (0.5, 1] — 100 new in all.
        (double, double)[] before = [(0.1, 10), (0.5, 10), (1, 10), (double.PositiveInfinity, 10)];
        (double, double)[] after = [(0.1, 20), (0.5, 100), (1, 110), (double.PositiveInfinity, 110)];

        // p50: rank 50 of 100 falls in (0.1, 0.5] holding ranks 11–90: 0.1 + 0.4 × (50 − 10) / 80 = 0.3.
        Assert.Equal(0.3, PrometheusText.Quantile(0.5, before, after), 12);
        // p99: rank 99 in (0.5, 1] holding 91–100: 0.5 + 0.5 × (99 − 90) / 10 = 0.95.
        Assert.Equal(0.95, PrometheusText.Quantile(0.99, before, after), 12);
        // p5: rank 5 in the first bucket, from 0: 0.1 × 5 / 10 = 0.05.
        Assert.Equal(0.05, PrometheusText.Quantile(0.05, before, after), 12);
        // Nothing new: no quantile. Everything beyond the last bound: that bound.
        Assert.True(double.IsNaN(PrometheusText.Quantile(0.99, after, after)));
        Assert.Equal(1.0, PrometheusText.Quantile(0.99, after, [(0.1, 20), (0.5, 100), (1, 110), (double.PositiveInfinity, 120)]), 12);
    }

    [Fact]
    public void Rates_errors_and_the_book_come_from_the_difference_of_two_scrapes()
    {
        static IReadOnlyList<MetricSample> Scrape(int ok, int failed, int running, int monitored) => PrometheusText.Parse($"""
            rebalancemesh_rpc_server_calls_total{"{"}rpc_method="/p.S/Get",rpc_grpc_status_code="0"{"}"} {ok}
            rebalancemesh_rpc_server_calls_total{"{"}rpc_method="/p.S/Get",rpc_grpc_status_code="5"{"}"} {failed}
            rebalancemesh_planning_portfolios_within_drift{"{"}drift_le="0.01"{"}"} {monitored / 2}
            rebalancemesh_planning_portfolios_within_drift{"{"}drift_le="+Inf"{"}"} {monitored}
            rebalancemesh_execution_plans_running {running}
            """);
        var before = new Dictionary<string, IReadOnlyList<MetricSample>> { ["planning"] = Scrape(100, 4, 0, 10) };
        var after = new Dictionary<string, IReadOnlyList<MetricSample>> { ["planning"] = Scrape(140, 6, 3, 12) };

        var view = MeshTop.Compute(before, after, 2.0, ["planning", "risk"]);
        var line = Assert.Single(view.Rpcs);
        Assert.Equal(("planning", "Get", 21.0, 1.0), (line.Service, line.Method, line.CallsPerSecond, line.ErrorsPerSecond)); // (40 + 2) / 2 s; 2 / 2 s
        Assert.True(double.IsNaN(line.P99Ms)); // no duration histogram scraped
        Assert.Equal(12, view.Monitored);
        Assert.Equal([("0.01", 6.0), ("+Inf", 12.0)], view.Drift);
        Assert.Equal(3, view.PlansRunning);
        Assert.Equal(["risk"], view.Unreachable);
    }
}

/// <summary>`rmesh top` against a running mesh after a rebalance.</summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class MeshTopTests(ITestOutputHelper output) : MeshTest(output)
{
    [Fact]
    public async Task The_view_shows_each_services_rpcs_the_event_topics_and_the_monitored_book()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var before = await MeshTop.ScrapeAsync(Mesh, http, cancel.Token);
        var demo = await new DemoRunner(Mesh, Path.Combine(StateDir, "spans"), new StringWriter()).RunAsync("top", cancel.Token);
        var after = await MeshTop.ScrapeAsync(Mesh, http, cancel.Token);
        var view = MeshTop.Compute(before, after, 1.0, Mesh.Services.Select(s => s.Name));

        var console = new StringWriter();
        Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings { Out = new Spectre.Console.AnsiConsoleOutput(console), ColorSystem = Spectre.Console.ColorSystemSupport.NoColors }).Write(MeshTop.Render(view));
        Output.WriteLine(console.ToString());

        Assert.Empty(view.Unreachable);
        var submit = Assert.Single(view.Rpcs, r => r.Service == "planning" && r.Method == "SubmitRebalance");
        Assert.Equal(1.0, submit.CallsPerSecond); // one submit in the interval (its length taken as 1 s)
        Assert.True(submit.P99Ms > 0, "p99 from the request duration histogram");
        Assert.Contains(view.Rpcs, r => r.Service == "pricing" && r.Method == "PriceInstruments");
        Assert.Contains(view.Rpcs, r => r.Service == "risk" && r.Method == "CompareRiskBatch"); // planning batches its risk calls
        Assert.Contains(view.Lag, l => l.Service == "planning" && l.Topic == "execution.reports" && l.PerSecond >= demo.Plan.Legs.Count);
        Assert.Contains(view.Lag, l => l.Service == "execution" && l.Topic == "plans.approved");
        Assert.True(view.Monitored >= 1, "the demo portfolio is monitored");
        Assert.Contains("SubmitRebalance", console.ToString(), StringComparison.Ordinal);
    }
}
