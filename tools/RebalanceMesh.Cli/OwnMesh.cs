using System.Diagnostics;
using System.Globalization;

namespace RebalanceMesh.Cli;

/// <summary>
/// A mesh of its own for a measurement (benchmarks, load, soak): redis-server and the four services on free loopback
/// ports in a temporary state directory, stopped and removed on dispose. Never touches a mesh `rmesh up` started.
/// </summary>
public sealed class OwnMesh : IDisposable
{
    private OwnMesh(MeshState state, string stateDir)
    {
        State = state;
        StateDir = stateDir;
    }

    public MeshState State { get; }

    public string StateDir { get; }

    /// <summary>Builds the solution in <paramref name="configuration"/> (so no stale service runs); false when the build fails.</summary>
    public static async Task<bool> BuildAsync(string repo, string configuration, TextWriter log, CancellationToken cancellationToken)
    {
        log.WriteLine($"building the services ({configuration}) …");
        using var build = Process.Start(new ProcessStartInfo("dotnet", ["build", Path.Combine(repo, "RebalanceMesh.sln"), "-c", configuration, "--nologo", "-v", "quiet"]) { UseShellExecute = false })!;
        await build.WaitForExitAsync(cancellationToken);
        if (build.ExitCode != 0)
        {
            Console.Error.WriteLine("The build failed.");
        }

        return build.ExitCode == 0;
    }

    public static async Task<OwnMesh> StartAsync(string repo, IReadOnlyDictionary<string, string> env, string configuration, string prefix, TextWriter log, CancellationToken cancellationToken)
    {
        var stateDir = Directory.CreateTempSubdirectory(prefix).FullName;
        try
        {
            var state = await MeshLauncher.UpAsync(MeshTopology.Load(Repo.TyePath(repo)), new LaunchOptions(repo, stateDir, FreePorts: true, ExtraEnv: env, Configuration: configuration), log, cancellationToken);
            return new OwnMesh(state, stateDir);
        }
        catch
        {
            MeshLauncher.Down(stateDir, TextWriter.Null);
            Directory.Delete(stateDir, recursive: true);
            throw;
        }
    }

    /// <summary>Stops the mesh and removes its state directory, unless RMESH_KEEP_STATE=1 keeps it (its logs, to look into a run).</summary>
    public void Dispose()
    {
        MeshLauncher.Down(StateDir, TextWriter.Null);
        if (Environment.GetEnvironmentVariable("RMESH_KEEP_STATE") == "1")
        {
            Console.Error.WriteLine($"mesh state and logs kept in {StateDir}");
            return;
        }

        Directory.Delete(StateDir, recursive: true);
    }
}

/// <summary>One look at a service process: resident memory, threads and open file descriptors (from /proc).</summary>
public sealed record ProcessSample(string Service, double Seconds, double RssMb, int Threads, int OpenFiles)
{
    /// <summary>Null when the process is gone or /proc is not there.</summary>
    public static ProcessSample? Read(string service, int pid, double seconds)
    {
        try
        {
            double rss = 0;
            var threads = 0;
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    rss = double.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
                }
                else if (line.StartsWith("Threads:", StringComparison.Ordinal))
                {
                    threads = int.Parse(line["Threads:".Length..].Trim(), CultureInfo.InvariantCulture);
                }
            }

            return new ProcessSample(service, seconds, rss, threads, Directory.GetFiles($"/proc/{pid}/fd").Length);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Every service of the mesh, now.</summary>
    public static IReadOnlyList<ProcessSample> ReadAll(MeshState mesh, double seconds) =>
        mesh.Services.Select(s => Read(s.Name, s.Pid, seconds)).OfType<ProcessSample>().ToArray();
}

/// <summary>Percentiles by nearest rank.</summary>
public static class Percentiles
{
    public static double NearestRank(IReadOnlyList<double> values, double percent)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(percent / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
