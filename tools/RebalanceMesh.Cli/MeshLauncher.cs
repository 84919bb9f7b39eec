using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace RebalanceMesh.Cli;

/// <summary>How to launch the mesh.</summary>
/// <param name="RepoRoot">Directory holding tye.yaml.</param>
/// <param name="StateDir">Where pids, logs and span files go (default &lt;repo&gt;/.rmesh).</param>
/// <param name="RedisConnection">An existing Redis ("host:port"); null starts a redis-server on a free port.</param>
/// <param name="FreePorts">Ignore the ports of tye.yaml and take free ones (tests, parallel runs).</param>
/// <param name="ExtraEnv">Variables added to every service, for example a faster feed.</param>
/// <param name="KeepData">Start the local redis-server on the data of the previous run instead of an empty one.</param>
public sealed record LaunchOptions(
    string RepoRoot,
    string StateDir,
    string? RedisConnection = null,
    bool FreePorts = false,
    IReadOnlyDictionary<string, string>? ExtraEnv = null,
    string Configuration = "Debug",
    bool KeepData = false);

/// <summary>A started service process.</summary>
/// <param name="Dll">The service's entry assembly and <paramref name="Env"/> its environment, to start it again.</param>
public sealed record RunningService(string Name, int Pid, string GrpcUrl, string HttpUrl, string LogFile, string SpanFile, string? Dll = null, Dictionary<string, string>? Env = null);

/// <summary>What <c>rmesh up</c> started; saved as state.json so <c>down</c> and the other commands find it.</summary>
public sealed record MeshState(string RedisConnection, int? RedisPid, List<RunningService> Services)
{
    public RunningService Service(string name) => Services.First(s => s.Name == name);

    public static string PathIn(string stateDir) => Path.Combine(stateDir, "state.json");

    public static MeshState? TryLoad(string stateDir)
    {
        var path = PathIn(stateDir);
        return File.Exists(path) ? JsonSerializer.Deserialize<MeshState>(File.ReadAllText(path)) : null;
    }
}

/// <summary>Starts and stops the local mesh: redis-server and every project service of tye.yaml as real processes.</summary>
public static class MeshLauncher
{
    public static async Task<MeshState> UpAsync(MeshTopology topology, LaunchOptions options, TextWriter log, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(options.StateDir);
        var logs = Directory.CreateDirectory(Path.Combine(options.StateDir, "logs")).FullName;
        var spans = Directory.CreateDirectory(Path.Combine(options.StateDir, "spans")).FullName;

        int? redisPid = null;
        var redis = options.RedisConnection;
        if (string.IsNullOrWhiteSpace(redis))
        {
            var port = FreePort();
            var dir = Path.Combine(options.StateDir, "redis");
            if (!options.KeepData && Directory.Exists(dir))
            {
                // A local run starts from an empty market and no plans, unless asked to keep the last run's data.
                Directory.Delete(dir, recursive: true);
            }

            Directory.CreateDirectory(dir);
            redisPid = StartDetached("redis-server", ["--port", port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", dir], Path.Combine(logs, "redis.log"), new Dictionary<string, string>());
            redis = $"127.0.0.1:{port}";
            await WaitForRedisAsync(port, redisPid.Value, cancellationToken);
            log.WriteLine($"redis      {redis} (pid {redisPid})");
        }

        var services = topology.Projects.ToList();
        var ports = services.ToDictionary(
            s => s.Name,
            s => (Grpc: options.FreePorts ? FreePort() : s.Binding("grpc")!.Port, Http: options.FreePorts ? FreePort() : s.Binding("http")!.Port));
        foreach (var (name, (grpc, http)) in ports)
        {
            EnsurePortFree(grpc, name);
            EnsurePortFree(http, name);
        }

        var state = new MeshState(redis, redisPid, []);
        foreach (var service in services)
        {
            var dll = await EnsureBuiltAsync(options, service, log, cancellationToken);
            var (grpc, http) = ports[service.Name];
            var env = ServiceEnvironment(grpc, http, redis, Path.Combine(spans, service.Name + ".jsonl"), service.Name + "-1");
            foreach (var other in services)
            {
                env[$"Services__{other.Name}__Grpc"] = $"http://127.0.0.1:{ports[other.Name].Grpc}";
            }

            foreach (var variable in service.Env)
            {
                env[variable.Name] = variable.Value;
            }

            foreach (var (key, value) in options.ExtraEnv ?? new Dictionary<string, string>())
            {
                env[key] = value;
            }

            var logFile = Path.Combine(logs, service.Name + ".log");
            var pid = StartDetached("dotnet", [dll], logFile, env);
            state.Services.Add(new RunningService(service.Name, pid, $"http://127.0.0.1:{grpc}", $"http://127.0.0.1:{http}", logFile, env["Telemetry__SpanFile"], dll, env));
        }

        await File.WriteAllTextAsync(MeshState.PathIn(options.StateDir), JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }), cancellationToken);
        try
        {
            await Task.WhenAll(state.Services.Select(s => WaitHealthyAsync(s, cancellationToken)));
        }
        catch
        {
            Down(options.StateDir, TextWriter.Null);
            throw;
        }

        foreach (var service in state.Services)
        {
            log.WriteLine($"{service.Name,-10} gRPC {service.GrpcUrl}  HTTP {service.HttpUrl}  (pid {service.Pid}, log {Path.GetRelativePath(options.RepoRoot, service.LogFile)})");
        }

        return state;
    }

