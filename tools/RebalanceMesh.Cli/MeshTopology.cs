using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace RebalanceMesh.Cli;

/// <summary>tye.yaml as the launcher reads it.</summary>
public sealed class MeshTopology
{
    public string Name { get; set; } = string.Empty;

    public List<TopologyService> Services { get; set; } = [];

    /// <summary>The services built from projects, in file order.</summary>
    public IEnumerable<TopologyService> Projects => Services.Where(s => !string.IsNullOrEmpty(s.Project));

    public static MeshTopology Load(string path)
    {
        var deserializer = new DeserializerBuilder()
            .WithNamingConvention(CamelCaseNamingConvention.Instance)
            .IgnoreUnmatchedProperties()
            .Build();
        using var reader = File.OpenText(path);
        var topology = deserializer.Deserialize<MeshTopology>(reader) ?? throw new InvalidDataException($"{path} is empty.");
        foreach (var service in topology.Projects)
        {
            if (service.Binding("grpc") is null || service.Binding("http") is null)
            {
                throw new InvalidDataException($"Service '{service.Name}' in {path} needs a 'grpc' and an 'http' binding.");
            }
        }

        return topology;
    }
}

/// <summary>One service of tye.yaml.</summary>
public sealed class TopologyService
{
    public string Name { get; set; } = string.Empty;

    public string? Project { get; set; }

    public string? Image { get; set; }

    public int Replicas { get; set; } = 1;

    public List<TopologyBinding> Bindings { get; set; } = [];

    public List<TopologyEnv> Env { get; set; } = [];

    public List<string> References { get; set; } = [];

    /// <summary>
    /// Projects loaded into the service as plugins (its configuration list <c>Plugins</c>): parts that are not in the
    /// service's production build, such as execution's simulated venues. Built with the service; passed by dll path.
    /// </summary>
    public List<string> Plugins { get; set; } = [];

    public TopologyBinding? Binding(string name) => Bindings.FirstOrDefault(b => string.Equals(b.Name, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>A named port.</summary>
public sealed class TopologyBinding
{
    public string? Name { get; set; }

    public int Port { get; set; }

    public string? Protocol { get; set; }

    public string? ConnectionString { get; set; }
}

/// <summary>An environment variable.</summary>
public sealed class TopologyEnv
{
    public string Name { get; set; } = string.Empty;

    public string Value { get; set; } = string.Empty;
}
