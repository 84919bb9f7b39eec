using System.Text.RegularExpressions;
using RebalanceMesh.Cli;
using RebalanceMesh.Testing;

namespace RebalanceMesh.IntegrationTests;

public partial class TopologyTests
{
    [GeneratedRegex(@"""(services[\\/][^""]+\.csproj)""")]
    private static partial Regex ProjectPath();

    [Fact]
    public void Every_service_host_and_plugin_of_the_solution_is_in_tye_yaml()
    {
        var solution = File.ReadAllText(Path.Combine(RepoPaths.Root, "RebalanceMesh.sln"));
        var hosts = ProjectPath().Matches(solution)
            .Select(m => m.Groups[1].Value.Replace('\\', '/'))
            .Where(p => !p.Contains("/BuildingBlocks/", StringComparison.Ordinal) && !p.EndsWith(".Core.csproj", StringComparison.Ordinal))
            .Order()
            .ToArray();
        Assert.Equal(5, hosts.Length); // four service hosts and execution's simulated venues (a plugin of its host)

        var topology = MeshTopology.Load(Path.Combine(RepoPaths.Root, "tye.yaml"));
        Assert.Equal(4, topology.Projects.Count());
        var started = topology.Projects.SelectMany(s => s.Plugins.Prepend(s.Project!)).ToArray();
        Assert.Equal(hosts, started.Order().ToArray());
        Assert.All(started, project => Assert.True(File.Exists(Path.Combine(RepoPaths.Root, project)), project));
        var ports = topology.Projects.SelectMany(s => s.Bindings.Select(b => b.Port)).ToArray();
        Assert.Equal(ports.Length, ports.Distinct().Count());
    }
}
