using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using Google.Protobuf;

namespace RebalanceMesh.EventBus;

/// <summary>
/// A CloudEvent 1.0 in JSON structured mode, as Dapr writes and delivers it: the protobuf message is the
/// <c>data</c> object in protobuf's JSON mapping, and the W3C trace context rides in <c>traceparent</c>.
/// Every adapter builds and reads events through this one type.
/// </summary>
/// <remarks>
/// Every execution report and quote batch crosses this type twice, so it keeps <c>data</c> as the JSON text it was
/// written or read as (<see cref="DataJson"/>): the envelope is written with a <see cref="Utf8JsonWriter"/> around that
/// text and read with one <see cref="JsonDocument"/>, with no object model built, cloned and printed again in between.
/// </remarks>
public sealed record CloudEventEnvelope(
    string Id,
    string Source,
    string Type,
    string Topic,
    string PubSubName,
    DateTimeOffset Time,
    string? TraceParent,
    string? TraceState,
    string? DataJson)
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
            DataJson: Formatter.Format(message));
    }

    /// <summary>True when <see cref="DataJson"/> is a JSON object (what every message's JSON mapping is).</summary>
    private bool HasDataObject => DataJson is { Length: > 0 } data && data[0] == '{';

    /// <summary>Serialises the envelope as the JSON object stored in the stream's <c>data</c> field.</summary>
    public byte[] ToJsonBytes()
    {
        var buffer = new ArrayBufferWriter<byte>(512 + (DataJson?.Length ?? 0));
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("specversion", "1.0");
            json.WriteString("id", Id);
            json.WriteString("source", Source);
            json.WriteString("type", Type);
            json.WriteString("datacontenttype", "application/json");
            json.WriteString("topic", Topic);
            json.WriteString("pubsubname", PubSubName);
            json.WriteString("time", Time.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
            if (TraceParent is not null)
            {
                json.WriteString("traceparent", TraceParent);
                json.WriteString("traceid", TraceParent);
            }

            if (!string.IsNullOrEmpty(TraceState))
            {
                json.WriteString("tracestate", TraceState);
            }

            json.WritePropertyName("data");
            if (DataJson is null)
            {
                json.WriteNullValue();
            }
            else
            {
                // Written by protobuf's formatter or read as one JSON value by Parse: valid JSON either way.
                json.WriteRawValue(DataJson, skipInputValidation: true);
            }

            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Parses a structured-mode CloudEvent; throws <see cref="MalformedEventException"/> when it is not one.</summary>
    public static CloudEventEnvelope Parse(ReadOnlySpan<byte> utf8Json)
    {
        var reader = new Utf8JsonReader(utf8Json);
        JsonDocument document;
        try
        {
            document = JsonDocument.ParseValue(ref reader);
            if (reader.Read())
            {
                document.Dispose();
                throw new MalformedEventException("The event has more than one JSON value.");
            }
        }
        catch (JsonException ex)
        {
            throw new MalformedEventException("The event is not valid JSON.", ex);
        }

        using (document)
        {
            try
            {
                return Read(document.RootElement);
            }
            catch (InvalidOperationException ex)
            {
                // The reader checks the structure; text is decoded only when read, where bad UTF-8 shows.
                throw new MalformedEventException("The event holds text that is not UTF-8.", ex);
            }
        }
    }

    /// <summary>The event's attributes and data, from its parsed JSON.</summary>
    private static CloudEventEnvelope Read(JsonElement obj)
    {
        if (obj.ValueKind != JsonValueKind.Object)
        {
            throw new MalformedEventException("The event is not a JSON object.");
        }

        string Required(string name) =>
            Optional(name) is { Length: > 0 } text ? text : throw new MalformedEventException($"The CloudEvent has no '{name}' attribute.");

        string? Optional(string name) =>
            obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

        if (Required("specversion") != "1.0")
        {
            throw new MalformedEventException("Only CloudEvents 1.0 are supported.");
        }

        var time = DateTimeOffset.TryParse(Optional("time"), System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.RoundtripKind, out var parsed)
            ? parsed
            : DateTimeOffset.MinValue;

        string? data = null;
        if (obj.TryGetProperty("data", out var dataElement))
        {
            data = dataElement.ValueKind switch
            {
                JsonValueKind.Null => null,
                JsonValueKind.String => Embedded(dataElement.GetString()!), // some publishers send the JSON object as a string
                _ => dataElement.GetRawText(),
            };
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
            data);
    }

    /// <summary>The JSON value a string-valued <c>data</c> holds, checked to be one value and trimmed to it.</summary>
    private static string Embedded(string text)
    {
        try
        {
            using var embedded = JsonDocument.Parse(text);
            return embedded.RootElement.GetRawText();
        }
        catch (JsonException ex)
        {
            throw new MalformedEventException("The CloudEvent's data is a string that is not JSON.", ex);
        }
    }

    /// <summary>Reads <see cref="DataJson"/> as <typeparamref name="T"/>; unknown fields are ignored for forward compatibility.</summary>
    public T ReadData<T>(MessageParser<T> parser)
        where T : IMessage<T>
    {
        var descriptor = parser.ParseFrom(ByteString.Empty).Descriptor;
        var expected = descriptor.FullName;
        if (!string.Equals(Type, expected, StringComparison.Ordinal))
        {
            throw new MalformedEventException($"The event type '{Type}' is not the expected '{expected}'.");
        }

        if (!HasDataObject)
        {
            throw new MalformedEventException("The CloudEvent has no data object.");
        }

        try
        {
            return (T)Parser.Parse(DataJson, descriptor);
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
