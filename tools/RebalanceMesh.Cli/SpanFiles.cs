using System.Text.Json;

namespace RebalanceMesh.Cli;

/// <summary>One span as the services' JSON-lines span exporter writes it.</summary>
public sealed record SpanRecord(string Service, string TraceId, string SpanId, string ParentSpanId, string Name, string Kind, string Source, DateTime Start, double DurationMs)
{
    /// <summary>Redis client spans: counted, not printed, in the tree.</summary>
    public bool IsRedisCall => Source.Contains("StackExchangeRedis", StringComparison.Ordinal);
}

/// <summary>Reads the local span files to show one trace across the services.</summary>
public static class SpanFiles
{
    public static IReadOnlyList<SpanRecord> ReadTrace(string spansDirectory, string traceId)
    {
        if (!Directory.Exists(spansDirectory))
        {
            return [];
        }

        var spans = new List<SpanRecord>();
        foreach (var file in Directory.EnumerateFiles(spansDirectory, "*.jsonl"))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            while (reader.ReadLine() is { } line)
            {
                if (!line.Contains(traceId, StringComparison.Ordinal))
                {
                    continue;
                }

                try
                {
                    var json = JsonDocument.Parse(line).RootElement;
                    if (json.GetProperty("traceId").GetString() != traceId)
                    {
                        continue;
                    }

                    spans.Add(new SpanRecord(
                        json.GetProperty("service").GetString()!,
                        traceId,
                        json.GetProperty("spanId").GetString()!,
                        json.GetProperty("parentSpanId").GetString()!,
                        json.GetProperty("name").GetString()!,
                        json.GetProperty("kind").GetString()!,
                        json.GetProperty("source").GetString()!,
                        json.GetProperty("start").GetDateTime(),
                        json.GetProperty("durationMs").GetDouble()));
                }
                catch (JsonException)
                {
                    // a line being written right now
                }
            }
        }

        return spans.OrderBy(s => s.Start).ToArray();
    }

    /// <summary>Prints the spans as a tree (children under parents), one line each.</summary>
    public static void PrintTree(IReadOnlyList<SpanRecord> allSpans, TextWriter output, int maxLines = 60)
    {
        var spans = allSpans.Where(s => !s.IsRedisCall).ToArray();
        var ids = spans.Select(s => s.SpanId).ToHashSet();
        var children = spans.ToLookup(s => ids.Contains(s.ParentSpanId) ? s.ParentSpanId : string.Empty);
        var lines = 0;

        void Print(SpanRecord span, int depth)
        {
            if (lines++ >= maxLines)
            {
                return;
            }

            output.WriteLine($"{new string(' ', depth * 2)}{span.Service,-10} {span.Kind,-8} {span.Name} ({span.DurationMs:F1} ms)");
            foreach (var child in children[span.SpanId].OrderBy(c => c.Start))
            {
                Print(child, depth + 1);
            }
        }

        foreach (var root in children[string.Empty].OrderBy(s => s.Start))
        {
            Print(root, 0);
        }

        if (lines > maxLines)
        {
            output.WriteLine($"… {lines - maxLines} more spans");
        }

        output.WriteLine($"(and {allSpans.Count - spans.Length} Redis calls)");
    }
}
