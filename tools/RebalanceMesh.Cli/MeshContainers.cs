using System.Diagnostics;
using System.Globalization;

namespace RebalanceMesh.Cli;

/// <summary>
/// <c>rmesh up --containers</c>: Redis and the four services as podman containers from the local images
/// (deploy/images/build.sh), run as the Kubernetes manifests run them — non-root (uid 1654), read-only root file
/// system with a small /tmp, the manifests' environment (Production, the Redis connection, the auth secret's values,
/// the other services' addresses) — on the host network, on tye.yaml's ports (or free ones). Logs and spans go to the
/// state directory through two mounted folders, so <c>rmesh logs</c>, <c>rmesh trace</c> and the demo read them as
/// for processes. Execution runs the development image, which holds the simulated venues as its plugin.
/// </summary>
public static class MeshContainers
{
    public const int AppUid = 1654;

    /// <summary>podman as it runs here: rootful, runc (crun fails on this kernel's cgroups), cgroupfs.</summary>
    private static readonly string[] Podman = ["--runtime", "runc", "--cgroup-manager=cgroupfs"];

    /// <summary>Explicit limits: podman's defaults exceed the machine's hard limits and are refused.</summary>
    private static readonly string[] Limits = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];

    public static string Image(string name, string tag) => $"localhost/rebalancemesh/{name}:{tag}";

    public static async Task<MeshState> UpAsync(MeshTopology topology, LaunchOptions options, string tag, TextWriter log, CancellationToken cancellationToken)
    {
        var services = topology.Projects.ToList();
        foreach (var image in services.Select(s => s.Name).Append("redis").Select(n => Image(n, tag)))
        {
            if (Run(["image", "exists", image], check: false).ExitCode != 0)
            {
                throw new InvalidOperationException($"No image {image}: build the images first (deploy/images/build.sh {tag}).");
            }
        }

        MeshState.CreatePrivateDirectory(options.StateDir);
        var logs = Directory.CreateDirectory(Path.Combine(options.StateDir, "logs")).FullName;
        var spans = Directory.CreateDirectory(Path.Combine(options.StateDir, "spans")).FullName;
        foreach (var folder in new[] { logs, spans })
        {
            // The containers' user writes there, also to the files an earlier run (processes, as root) left.
            Run(["chown", "-R", AppUid.ToString(CultureInfo.InvariantCulture), folder], check: true, podman: false);
        }

        // Containers are named after the mesh that runs them: several meshes (state directories) may run side by side.
        var suffix = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        var redisPort = MeshLauncher.FreePort();
        var redisContainer = $"rmesh-redis-{suffix}";
        Run(["run", "-d", "--name", redisContainer, "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,size=256m", .. Limits,
            Image("redis", tag), "--port", redisPort.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "/tmp"], check: true);
        var redis = $"127.0.0.1:{redisPort}";
        var credentials = MeshCredentials.New();
        var state = new MeshState(redis, PidOf(redisContainer), [], credentials, redisContainer);
        await state.SaveAsync(options.StateDir, cancellationToken);
        await MeshLauncher.WaitForRedisAsync(redisPort, state.RedisPid!.Value, cancellationToken);
        log.WriteLine($"redis      {redis} (container {redisContainer})");

        var ports = MeshLauncher.AssignPorts(services, options.FreePorts);
        try
        {
            foreach (var service in services)
            {
                var (grpc, http) = ports[service.Name];
                var overrides = new Dictionary<string, string>
                {
                    ["ASPNETCORE_ENVIRONMENT"] = "Production", // as the manifests run it
                    ["DOTNET_ENVIRONMENT"] = "Production",
                    ["TMPDIR"] = "/tmp",
                };
                if (service.Plugins.Count > 0)
                {
                    overrides["Plugins__0"] = "/app/plugins/RebalanceMesh.Execution.Simulators.dll"; // the development image's plugin
                }

                var env = MeshLauncher.MeshEnvironment(service, ports, redis, $"/spans/{service.Name}.jsonl", $"/logs/{service.Name}.log", credentials, options, overrides);
                var container = $"rmesh-{service.Name}-{suffix}";
                Run([
                    "run", "-d", "--name", container, "--network", "host", "--read-only", "--tmpfs", "/tmp:rw,size=64m",
                    "--user", AppUid.ToString(CultureInfo.InvariantCulture), .. Limits,
                    "--volume", $"{logs}:/logs", "--volume", $"{spans}:/spans",
                    .. env.OrderBy(e => e.Key, StringComparer.Ordinal).SelectMany(e => new[] { "--env", $"{e.Key}={e.Value}" }),
                    Image(service.Name, tag)], check: true);
                state.Services.Add(new RunningService(service.Name, PidOf(container), $"http://127.0.0.1:{grpc}", $"http://127.0.0.1:{http}",
                    Path.Combine(logs, service.Name + ".log"), Path.Combine(spans, service.Name + ".jsonl"), Container: container));
            }

            await state.SaveAsync(options.StateDir, cancellationToken);
            await Task.WhenAll(state.Services.Select(s => MeshLauncher.WaitHealthyAsync(s, cancellationToken)));
        }
        catch
        {
            foreach (var container in state.Services.Select(s => s.Container).OfType<string>())
            {
                // What a container wrote before it could log (a start that failed), shown before it is removed.
                log.WriteLine($"--- {container} ---{Environment.NewLine}{Run(["logs", "--tail", "20", container], check: false).Output}");
            }

            await state.SaveAsync(options.StateDir, CancellationToken.None);
            MeshLauncher.Down(options.StateDir, TextWriter.Null);
            throw;
        }

        foreach (var service in state.Services)
        {
            log.WriteLine($"{service.Name,-10} gRPC {service.GrpcUrl}  HTTP {service.HttpUrl}  (container {service.Container}, {Image(service.Name, tag)})");
        }

        return state;
    }

    /// <summary>Restarts a service's container (podman stops it with SIGTERM, 10 s grace) and waits until it is ready.</summary>
    public static async Task<MeshState> RestartAsync(string stateDir, MeshState state, string name, string container, CancellationToken cancellationToken)
    {
        Run(["restart", "--time", "10", container], check: true);
        var service = state.Service(name);
        var restarted = service with { Pid = PidOf(container) };
        state.Services[state.Services.IndexOf(service)] = restarted;
        await state.SaveAsync(stateDir, cancellationToken);
        await MeshLauncher.WaitHealthyAsync(restarted, cancellationToken);
        return state;
    }

    /// <summary>Restarts the Redis container (its data lives only in the container's /tmp: a restart empties it).</summary>
    public static void RestartRedis(string container) => Run(["restart", "--time", "10", container], check: true);

    /// <summary>Stops (SIGTERM, 10 s grace) and removes a container; one already gone is fine.</summary>
    public static void Remove(string container)
    {
        Run(["stop", "--time", "10", container], check: false);
        Run(["rm", "--force", container], check: false);
    }

    /// <summary>The host pid of a running container's main process (rootful podman).</summary>
    public static int PidOf(string container)
    {
        var output = Run(["inspect", "--format", "{{.State.Pid}}", container], check: true).Output.Trim();
        return int.Parse(output, CultureInfo.InvariantCulture);
    }

    private static (int ExitCode, string Output) Run(IReadOnlyList<string> arguments, bool check, bool podman = true)
    {
        var start = new ProcessStartInfo(podman ? "podman" : arguments[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in podman ? [.. Podman, .. arguments] : arguments.Skip(1))
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("podman could not be started (scripts/ensure-tools.sh podman).");
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (check && process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{(podman ? "podman " : string.Empty)}{string.Join(' ', arguments.Take(3))} … failed ({process.ExitCode}): {error.Trim()}");
        }

        return (process.ExitCode, output);
    }
}
