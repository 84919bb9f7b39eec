namespace RebalanceMesh.Cli;

/// <summary>Locates the repository, its tye.yaml, its state directory and the planning address.</summary>
public static class Repo
{
    public static string Root(string? given)
    {
        if (!string.IsNullOrEmpty(given))
        {
            return Path.GetFullPath(given);
        }

        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "tye.yaml")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("No tye.yaml here or above; run from the repository or pass --repo.");
    }

    public static string TyePath(string repo) => Path.Combine(repo, "tye.yaml");

    public static string StateDir(string repo) => Environment.GetEnvironmentVariable("RMESH_STATE_DIR") ?? Path.Combine(repo, ".rmesh");

    public static LaunchOptions Options(string repo, string? redis, bool freePorts) =>
        new(repo, StateDir(repo), redis ?? Environment.GetEnvironmentVariable("RMESH_REDIS"), freePorts);

    /// <summary>
    /// A channel to planning: at the address given (with the RMESH_TOKEN bearer token), else the running mesh's (with
    /// its development admin token, or RMESH_TOKEN), else tye.yaml's port.
    /// </summary>
    public static Grpc.Net.Client.GrpcChannel PlanningChannel(string? repoOption, string? given)
    {
        var token = Environment.GetEnvironmentVariable("RMESH_TOKEN");
        if (string.IsNullOrEmpty(given) && MeshState.TryLoad(StateDir(Root(repoOption))) is { } state)
        {
            return state.PlanningChannel();
        }

        return MeshState.AuthorizedChannel(ServiceAddress("planning", repoOption, given), token);
    }

    /// <summary>
    /// A channel to an internal service with the mesh credential: the running mesh's (RMESH_MESH_TOKEN instead, when
    /// set), at the address given or the mesh's.
    /// </summary>
    public static Grpc.Net.Client.GrpcChannel ServiceChannel(string service, string? repoOption, string? given)
    {
        var meshToken = Environment.GetEnvironmentVariable("RMESH_MESH_TOKEN")
            ?? MeshState.TryLoad(StateDir(Root(repoOption)))?.Credentials?.MeshToken;
        return MeshState.AuthorizedChannel(ServiceAddress(service, repoOption, given), null, meshToken);
    }

    /// <summary>gRPC address of a service: the one given, else the running mesh's, else tye.yaml's port on loopback.</summary>
    public static string ServiceAddress(string service, string? repoOption, string? given)
    {
        if (!string.IsNullOrEmpty(given))
        {
            return given;
        }

        var repo = Root(repoOption);
        if (MeshState.TryLoad(StateDir(repo)) is { } state)
        {
            return state.Service(service).GrpcUrl;
        }

        var entry = MeshTopology.Load(TyePath(repo)).Services.First(s => s.Name == service);
        return $"http://127.0.0.1:{entry.Binding("grpc")!.Port}";
    }
}
