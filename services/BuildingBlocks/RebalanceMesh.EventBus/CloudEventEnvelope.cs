using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;

namespace RebalanceMesh.EventBus;

/// <summary>
/// A CloudEvent 1.0 in JSON structured mode, as Dapr writes and delivers it: the protobuf message is the
/// <c>data</c> object in protobuf's JSON mapping, and the W3C trace context rides in <c>traceparent</c>.
/// Every adapter builds and reads events through this one type.
/// </summary>
public sealed record CloudEventEnvelope(
    string Id,
    string Source,
    string Type,
    string Topic,
    string PubSubName,
    DateTimeOffset Time,
    string? TraceParent,
    string? TraceState,
    JsonNode? Data)
{
    /// <summary>Media type of a structured-mode CloudEvent.</summary>
    public const string MediaType = "application/cloudevents+json";

    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    /// <summary>Wraps <paramref name="message"/>; the trace context comes from the current activity.</summary>
    public static CloudEventEnvelope Create(IMessage message, string topic, string pubSubName, string source, DateTimeOffset now)
    {
        var activity = Activity.Current;
        return new CloudEventEnvelope(
            Id: Guid.NewGuid().ToString("N"),
            Source: source,
            Type: message.Descriptor.FullName,
            Topic: topic,
            PubSubName: pubSubName,
            Time: now,
            TraceParent: activity is null ? null : activity.Id,
            TraceState: activity?.TraceStateString,
            Data: JsonNode.Parse(Formatter.Format(message)));
    }

    /// <summary>Serialises the envelope as the JSON object stored in the stream's <c>data</c> field.</summary>
    public byte[] ToJsonBytes()
    {
        var json = new JsonObject
        {
            ["specversion"] = "1.0",
            ["id"] = Id,
            ["source"] = Source,
            ["type"] = Type,
            ["datacontenttype"] = "application/json",
            ["topic"] = Topic,
            ["pubsubname"] = PubSubName,
            ["time"] = Time.ToString("O"),
        };
        if (TraceParent is not null)
        {
            json["traceparent"] = TraceParent;
            json["traceid"] = TraceParent;
        }

        if (!string.IsNullOrEmpty(TraceState))
        {
            json["tracestate"] = TraceState;
        }

        json["data"] = Data?.DeepClone();
        return JsonSerializer.SerializeToUtf8Bytes(json);
    }

    /// <summary>Parses a structured-mode CloudEvent; throws <see cref="MalformedEventException"/> when it is not one.</summary>
    public static CloudEventEnvelope Parse(ReadOnlySpan<byte> utf8Json)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(utf8Json);
        }
        catch (JsonException ex)
        {
            throw new MalformedEventException("The event is not valid JSON.", ex);
        }

        if (node is not JsonObject obj)
        {
            throw new MalformedEventException("The event is not a JSON object.");
        }

        string Required(string name) =>
            obj[name] is JsonValue value && value.TryGetValue<string>(out var text) && text.Length > 0
                ? text
                : throw new MalformedEventException($"The CloudEvent has no '{name}' attribute.");

        string? Optional(string name) =>
            obj[name] is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

        if (Required("specversion") != "1.0")
        {
            throw new MalformedEventException("Only CloudEvents 1.0 are supported.");
        }

        var time = DateTimeOffset.TryParse(Optional("time"), System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.RoundtripKind, out var parsed)
            ? parsed
            : DateTimeOffset.MinValue;

        var data = obj["data"];
        if (data is JsonValue stringData && stringData.TryGetValue<string>(out var embedded))
        {
            // Some publishers send data as a JSON string holding the JSON object.
            try
            {
                data = JsonNode.Parse(embedded);
            }
            catch (JsonException ex)
            {
                throw new MalformedEventException("The CloudEvent's data is a string that is not JSON.", ex);
            }
        }

        return new CloudEventEnvelope(
            Required("id"),
            Optional("source") ?? string.Empty,
            Required("type"),
            Optional("topic") ?? string.Empty,
            Optional("pubsubname") ?? string.Empty,
            time,
            Optional("traceparent"),
            Optional("tracestate"),
            data?.DeepClone());
    }

    /// <summary>Reads <see cref="Data"/> as <typeparamref name="T"/>; unknown fields are ignored for forward compatibility.</summary>
    public T ReadData<T>(MessageParser<T> parser)
        where T : IMessage<T>
    {
        var descriptor = parser.ParseFrom(ByteString.Empty).Descriptor;
        var expected = descriptor.FullName;
        if (!string.Equals(Type, expected, StringComparison.Ordinal))
        {
            throw new MalformedEventException($"The event type '{Type}' is not the expected '{expected}'.");
        }

        if (Data is not JsonObject)
        {
            throw new MalformedEventException("The CloudEvent has no data object.");
        }

        try
        {
            return (T)Parser.Parse(Data.ToJsonString(), descriptor);
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new MalformedEventException($"The data does not match {expected}: {ex.Message}", ex);
        }
        catch (InvalidJsonException ex)
        {
            throw new MalformedEventException($"The data does not match {expected}: {ex.Message}", ex);
        }
    }
}

/// <summary>An event that can never be processed (bad JSON, wrong schema, unknown type): dead-lettered, not retried.</summary>
public sealed class MalformedEventException : Exception
{
    public MalformedEventException()
    {
    }

    public MalformedEventException(string message)
        : base(message)
    {
    }

    public MalformedEventException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
