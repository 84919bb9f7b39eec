using System.Globalization;
using RebalanceMesh.ServiceDefaults;
using Spectre.Console;

namespace RebalanceMesh.Cli;

/// <summary>One RPC of one service over the interval: calls per second, non-OK answers per second, p99 latency.</summary>
public sealed record RpcLine(string Service, string Method, double CallsPerSecond, double ErrorsPerSecond, double P99Ms);

/// <summary>What <c>rmesh top</c> shows, computed from two scrapes of every service's /metrics.</summary>
/// <param name="Lag">Per topic (and consuming service): events delivered per second and the p99 of their delivery lag.</param>
/// <param name="Drift">Monitored portfolios whose total drift is at most each bound (cumulative; "+Inf" counts them all).</param>
/// <param name="Unreachable">Services whose /metrics did not answer.</param>
public sealed record TopSnapshot(
    double Seconds,
    IReadOnlyList<RpcLine> Rpcs,
    IReadOnlyList<(string Service, string Topic, double PerSecond, double P99Ms)> Lag,
    IReadOnlyList<(string Bound, double Portfolios)> Drift,
    double PlansRunning,
    IReadOnlyList<string> Unreachable)
{
    public double Monitored => Drift.FirstOrDefault(d => d.Bound == "+Inf").Portfolios;
}

/// <summary>
/// <c>rmesh top</c>: a live view of the running mesh read from each service's Prometheus endpoint — per service and RPC
/// the call rate, errors and p99; event lag per topic; monitored portfolios and their drift distribution; plans
/// running in execution. Every figure is over the last interval (the difference of two scrapes).
/// </summary>
public static class MeshTop
{
    private const string Calls = "rebalancemesh_rpc_server_calls_total";
    private const string Durations = "http_server_request_duration_seconds_bucket";
    private const string LagBuckets = "rebalancemesh_events_lag_milliseconds_bucket";
    private const string Delivered = "rebalancemesh_events_delivered_total";
    private const string WithinDrift = "rebalancemesh_planning_portfolios_within_drift";
    private const string Running = "rebalancemesh_execution_plans_running";

    /// <summary>Scrapes every service of the mesh (replicas too): name → samples; a service that does not answer is left out.</summary>
    public static async Task<IReadOnlyDictionary<string, IReadOnlyList<MetricSample>>> ScrapeAsync(MeshState mesh, HttpClient http, CancellationToken cancellationToken)
    {
        var scrapes = await Task.WhenAll(mesh.Services.Select(async service =>
        {
            try
            {
                var text = await http.GetStringAsync(service.HttpUrl + ServiceDefaultsExtensions.MetricsPath, cancellationToken);
                return (service.Name, Samples: PrometheusText.Parse(text));
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                return (service.Name, Samples: (IReadOnlyList<MetricSample>?)null);
            }
        }));
        return scrapes.Where(s => s.Samples is not null).ToDictionary(s => s.Name, s => s.Samples!);
    }

    /// <summary>The view over the interval between two scrapes <paramref name="seconds"/> apart.</summary>
    public static TopSnapshot Compute(
        IReadOnlyDictionary<string, IReadOnlyList<MetricSample>> before,
        IReadOnlyDictionary<string, IReadOnlyList<MetricSample>> after,
        double seconds,
        IEnumerable<string> services)
    {
        var rpcs = new List<RpcLine>();
        var lag = new List<(string, string, double, double)>();
        foreach (var (service, samples) in after.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            var earlier = before.GetValueOrDefault(service) ?? [];
            double Delta(Func<MetricSample, bool> which) =>
                Math.Max(0, samples.Where(which).Sum(s => s.Value) - earlier.Where(which).Sum(s => s.Value));
            IReadOnlyList<(double, double)> Buckets(IEnumerable<MetricSample> of) =>
                [.. of.GroupBy(s => Bound(s.Label("le"))).Select(g => (g.Key, g.Sum(s => s.Value)))];

            foreach (var method in samples.Where(s => s.Name == Calls).Select(s => s.Label("rpc_method")).Distinct().Order(StringComparer.Ordinal))
            {
                var calls = Delta(s => s.Name == Calls && s.Label("rpc_method") == method);
                var errors = Delta(s => s.Name == Calls && s.Label("rpc_method") == method && s.Label("rpc_grpc_status_code") != "0");
                bool Route(MetricSample s) => s.Name == Durations && s.Label("http_route") == method;
                var p99 = PrometheusText.Quantile(0.99, Buckets(earlier.Where(Route)), Buckets(samples.Where(Route))) * 1000;
                if (calls > 0)
                {
                    rpcs.Add(new RpcLine(service, method.Split('/')[^1], calls / seconds, errors / seconds, p99));
                }
            }

            foreach (var topic in samples.Where(s => s.Name == LagBuckets).Select(s => s.Label("topic")).Distinct().Order(StringComparer.Ordinal))
            {
                bool Topic(MetricSample s) => s.Name == LagBuckets && s.Label("topic") == topic;
                var delivered = Delta(s => s.Name == Delivered && s.Label("topic") == topic);
                lag.Add((service, topic, delivered / seconds, PrometheusText.Quantile(0.99, Buckets(earlier.Where(Topic)), Buckets(samples.Where(Topic)))));
            }
        }

        var drift = after.Values.SelectMany(s => s).Where(s => s.Name == WithinDrift)
            .GroupBy(s => s.Label("drift_le"))
            .Select(g => (Bound: g.Key, Portfolios: g.Sum(s => s.Value)))
            .OrderBy(d => Bound(d.Bound))
            .ToArray();
        var running = after.Values.SelectMany(s => s).Where(s => s.Name == Running).Sum(s => s.Value);
        return new TopSnapshot(seconds, rpcs, lag, drift, running, [.. services.Where(s => !after.ContainsKey(s))]);
    }