    /// <summary>
    /// The environment a locally run service needs: its gRPC (HTTP/2) and HTTP/1.1 endpoints on loopback, the Redis
    /// connection, the span file and its instance id.
    /// </summary>
    public static Dictionary<string, string> ServiceEnvironment(int grpcPort, int httpPort, string redis, string spanFile, string instanceId) => new()
    {
        ["ASPNETCORE_ENVIRONMENT"] = "Development",
        ["DOTNET_ENVIRONMENT"] = "Development",
        ["Kestrel__Endpoints__Grpc__Url"] = $"http://127.0.0.1:{grpcPort}",
        ["Kestrel__Endpoints__Grpc__Protocols"] = "Http2",
        ["Kestrel__Endpoints__Http__Url"] = $"http://127.0.0.1:{httpPort}",
        ["Kestrel__Endpoints__Http__Protocols"] = "Http1",
        ["ConnectionStrings__redis"] = redis,
        ["Telemetry__SpanFile"] = spanFile,
        ["Mesh__InstanceId"] = instanceId,
    };

    /// <summary>Stops everything state.json lists: SIGTERM, then SIGKILL after 10 s.</summary>
    public static void Down(string stateDir, TextWriter log)
    {
        var state = MeshState.TryLoad(stateDir);
        if (state is null)
        {
            log.WriteLine("Nothing is running (no state file).");
            return;
        }

        var pids = state.Services.Select(s => (s.Name, s.Pid)).ToList();
        if (state.RedisPid is { } redisPid)
        {
            pids.Add(("redis", redisPid));
        }

        foreach (var (name, pid) in pids)
        {
            Stop(pid);
            log.WriteLine($"stopped {name} (pid {pid})");
        }

        File.Delete(MeshState.PathIn(stateDir));
    }

