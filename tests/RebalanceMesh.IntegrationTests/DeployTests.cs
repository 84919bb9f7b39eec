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
        var deployments = objects.Where(o => Get(o, "kind") == "Deployment").ToArray();
        Assert.Equal(Services, deployments.Select(d => Get(d, "metadata", "name")).Order());
        foreach (var deployment in deployments)
        {
            var name = Get(deployment, "metadata", "name");
            Assert.Equal("rebalancemesh", Get(deployment, "metadata", "namespace"));
            Assert.Equal("true", Get(deployment, "spec", "template", "metadata", "annotations", "dapr.io/enabled"));
            Assert.Equal(name, Get(deployment, "spec", "template", "metadata", "annotations", "dapr.io/app-id"));
            Assert.Equal("8081", Get(deployment, "spec", "template", "metadata", "annotations", "dapr.io/app-port"));
            Assert.Equal("/health/ready", Get(deployment, "spec", "template", "spec", "containers", "0", "readinessProbe", "httpGet", "path"));
        }

        Assert.Equal(Services, objects.Where(o => Get(o, "kind") == "Service").Select(s => Get(s, "metadata", "name")).Order());
        var pubsub = objects.Single(o => Get(o, "kind") == "Component");
        Assert.Equal("pubsub.redis", Get(pubsub, "spec", "type"));
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