    /// <summary>Refreshes the view every <paramref name="interval"/> until cancelled; with <paramref name="once"/> prints one view and returns.</summary>
    public static async Task RunAsync(MeshState mesh, TimeSpan interval, bool once, IAnsiConsole console, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var names = mesh.Services.Select(s => s.Name).ToArray();
        var previous = await ScrapeAsync(mesh, http, cancellationToken);
        var at = DateTime.UtcNow;
        if (once)
        {
            await Task.Delay(interval, cancellationToken);
            console.Write(Render(Compute(previous, await ScrapeAsync(mesh, http, cancellationToken), (DateTime.UtcNow - at).TotalSeconds, names)));
            return;
        }

        await console.Live(new Markup("[grey]scraping …[/]")).StartAsync(async live =>
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(interval, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                var current = await ScrapeAsync(mesh, http, cancellationToken);
                var now = DateTime.UtcNow;
                live.UpdateTarget(Render(Compute(previous, current, (now - at).TotalSeconds, names)));
                live.Refresh();
                (previous, at) = (current, now);
            }
        });
    }

    public static Spectre.Console.Rendering.IRenderable Render(TopSnapshot view)
    {
        var rpcs = new Table().Title($"RPCs over the last {view.Seconds:F1} s").AddColumns("service", "rpc", "calls/s", "errors/s", "p99 ms");
        foreach (var line in view.Rpcs.OrderBy(r => r.Service, StringComparer.Ordinal).ThenByDescending(r => r.CallsPerSecond))
        {
            rpcs.AddRow(line.Service, line.Method, Number(line.CallsPerSecond), line.ErrorsPerSecond > 0 ? $"[red]{Number(line.ErrorsPerSecond)}[/]" : "0", Number(line.P99Ms));
        }

        var lag = new Table().Title("Events").AddColumns("consumer", "topic", "delivered/s", "lag p99 ms");
        foreach (var (service, topic, perSecond, p99) in view.Lag)
        {
            lag.AddRow(service, topic, Number(perSecond), Number(p99));
        }

        var drift = new Table().Title($"Monitored portfolios: {view.Monitored:N0}").AddColumns("total drift ≤", "portfolios");
        foreach (var (bound, portfolios) in view.Drift)
        {
            drift.AddRow(bound, portfolios.ToString("N0", CultureInfo.InvariantCulture));
        }

        var footer = new Markup($"plans running in execution: [bold]{view.PlansRunning:N0}[/]"
            + (view.Unreachable.Count > 0 ? $"   [red]no metrics from {Markup.Escape(string.Join(", ", view.Unreachable))}[/]" : string.Empty));
        return new Rows(rpcs, new Columns(lag, drift), footer);
    }

    private static double Bound(string le) => le == "+Inf" ? double.PositiveInfinity : double.TryParse(le, NumberStyles.Float, CultureInfo.InvariantCulture, out var b) ? b : double.NaN;

    private static string Number(double value) => double.IsNaN(value) ? "–" : value.ToString(value >= 100 ? "N0" : "0.0#", CultureInfo.InvariantCulture);
}
