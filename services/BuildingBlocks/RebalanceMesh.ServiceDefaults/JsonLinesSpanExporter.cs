using System.Diagnostics;
using System.Text;
using System.Text.Json;
using OpenTelemetry;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Writes finished spans as JSON lines to a local file. Enabled by <c>Telemetry:SpanFile</c> for
/// local runs without a collector: <c>rmesh trace</c> and the integration tests read these files
/// to show and check one trace across the four services. The file is capped and rotated (<see cref="RotatingFileWriter"/>:
/// Telemetry:SpanFileMaxBytes, Telemetry:SpanFileKeep), so a long run keeps its latest spans, not all of them.
/// </summary>
public sealed class JsonLinesSpanExporter : BaseExporter<Activity>
{
    private readonly string _serviceName;
    private readonly RotatingFileWriter _writer;
    private readonly Lock _gate = new();

    public JsonLinesSpanExporter(string path, string serviceName, long maxBytes, int keep)
    {
        _serviceName = serviceName;
        _writer = new RotatingFileWriter(path, maxBytes, keep);
    }

    public override ExportResult Export(in Batch<Activity> batch)
    {
        lock (_gate)
        {
            foreach (var activity in batch)
            {
                _writer.WriteLine(Serialize(activity));
            }

            _writer.Flush();
        }

        return ExportResult.Success;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_gate)
            {
                _writer.Dispose();
            }
        }

        base.Dispose(disposing);
    }

    private string Serialize(Activity activity)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("service", _serviceName);
            json.WriteString("traceId", activity.TraceId.ToHexString());
            json.WriteString("spanId", activity.SpanId.ToHexString());
            json.WriteString("parentSpanId", activity.ParentSpanId == default ? string.Empty : activity.ParentSpanId.ToHexString());
            json.WriteString("name", activity.DisplayName);
            json.WriteString("kind", activity.Kind.ToString());
            json.WriteString("source", activity.Source.Name);
            json.WriteString("start", activity.StartTimeUtc.ToString("O"));
            json.WriteNumber("durationMs", activity.Duration.TotalMilliseconds);
            json.WriteString("status", activity.Status.ToString());
            json.WriteStartObject("tags");
            foreach (var tag in activity.TagObjects)
            {
                json.WriteString(tag.Key, Convert.ToString(tag.Value, System.Globalization.CultureInfo.InvariantCulture));
            }

            json.WriteEndObject();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
