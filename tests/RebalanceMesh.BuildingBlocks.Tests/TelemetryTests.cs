using System.Diagnostics;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Trace;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.BuildingBlocks.Tests;

/// <summary>Bounded telemetry: traces sampled whole, span and log files capped and rotated.</summary>
public sealed class TelemetryTests : IDisposable
{
    private const string ProbeSource = "TelemetryTests.SamplingProbe";

    private readonly string _directory = Directory.CreateTempSubdirectory("rmesh-telemetry-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void A_file_rotates_at_its_cap_keeps_the_newest_files_and_never_splits_a_line()
    {
        var path = Path.Combine(_directory, "planning.log");
        using (var writer = new RotatingFileWriter(path, maxBytes: 1024, keep: 2))
        {
            // 100 lines of 100 bytes (99 characters and the newline): ten lines fill 1,000 bytes, the eleventh passes the
            // cap and ends the file, so each file holds 11 lines (1,100 bytes) and the last one the rest.
            for (var i = 0; i < 100; i++)
            {
                writer.Write($"{i:D4}{new string('x', 95)}\n");
            }

            Assert.Equal(9, writer.Rotations); // 100 = 9 × 11 + 1
        }

        Assert.Equal(["planning.1.log", "planning.2.log", "planning.log"], Directory.EnumerateFiles(_directory).Select(Path.GetFileName).Order());
        Assert.Equal(["0099"], File.ReadAllLines(path).Select(l => l[..4]));
        Assert.Equal(Enumerable.Range(88, 11).Select(i => i.ToString("D4")), File.ReadAllLines(RotatingFileWriter.RotatedPath(path, 1)).Select(l => l[..4]));
        Assert.Equal(Enumerable.Range(77, 11).Select(i => i.ToString("D4")), File.ReadAllLines(RotatingFileWriter.RotatedPath(path, 2)).Select(l => l[..4]));
        Assert.All(Directory.EnumerateFiles(_directory).SelectMany(File.ReadAllLines), line => Assert.Equal(99, line.Length));
    }

    [Fact]
    public void A_writer_reopened_on_a_full_file_counts_what_it_holds_and_concurrent_writers_keep_lines_whole()
    {
        var path = Path.Combine(_directory, "spans.jsonl");
        File.WriteAllText(path, new string('y', 2047) + "\n");
        using (var writer = new RotatingFileWriter(path, maxBytes: 2048, keep: 1))
        {
            writer.WriteLine("first"); // the file already held 2,048 bytes: this line ends it
            Assert.Equal(1, writer.Rotations);
            Parallel.For(0, 8, thread =>
            {
                for (var i = 0; i < 500; i++)
                {
                    writer.WriteLine($"{{\"thread\":{thread},\"i\":{i:D3}}}");
                }
            });
        }

        // Two files at most, each line one whole JSON object, the newest lines in the current file.
        Assert.Equal(2, Directory.EnumerateFiles(_directory).Count());
        var lines = File.ReadAllLines(RotatingFileWriter.RotatedPath(path, 1)).Concat(File.ReadAllLines(path)).ToArray();
        Assert.All(lines, l => Assert.Matches("^\\{\"thread\":[0-7],\"i\":[0-9]{3}\\}$", l));
        Assert.True(new FileInfo(path).Length < 2048 + 32);
    }

    [Fact]
    public void Roots_are_sampled_at_the_configured_ratio_and_children_follow_their_parent()
    {
        var recorded = new List<Activity>();

        // The provider also listens to the mesh's own sources, which tests running beside this one use: only the probe's
        // spans are this test's.
        Activity[] Probe() => recorded.Where(a => a.Source.Name == ProbeSource).ToArray();
        TracerProvider Provider(double ratio)
        {
            var builder = WebApplication.CreateBuilder();
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Telemetry:SampleRatio"] = ratio.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            builder.AddServiceDefaults("telemetry-test");
            // A source only this provider listens to: listeners are process-wide, and another test's host sampling
            // everything would record these spans for every provider (the decision is the most permissive listener's).
            builder.Services.ConfigureOpenTelemetryTracerProvider(tracing => tracing.AddSource(ProbeSource).AddInMemoryExporter(recorded));
            return builder.Build().Services.GetRequiredService<TracerProvider>();
        }

        using var source = new ActivitySource(ProbeSource);
        var sampledParent = new ActivityContext(ActivityTraceId.CreateRandom(), ActivitySpanId.CreateRandom(), ActivityTraceFlags.Recorded, isRemote: true);
        var droppedParent = new ActivityContext(ActivityTraceId.CreateRandom(), ActivitySpanId.CreateRandom(), ActivityTraceFlags.None, isRemote: true);

        using (var none = Provider(0))
        {
            using (source.StartActivity("root"))
            {
            }

            // A call that arrives sampled (its traceparent says so) is recorded whatever the ratio: its trace stays whole.
            using (var child = source.StartActivity("child of a sampled caller", ActivityKind.Server, sampledParent))
            {
                using (source.StartActivity("its own child"))
                {
                }
            }

            none.ForceFlush();
        }

        Assert.Equal(["its own child", "child of a sampled caller"], Probe().Select(a => a.DisplayName));
        Assert.All(Probe(), a => Assert.Equal(sampledParent.TraceId, a.TraceId));
        recorded.Clear();

        using (var all = Provider(1))
        {
            using (source.StartActivity("root"))
            {
            }

            using (source.StartActivity("child of a caller that dropped its trace", ActivityKind.Server, droppedParent))
            {
            }

            all.ForceFlush();
        }

        Assert.Equal(["root"], Probe().Select(a => a.DisplayName));
    }

    [Theory]
    [InlineData("Telemetry:SampleRatio", "1.5")]
    [InlineData("Telemetry:SampleRatio", "-0.1")]
    [InlineData("Telemetry:SampleRatio", "NaN")]
    [InlineData("Telemetry:SpanFileMaxBytes", "0")]
    [InlineData("Telemetry:LogFileKeep", "-1")]
    public void Settings_out_of_range_are_refused_at_start(string key, string value)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [key] = value }).Build();
        var refused = Assert.Throws<InvalidOperationException>(() => TelemetrySettings.From(configuration));
        Assert.Contains(key, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Defaults_keep_every_trace_and_cap_each_file_at_32_MiB_with_three_older_ones()
    {
        var settings = TelemetrySettings.From(new ConfigurationBuilder().Build());
        Assert.Equal(new TelemetrySettings(1.0, false, true, null, 32L << 20, 3, null, 32L << 20, 3), settings);
    }
}
