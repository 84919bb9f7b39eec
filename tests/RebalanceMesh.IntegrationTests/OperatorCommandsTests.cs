using RebalanceMesh.Cli;
using RebalanceMesh.ServiceDefaults;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// What an operator does to a running local mesh: `rmesh restart SERVICE`, `rmesh logs SERVICE [-f]`; and what the
/// services do to stay within their disk: logs and span files capped and rotated.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class OperatorCommandsTests(ITestOutputHelper output) : MeshTest(output)
{
    private const long LogCap = 4 * 1024;
    private const long SpanCap = 64 * 1024;

    protected override IReadOnlyDictionary<string, string>? ExtraEnv { get; } = new Dictionary<string, string>
    {
        ["Telemetry__LogFileMaxBytes"] = LogCap.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Telemetry__LogFileKeep"] = "2",
        ["Telemetry__SpanFileMaxBytes"] = SpanCap.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Telemetry__SpanFileKeep"] = "1",
    };

    [Fact]
    public async Task A_restarted_service_serves_again_is_stopped_by_down_and_every_file_stays_within_its_cap()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var demo = await new DemoRunner(Mesh, Path.Combine(StateDir, "spans"), new StringWriter()).RunAsync("ops", cancel.Token);
        Assert.Equal(RebalanceMesh.Contracts.Planning.V1.PlanStatus.Completed, demo.Plan.Status);

        // Restart: stopped gracefully (its log says so), started again on the same ports, recorded in the state.
        var before = Mesh.Service("risk");
        var state = await MeshLauncher.RestartGracefullyAsync(StateDir, "risk", cancel.Token);
        var after = state.Service("risk");
        Assert.NotEqual(before.Pid, after.Pid);
        Assert.False(MeshLauncher.IsAlive(before.Pid));
        Assert.True(MeshLauncher.IsAlive(after.Pid));
        Assert.Equal((before.GrpcUrl, before.HttpUrl), (after.GrpcUrl, after.HttpUrl));
        Assert.Equal(after.Pid, MeshState.TryLoad(StateDir)!.Service("risk").Pid);
        var log = ServiceLogs.ReadAll(after.LogFile).ToArray();
        Assert.Contains(log, l => l.Contains("Application is shutting down", StringComparison.Ordinal));
        Assert.Equal(2, log.Count(l => l.Contains("\"Message\":\"Now listening on: " + after.GrpcUrl, StringComparison.Ordinal)));

        // It serves: the same call answers as before the restart.
        using var channel = Mesh.ServiceChannel("risk");
        var risk = new RebalanceMesh.Contracts.Risk.V1.RiskService.RiskServiceClient(channel.WithDefaultDeadline());
        var assessed = await risk.AssessPortfolioAsync(new RebalanceMesh.Contracts.Risk.V1.AssessPortfolioRequest { PortfolioId = "ops" }, cancellationToken: cancel.Token);
        Assert.True(assessed.NetValue > 0);

        // Restarting a service the mesh does not run says what it runs.
        var unknown = await Assert.ThrowsAsync<InvalidOperationException>(() => MeshLauncher.RestartGracefullyAsync(StateDir, "riks", cancel.Token));
        Assert.Contains("risk", unknown.Message, StringComparison.Ordinal);

        // Every service's log and span file stayed within its cap (a line past it at most), with at most the kept older
        // files beside it; the busiest rotated.
        foreach (var service in state.Services)
        {
            var logs = ServiceLogs.Files(service.LogFile);
            Assert.InRange(logs.Count, 1, 3);
            Assert.All(logs, f => Assert.InRange(new FileInfo(f).Length, 0, LogCap + 4 * 1024));
            var spans = Directory.EnumerateFiles(Path.GetDirectoryName(service.SpanFile)!, Path.GetFileNameWithoutExtension(service.SpanFile) + "*.jsonl")
                .Where(f => Path.GetFileName(f) == Path.GetFileName(service.SpanFile) || Path.GetFileName(f) == Path.GetFileName(RotatingFileWriter.RotatedPath(service.SpanFile, 1)))
                .ToArray();
            Assert.False(File.Exists(RotatingFileWriter.RotatedPath(service.SpanFile, 2)));
            Assert.All(spans, f => Assert.InRange(new FileInfo(f).Length, 0, SpanCap + 8 * 1024));
        }

        foreach (var service in state.Services)
        {
            Output.WriteLine($"{service.Name}: log {string.Join(", ", ServiceLogs.Files(service.LogFile).Select(f => $"{Path.GetFileName(f)} {new FileInfo(f).Length} B"))}");
        }

        Assert.Contains(state.Services, s => File.Exists(RotatingFileWriter.RotatedPath(s.LogFile, 1)));

        // Down stops the restarted process, not only the ones `up` started.
        MeshLauncher.Down(StateDir, TextWriter.Null);
        Assert.False(MeshLauncher.IsAlive(after.Pid));
    }
}

/// <summary>`rmesh logs -f` on a file its service rotates.</summary>
public sealed class ServiceLogsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("rmesh-logs-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task Following_a_log_prints_each_line_once_across_a_rotation()
    {
        var path = Path.Combine(_directory, "planning.log");
        using var writer = new RotatingFileWriter(path, maxBytes: 1024, keep: 3) { AutoFlush = true };
        static string Line(int i) => $"{{\"n\":{i:D4},\"pad\":\"{new string('p', 80)}\"}}";
        for (var i = 0; i < 15; i++)
        {
            writer.WriteLine(Line(i)); // rotates once, after the 11th line
        }

        // Lines written after the tail, the file rotating once more among them: each printed once, in order. They are
        // written the moment the tail's last line is printed, before following has begun: the rotation falls between
        // printing the tail and following, which used to reopen the log by its name and skip the rotated lines.
        var allPrinted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var printed = new SynchronizedWriter(afterLine: count =>
        {
            if (count == 5)
            {
                for (var i = 15; i < 30; i++)
                {
                    writer.WriteLine(Line(i));
                }
            }

            if (count == 20)
            {
                allPrinted.TrySetResult();
            }
        });
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var follow = ServiceLogs.PrintAsync(path, lines: 5, follow: true, printed, cancel.Token);

        // Until the twentieth line is printed, or following ends (cancelled after 60 s): the assertions say what came.
        await Task.WhenAny(allPrinted.Task, follow);

        Assert.Equal(1 + 1, writer.Rotations);
        await cancel.CancelAsync();
        await follow;

        // The last five lines across the rotated file and the current one, then every line after.
        Assert.Equal(Enumerable.Range(10, 20).Select(Line), printed.Lines);
    }

    private sealed class SynchronizedWriter(Action<int> afterLine) : StringWriter
    {
        private readonly List<string> _lines = [];

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_lines)
                {
                    return [.. _lines];
                }
            }
        }

        public override void WriteLine(string? value)
        {
            int count;
            lock (_lines)
            {
                _lines.Add(value ?? string.Empty);
                count = _lines.Count;
            }

            afterLine(count);
        }
    }
}
