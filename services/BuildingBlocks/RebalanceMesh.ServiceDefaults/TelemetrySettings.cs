using Microsoft.Extensions.Configuration;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// The Telemetry section every host reads: how many traces are kept, what is written locally and how large it may grow.
/// </summary>
/// <param name="SampleRatio">Telemetry:SampleRatio — share of traces begun here that are recorded, 0…1 (default 1: all).
/// Spans whose parent was sampled elsewhere are always recorded, so a trace is whole or absent.</param>
/// <param name="RedisCommands">Telemetry:RedisCommands — a span per Redis command (default off).</param>
/// <param name="Prometheus">Telemetry:Prometheus — the /metrics scrape endpoint (default on).</param>
/// <param name="SpanFile">Telemetry:SpanFile — a JSON-lines span file (local runs without a collector).</param>
/// <param name="SpanFileMaxBytes">Telemetry:SpanFileMaxBytes — the span file's size before it rotates (default 32 MiB).</param>
/// <param name="SpanFileKeep">Telemetry:SpanFileKeep — rotated span files kept (default 3).</param>
/// <param name="LogFile">Telemetry:LogFile — the JSON log written to this capped, rotated file instead of stdout.</param>
/// <param name="LogFileMaxBytes">Telemetry:LogFileMaxBytes — the log file's size before it rotates (default 32 MiB).</param>
/// <param name="LogFileKeep">Telemetry:LogFileKeep — rotated log files kept (default 3).</param>
public sealed record TelemetrySettings(
    double SampleRatio,
    bool RedisCommands,
    bool Prometheus,
    string? SpanFile,
    long SpanFileMaxBytes,
    int SpanFileKeep,
    string? LogFile,
    long LogFileMaxBytes,
    int LogFileKeep)
{
    public const long DefaultMaxBytes = 32L * 1024 * 1024;

    public const int DefaultKeep = 3;

    /// <summary>Reads the section; a ratio outside 0…1 or a negative size is a configuration error, refused at start.</summary>
    public static TelemetrySettings From(IConfiguration configuration)
    {
        var section = configuration.GetSection("Telemetry");
        var ratio = section.GetValue("SampleRatio", 1.0);
        if (!(ratio is >= 0 and <= 1))
        {
            throw new InvalidOperationException($"Telemetry:SampleRatio must be within 0 and 1; it is {ratio}.");
        }

        static string? PathOf(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
        long Size(string key)
        {
            var size = section.GetValue(key, DefaultMaxBytes);
            return size > 0 ? size : throw new InvalidOperationException($"Telemetry:{key} must be positive; it is {size}.");
        }

        int Keep(string key)
        {
            var keep = section.GetValue(key, DefaultKeep);
            return keep >= 0 ? keep : throw new InvalidOperationException($"Telemetry:{key} must not be negative; it is {keep}.");
        }

        return new TelemetrySettings(
            ratio,
            section.GetValue("RedisCommands", false),
            section.GetValue("Prometheus", true),
            PathOf(section["SpanFile"]),
            Size("SpanFileMaxBytes"),
            Keep("SpanFileKeep"),
            PathOf(section["LogFile"]),
            Size("LogFileMaxBytes"),
            Keep("LogFileKeep"));
    }
}