    /// <summary>
    /// Kills one service at once (SIGKILL: no graceful shutdown, as a crash or an evicted pod), starts it again with
    /// the same assembly, ports and environment, and waits until it is ready. Returns the mesh state with its new pid.
    /// </summary>
    public static async Task<MeshState> RestartAsync(string stateDir, string name, CancellationToken cancellationToken)
    {
        var state = MeshState.TryLoad(stateDir) ?? throw new InvalidOperationException("Nothing is running (no state file).");
        var service = state.Service(name);
        if (service.Dll is null || service.Env is null)
        {
            throw new InvalidOperationException($"{name} was started without what it takes to start it again.");
        }

        Kill(service.Pid);
        var restarted = service with { Pid = StartDetached("dotnet", [service.Dll], service.LogFile, service.Env) };
        state.Services[state.Services.IndexOf(service)] = restarted;
        await File.WriteAllTextAsync(MeshState.PathIn(stateDir), JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }), cancellationToken);
        await WaitHealthyAsync(restarted, cancellationToken);
        return state;
    }

    /// <summary>SIGKILL, then waits for the process to be gone.</summary>
    public static void Kill(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            process.Kill(entireProcessTree: true);
            process.WaitForExit(TimeSpan.FromSeconds(10));
        }
        catch (ArgumentException)
        {
            // already gone
        }
    }

    /// <summary>Stops one process gracefully, killing it when it does not exit within 10 seconds.</summary>
    public static void Stop(int pid)
    {
        Process process;
        try
        {
            process = Process.GetProcessById(pid);
        }
        catch (ArgumentException)
        {
            return; // already gone
        }

        using (process)
        {
            using var term = Process.Start("kill", ["-TERM", pid.ToString()]);
            term.WaitForExit();
            if (!process.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit(TimeSpan.FromSeconds(5));
            }
        }
    }

    /// <summary>Starts a process in its own session with output appended to a log file; it outlives this CLI.</summary>
    private static int StartDetached(string program, IReadOnlyList<string> arguments, string logFile, IReadOnlyDictionary<string, string> env)
    {
        var command = "exec setsid " + Quote(program) + " " + string.Join(' ', arguments.Select(Quote)) + " >> " + Quote(logFile) + " 2>&1 < /dev/null";
        var start = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        foreach (var (key, value) in env)
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}.");
        return process.Id;
    }

    private static string Quote(string value) => "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static async Task<string> EnsureBuiltAsync(LaunchOptions options, TopologyService service, TextWriter log, CancellationToken cancellationToken)
    {
        var project = Path.GetFullPath(Path.Combine(options.RepoRoot, service.Project!));
        var name = Path.GetFileNameWithoutExtension(project);
        var dll = Path.Combine(Path.GetDirectoryName(project)!, "bin", options.Configuration, "net10.0", name + ".dll");
        if (File.Exists(dll))
        {
            return dll;
        }

        log.WriteLine($"building {name} …");
        using var build = Process.Start(new ProcessStartInfo("dotnet", ["build", project, "-c", options.Configuration, "--nologo", "-v", "quiet"]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("Could not start dotnet build.");
        await build.WaitForExitAsync(cancellationToken);
        if (build.ExitCode != 0 || !File.Exists(dll))
        {
            throw new InvalidOperationException($"Building {project} failed.");
        }

        return dll;
    }

    private static async Task WaitHealthyAsync(RunningService service, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (DateTime.UtcNow < deadline)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!IsAlive(service.Pid))
            {
                throw new InvalidOperationException($"{service.Name} exited during start-up:{Environment.NewLine}{Tail(service.LogFile, 30)}");
            }

            try
            {
                using var response = await http.GetAsync(service.HttpUrl + "/health/ready", cancellationToken);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // probe timed out
            }

            await Task.Delay(200, cancellationToken);
        }

        throw new TimeoutException($"{service.Name} did not become ready within 90 s:{Environment.NewLine}{Tail(service.LogFile, 30)}");
    }

    private static async Task WaitForRedisAsync(int port, int pid, CancellationToken cancellationToken)
    {
        for (var i = 0; i < 100; i++)
        {
            if (!IsAlive(pid))
            {
                throw new InvalidOperationException("redis-server exited at start; is it installed? (apt-get install -y redis-server)");
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, port, cancellationToken);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(100, cancellationToken);
            }
        }

        throw new TimeoutException("redis-server did not start listening.");
    }

    public static bool IsAlive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static void EnsurePortFree(int port, string service)
    {
        try
        {
            var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            listener.Stop();
        }
        catch (SocketException)
        {
            throw new InvalidOperationException($"Port {port} for {service} is in use. Is the mesh already up? Run `rmesh down`, or `rmesh up --free-ports`.");
        }
    }

    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string Tail(string path, int lines) =>
        File.Exists(path) ? string.Join(Environment.NewLine, File.ReadLines(path).TakeLast(lines)) : "(no log)";
}
