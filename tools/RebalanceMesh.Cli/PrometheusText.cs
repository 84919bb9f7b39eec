using System.Globalization;

namespace RebalanceMesh.Cli;

/// <summary>One sample of the Prometheus text format: a series name, its labels and its value.</summary>
public sealed record MetricSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public string Label(string name) => Labels.TryGetValue(name, out var value) ? value : string.Empty;
}

/// <summary>
/// Reads what the services' /metrics endpoints answer (Prometheus text exposition format 0.0.4), and the two
/// computations a live view needs from two scrapes: a counter's rate and a histogram's quantile over the interval.
/// </summary>
public static class PrometheusText
{
    /// <summary>The samples of an exposition; comments, blank and malformed lines are skipped.</summary>
    public static IReadOnlyList<MetricSample> Parse(string text)
    {
        var samples = new List<MetricSample>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            var brace = line.IndexOf('{', StringComparison.Ordinal);
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            string name;
            string rest;
            if (brace >= 0 && (space < 0 || brace < space))
            {
                name = line[..brace];
                var end = ReadLabels(line, brace + 1, labels);
                if (end < 0)
                {
                    continue;
                }

                rest = line[(end + 1)..];
            }
            else if (space > 0)
            {
                name = line[..space];
                rest = line[space..];
            }
            else
            {
                continue;
            }

            var value = rest.Trim().Split(' ')[0];
            var parsed = value switch
            {
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                _ => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : double.NaN,
            };
            if (!double.IsNaN(parsed) || value == "NaN")
            {
                samples.Add(new MetricSample(name, labels, parsed));
            }
        }

        return samples;
    }

    /// <summary>
    /// The q-quantile of the observations a histogram gained between two scrapes (the buckets' differences), linear
    /// within the bucket it falls in, as PromQL's histogram_quantile; NaN without observations. A quantile in the +Inf
    /// bucket is the largest finite bound.
    /// </summary>
    public static double Quantile(double q, IReadOnlyList<(double UpperBound, double Count)> before, IReadOnlyList<(double UpperBound, double Count)> after)
    {
        var earlier = before.ToDictionary(b => b.UpperBound, b => b.Count);
        var buckets = after.OrderBy(b => b.UpperBound).Select(b => (b.UpperBound, Count: b.Count - earlier.GetValueOrDefault(b.UpperBound))).ToArray();
        if (buckets.Length == 0 || buckets[^1].Count <= 0)
        {
            return double.NaN;
        }

        var rank = q * buckets[^1].Count;
        var lower = 0.0;
        var below = 0.0;
        foreach (var (bound, count) in buckets)
        {
            if (count >= rank)
            {
                if (double.IsPositiveInfinity(bound))
                {
                    return lower;
                }

                return count == below ? bound : lower + ((bound - lower) * (rank - below) / (count - below));
            }

            lower = double.IsPositiveInfinity(bound) ? lower : bound;
            below = count;
        }

        return lower;
    }

    /// <summary>Reads labels from after the '{' to the closing '}'; returns the index of that '}', or -1 when malformed.</summary>
    private static int ReadLabels(string line, int at, Dictionary<string, string> labels)
    {
        while (at < line.Length)
        {
            if (line[at] == '}')
            {
                return at;
            }

            var equals = line.IndexOf('=', at);
            if (equals < 0 || equals + 1 >= line.Length || line[equals + 1] != '"')
            {
                return -1;
            }

            var key = line[at..equals].Trim().TrimStart(',').Trim();
            var value = new System.Text.StringBuilder();
            var i = equals + 2;
            for (; i < line.Length && line[i] != '"'; i++)
            {
                if (line[i] == '\\' && i + 1 < line.Length)
                {
                    i++;
                    value.Append(line[i] switch { 'n' => '\n', var c => c });
                }
                else
                {
                    value.Append(line[i]);
                }
            }

            if (i >= line.Length)
            {
                return -1;
            }

            labels[key] = value.ToString();
            at = i + 1;
            if (at < line.Length && line[at] == ',')
            {
                at++;
            }
        }

        return -1;
    }
}
