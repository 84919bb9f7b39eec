using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;
using Xunit;

namespace RebalanceMesh.Testing;

/// <summary>
/// A real redis-server on a free loopback port, in its own temporary directory, for one test class or
/// collection. Scripts install redis-server (scripts/ensure-tools.sh); a missing server fails loudly.
/// </summary>
public sealed class RedisServer : IAsyncLifetime
{
    private Process? _process;
    private string? _directory;

    public int Port { get; private set; }

    public string ConnectionString => $"127.0.0.1:{Port},abortConnect=false";

    public ConnectionMultiplexer? Connection { get; private set; }

    /// <summary>Whether to keep an append-only file, for restart tests.</summary>
    public bool AppendOnly { get; init; }

    public async Task InitializeAsync() => await StartAsync();

    public async Task StartAsync()
    {
        _directory ??= Directory.CreateTempSubdirectory("rmesh-redis-").FullName;
        Port = Port == 0 ? FreePort() : Port;
        var start = new ProcessStartInfo("redis-server")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in new[] { "--port", Port.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", AppendOnly ? "yes" : "no", "--dir", _directory })
        {
            start.ArgumentList.Add(argument);
        }

        try
        {
            _process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start.");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException("redis-server is not installed; run scripts/ensure-tools.sh redis.", ex);
        }

        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        for (var i = 0; i < 100; i++)
        {
            try
            {
                Connection = await ConnectionMultiplexer.ConnectAsync($"127.0.0.1:{Port},allowAdmin=true");
                return;
            }
            catch (RedisConnectionException)
            {
                await Task.Delay(50);
            }
        }

        throw new TimeoutException("redis-server did not accept connections.");
    }

    /// <summary>Stops the server (SIGKILL), keeping its directory and port for <see cref="StartAsync"/>.</summary>
    public async Task StopAsync()
    {
        if (Connection is not null)
        {
            await Connection.DisposeAsync();
            Connection = null;
        }

        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process?.Dispose();
        _process = null;
    }

    public async Task FlushAsync() => await Connection!.GetServer("127.0.0.1", Port).FlushAllDatabasesAsync();

    public async Task DisposeAsync()
    {
        await StopAsync();
        if (_directory is not null && Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
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
}
