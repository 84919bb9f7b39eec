using System.Diagnostics;
using RebalanceMesh.Testing;
using YamlDotNet.RepresentationModel;

namespace RebalanceMesh.IntegrationTests;


/// <summary>deploy/ renders offline with kubectl's built-in kustomize and carries what the platform needs.</summary>
public class DeployTests
{
    private static readonly string[] Services = ["execution", "planning", "pricing", "risk"];

    private static IReadOnlyList<YamlMappingNode> Render(string directory)
    {
        var start = new ProcessStartInfo("kubectl", ["kustomize", Path.Combine(RepoPaths.Root, directory)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEnd();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, stderr);
        var stream = new YamlStream();
        stream.Load(new StringReader(stdout));
        return stream.Documents.Select(d => (YamlMappingNode)d.RootNode).ToArray();
    }

    private static string Get(YamlMappingNode node, params string[] path)
    {
        YamlNode current = node;
        foreach (var key in path)
        {
            current = current is YamlSequenceNode sequence
                ? sequence.Children[int.Parse(key, System.Globalization.CultureInfo.InvariantCulture)]
                : ((YamlMappingNode)current).Children[new YamlScalarNode(key)];
        }

        return ((YamlScalarNode)current).Value!;
    }

    [Fact]
    public void Base_renders_a_Deployment_and_Service_per_service_with_Dapr_annotations()
    {
        var objects = Render("deploy/k8s/base");
        var deployments = objects.Where(o => Get(o, "kind") == "Deployment" && Get(o, "metadata", "name") != "otel-collector").ToArray();
        Assert.Equal(Services, deployments.Select(d => Get(d, "metadata", "name")).Order());
        foreach (var deployment in deployments)
        {
            var name = Get(deployment, "metadata", "name");
            Assert.Equal("rebalancemesh", Get(deployment, "metadata", "namespace"));
            Assert.Equal("true", Get(deployment, "spec", "template", "metadata", "annotations", "dapr.io/enabled"));
            Assert.Equal(name, Get(deployment, "spec", "template", "metadata", "annotations", "dapr.io/app-id"));
            Assert.Equal("8081", Get(deployment, "spec", "template", "metadata", "annotations", "dapr.io/app-port"));
        }

        Assert.Equal(Services, objects.Where(o => Get(o, "kind") == "Service" && Get(o, "metadata", "name") != "otel-collector").Select(s => Get(s, "metadata", "name")).Order());
        var pubsub = objects.Single(o => Get(o, "kind") == "Component");
        Assert.Equal("pubsub.redis", Get(pubsub, "spec", "type"));
    }

    private static YamlNode? Find(YamlNode node, params string[] path)
    {
        var current = node;
        foreach (var key in path)
        {
            if (current is YamlSequenceNode sequence)
            {
                current = sequence.Children[int.Parse(key, System.Globalization.CultureInfo.InvariantCulture)];
            }
            else if (current is YamlMappingNode mapping && mapping.Children.TryGetValue(new YamlScalarNode(key), out var child))
            {
                current = child;
            }
            else
            {
                return null;
            }
        }

        return current;
    }

    [Theory]
    [InlineData("deploy/k8s/base")]
    [InlineData("deploy/k8s/overlays/dev")]
    [InlineData("deploy/k8s/overlays/prod")]
    public void Every_service_is_hardened_probed_spread_and_budgeted(string directory)
    {
        var objects = Render(directory);
        YamlMappingNode Single(string kind, string name) => objects.Single(o => Get(o, "kind") == kind && Get(o, "metadata", "name") == name);
        foreach (var service in Services)
        {
            var deployment = Single("Deployment", service);
            var pod = (YamlMappingNode)Find(deployment, "spec", "template", "spec")!;
            var container = (YamlMappingNode)Find(pod, "containers", "0")!;
            Assert.Equal(service, Get(pod, "serviceAccountName"));
            Assert.Equal("false", Get(pod, "automountServiceAccountToken"));
            Assert.Equal("true", Get(pod, "securityContext", "runAsNonRoot"));
            Assert.Equal("true", Get(container, "securityContext", "readOnlyRootFilesystem"));
            Assert.Equal("false", Get(container, "securityContext", "allowPrivilegeEscalation"));
            Assert.Equal("ALL", Get(container, "securityContext", "capabilities", "drop", "0"));
            Assert.Equal("liveness", Get(container, "livenessProbe", "grpc", "service"));
            Assert.Equal("readiness", Get(container, "readinessProbe", "grpc", "service"));
            Assert.Equal("8080", Get(container, "readinessProbe", "grpc", "port"));
            Assert.NotNull(Find(container, "resources", "requests", "cpu"));
            Assert.NotNull(Find(container, "resources", "limits", "memory"));
            Assert.NotNull(Find(pod, "topologySpreadConstraints", "0"));
            Assert.Equal("rebalancemesh-redis", Get(container, "env", "0", "valueFrom", "secretKeyRef", "name"));
            Single("ServiceAccount", service);
            Single("PodDisruptionBudget", service);
        }

        // risk autoscales on CPU and on a custom per-pod metric.
        var hpa = Single("HorizontalPodAutoscaler", "risk");
        Assert.Equal("Deployment", Get(hpa, "spec", "scaleTargetRef", "kind"));
        Assert.Equal(["Resource", "Pods"], ((YamlSequenceNode)Find(hpa, "spec", "metrics")!).Children.Select(m => Get((YamlMappingNode)m, "type")));

        // Only planning, and the reads of pricing and risk (role tokens), take client traffic, on their gRPC port;
        // execution and everything else only from the mesh.
        Assert.Equal(["default-deny-ingress", "mesh-only", "otel-collector", "planning-clients"],
            objects.Where(o => Get(o, "kind") == "NetworkPolicy").Select(o => Get(o, "metadata", "name")).Order());
        var clients = Single("NetworkPolicy", "planning-clients");
        Assert.Equal("app.kubernetes.io/name", Get(clients, "spec", "podSelector", "matchExpressions", "0", "key"));
        Assert.Equal("In", Get(clients, "spec", "podSelector", "matchExpressions", "0", "operator"));
        Assert.Equal(["planning", "pricing", "risk"], ((YamlSequenceNode)Find(clients, "spec", "podSelector", "matchExpressions", "0", "values")!).Children.Select(v => ((YamlScalarNode)v).Value!).Order());
        Assert.Equal("8080", Get(clients, "spec", "ingress", "0", "ports", "0", "port"));
    }

    [Fact]
    public void Production_pins_each_service_to_its_own_image_tag()
    {
        var images = Render("deploy/k8s/overlays/prod")
            .Where(o => Get(o, "kind") == "Deployment" && Services.Contains(Get(o, "metadata", "name")))
            .ToDictionary(o => Get(o, "metadata", "name"), o => Get(o, "spec", "template", "spec", "containers", "0", "image"));
        foreach (var service in Services)
        {
            Assert.Matches($"^registry\\.example\\.com/rebalancemesh/{service}:\\d+\\.\\d+\\.\\d+$", images[service]);
        }

        Assert.All(Render("deploy/k8s/overlays/dev").Where(o => Get(o, "kind") == "Deployment" && Services.Contains(Get(o, "metadata", "name"))),
            d => Assert.EndsWith(":dev", Get(d, "spec", "template", "spec", "containers", "0", "image"), StringComparison.Ordinal));
    }

    [Fact]
    public void Dapr_resiliency_and_pubsub_scopes_are_consistent()
    {
        var objects = Render("deploy/k8s/base");
        var pubsub = objects.Single(o => Get(o, "kind") == "Component");
        Assert.Equal(["execution", "planning", "pricing"], ((YamlSequenceNode)Find(pubsub, "scopes")!).Children.Select(c => ((YamlScalarNode)c).Value).Order());
        var resiliency = objects.Single(o => Get(o, "kind") == "Resiliency");
        Assert.Equal("publish", Get(resiliency, "spec", "targets", "components", "pubsub", "outbound", "retry"));
        Assert.NotNull(Find(resiliency, "spec", "policies", "retries", "publish"));
        Assert.Equal("otel-collector:4317", Get(objects.Single(o => Get(o, "kind") == "Configuration"), "spec", "tracing", "otel", "endpointAddress"));
    }

    [Fact]
    public void Collector_dashboard_and_alert_rules_parse_and_name_metrics_the_services_emit()
    {
        // The collector's pipelines use only receivers, processors and exporters it defines.
        var collector = new YamlStream();
        collector.Load(new StringReader(File.ReadAllText(Path.Combine(RepoPaths.Root, "deploy", "otel", "collector.yaml"))));
        var config = (YamlMappingNode)collector.Documents[0].RootNode;
        foreach (var pipeline in ((YamlMappingNode)Find(config, "service", "pipelines")!).Children.Values.Cast<YamlMappingNode>())
        {
            foreach (var section in new[] { "receivers", "processors", "exporters" })
            {
                foreach (var name in ((YamlSequenceNode)pipeline.Children[new YamlScalarNode(section)]).Children.Select(c => ((YamlScalarNode)c).Value!))
                {
                    Assert.NotNull(Find(config, section, name));
                }
            }
        }

        // Every rebalancemesh_* series the dashboard and the rules query is an instrument the code creates.
        var source = string.Join('\n', Directory.EnumerateFiles(Path.Combine(RepoPaths.Root, "services"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Select(File.ReadAllText));
        var instruments = System.Text.RegularExpressions.Regex.Matches(source, "\"(rebalancemesh\\.[a-z_.]+)\"")
            .Select(m => m.Groups[1].Value.Replace('.', '_'))
            .ToHashSet(StringComparer.Ordinal);
        var dashboard = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(RepoPaths.Root, "deploy", "observability", "grafana-dashboard.json"))).RootElement;
        var expressions = dashboard.GetProperty("panels").EnumerateArray()
            .SelectMany(p => p.GetProperty("targets").EnumerateArray().Select(t => t.GetProperty("expr").GetString()!))
            .Concat(RuleExpressions())
            .ToArray();
        Assert.True(expressions.Length > 15);
        static IEnumerable<string> RuleExpressions()
        {
            var rules = new YamlStream();
            rules.Load(new StringReader(File.ReadAllText(Path.Combine(RepoPaths.Root, "deploy", "observability", "prometheus-rules.yaml"))));
            return ((YamlSequenceNode)Find(rules.Documents[0].RootNode, "groups")!).Children
                .SelectMany(g => ((YamlSequenceNode)Find(g, "rules")!).Children.Select(r => Get((YamlMappingNode)r, "expr")));
        }

        // And every series they query (kube-state-metrics' aside) is one a mesh test scrapes from a running service's
        // /metrics (MeshTest.AssertExportedAsync): the names match what the Prometheus exporter writes, not just the code.
        var scraped = System.Text.RegularExpressions.Regex.Matches(
                string.Join('\n', Directory.EnumerateFiles(Path.Combine(RepoPaths.Root, "tests", "RebalanceMesh.IntegrationTests"), "*.cs")
                    .Select(File.ReadAllText)
                    .SelectMany(text => text.Split("AssertExportedAsync(").Skip(1).Select(call => call[..call.IndexOf(';', StringComparison.Ordinal)]))),
                "\"([a-z_]+)\"")
            .Select(m => m.Groups[1].Value)
            .ToHashSet(StringComparer.Ordinal);
        foreach (var series in expressions.SelectMany(e => System.Text.RegularExpressions.Regex.Matches(e, "\\b(rebalancemesh|http_server)_[a-z_]+").Select(m => m.Value)).Distinct())
        {
            Assert.True(scraped.Contains(series), $"{series} is queried by a dashboard or an alert, but no mesh test asserts that a service exports it");
        }

        foreach (var series in expressions.SelectMany(e => System.Text.RegularExpressions.Regex.Matches(e, "rebalancemesh_[a-z_]+").Select(m => m.Value)))
        {
            var instrument = System.Text.RegularExpressions.Regex.Replace(series, "_(total|bucket|seconds|milliseconds|bps)+$", string.Empty);
            instrument = System.Text.RegularExpressions.Regex.Replace(instrument, "_(seconds|milliseconds|bps)$", string.Empty);
            Assert.True(instruments.Contains(instrument), $"{series} is not emitted by any service (instruments: {string.Join(", ", instruments.Order())})");
        }
    }

    [Fact]
    public void Every_service_has_a_Dockerfile_that_publishes_its_project()
    {
        foreach (var service in Services)
        {
            var dockerfile = File.ReadAllText(Path.Combine(RepoPaths.Root, "deploy", "docker", service + ".Dockerfile"));
            var project = char.ToUpperInvariant(service[0]) + service[1..];
            Assert.Contains($"dotnet publish services/{project}/RebalanceMesh.{project}/RebalanceMesh.{project}.csproj", dockerfile, StringComparison.Ordinal);
            Assert.Contains("USER $APP_UID", dockerfile, StringComparison.Ordinal);
        }
    }
}
