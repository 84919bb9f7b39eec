using System.Globalization;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Xunit;

namespace RebalanceMesh.Testing;

/// <summary>
/// Bad input at volume, for any gRPC service: every RPC of the service gets <see cref="PerRpc"/> random and mutated
/// requests built from a valid seed (fields anywhere in the message tree set to empty, huge, malformed, non-finite,
/// negative or unicode values; repeated fields grown or cleared; sub-messages dropped or added), sent through the
/// real gRPC stack with the service's own descriptors. One request in four is then mutated as raw bytes (bytes flipped,
/// cut short, inserted, over-long varints, wrong wire types, pure noise), so the server also meets payloads that are
/// not protobuf at all. No answer may be UNKNOWN or INTERNAL, and a request to a
/// writing RPC that is refused as INVALID_ARGUMENT must leave the stored state (a digest the caller supplies) exactly
/// as it was. Reads run several at a time; writes one at a time (the digest brackets each).
/// </summary>
public sealed class RequestFuzzer(CallInvoker invoker, int seed)
{
    /// <summary>10,000 by default; FUZZ_PER_RPC sets another count (a longer run on purpose).</summary>
    public static int PerRpc { get; } = int.TryParse(Environment.GetEnvironmentVariable("FUZZ_PER_RPC"), out var n) && n > 0 ? n : 10_000;

    private static readonly StatusCode[] Refused = [StatusCode.Unknown, StatusCode.Internal];
    private const int ReadConcurrency = 8;

    /// <summary>How long a server stream is read before the client lets it go (a valid watch never ends by itself).</summary>
    private static readonly TimeSpan StreamWindow = TimeSpan.FromMilliseconds(20);

    private readonly Random _random = new(seed);

    /// <summary>
    /// Fuzzes every method of <paramref name="service"/>; <paramref name="seeds"/> holds a valid request per method
    /// name (all must be there), <paramref name="writes"/> the methods that change state, <paramref name="digest"/> the
    /// stored state. Returns the status counts per method.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, Dictionary<StatusCode, int>>> RunAsync(
        ServiceDescriptor service, IReadOnlyDictionary<string, IMessage> seeds, IReadOnlySet<string> writes, Func<Task<string>> digest)
    {
        Assert.Equal(service.Methods.Select(m => m.Name).Order(), seeds.Keys.Order());
        var outcomes = new Dictionary<string, Dictionary<StatusCode, int>>();
        foreach (var method in service.Methods)
        {
            var counts = outcomes[method.Name] = [];
            var requests = Enumerable.Range(0, PerRpc).Select(_ => Payload(seeds[method.Name])).ToArray();
            if (writes.Contains(method.Name))
            {
                foreach (var request in requests)
                {
                    var before = await digest();
                    var (status, detail) = await CallAsync(method, request);
                    Record(counts, method, request, status, detail);
                    if (status == StatusCode.InvalidArgument)
                    {
                        Assert.True(before == await digest(), $"{method.Name} refused {request} but changed what is stored");
                    }
                }

                continue;
            }

            var next = -1;
            await Task.WhenAll(Enumerable.Range(0, ReadConcurrency).Select(async _ =>
            {
                for (var i = Interlocked.Increment(ref next); i < requests.Length; i = Interlocked.Increment(ref next))
                {
                    var (status, detail) = await CallAsync(method, requests[i]);
                    lock (counts)
                    {
                        Record(counts, method, requests[i], status, detail);
                    }
                }
            }));
        }

        return outcomes;
    }

    private static void Record(Dictionary<StatusCode, int> counts, MethodDescriptor method, FuzzRequest request, StatusCode status, string detail)
    {
        counts[status] = counts.GetValueOrDefault(status) + 1;
        Assert.False(Refused.Contains(status), $"{method.Name} answered {status} ({detail}) to {request}");
    }

    /// <summary>One request as it goes on the wire, and how to show it in a failure.</summary>
    private sealed record FuzzRequest(byte[] Bytes, IMessage Message, bool Raw)
    {
        public override string ToString() => Raw ? $"raw bytes {Convert.ToHexString(Bytes.AsSpan(0, Math.Min(Bytes.Length, 64)))} (from {Message})" : Message.ToString() ?? string.Empty;
    }

    /// <summary>A mutated request; one in four also mutated as raw bytes.</summary>
    private FuzzRequest Payload(IMessage seed)
    {
        var message = Mutate(seed);
        var bytes = message.ToByteArray();
        return Next(4) == 0 ? new FuzzRequest(MutateBytes(bytes), message, Raw: true) : new FuzzRequest(bytes, message, Raw: false);
    }

    /// <summary>
    /// One to three byte-level mutations of a serialized message: a flipped byte, a cut, inserted noise, an over-long or
    /// unterminated varint, a field tag with a wrong or reserved wire type, a length prefix past the end, or pure noise.
    /// </summary>
    public byte[] MutateBytes(byte[] serialized)
    {
        lock (_random)
        {
            var bytes = new List<byte>(serialized);
            for (var m = _random.Next(1, 4); m > 0; m--)
            {
                var at = bytes.Count == 0 ? 0 : _random.Next(bytes.Count + 1);
                switch (_random.Next(8))
                {
                    case 0 when bytes.Count > 0:
                        bytes[Math.Min(at, bytes.Count - 1)] ^= (byte)(1 << _random.Next(8));
                        break;
                    case 1 when bytes.Count > 0:
                        bytes.RemoveRange(at, bytes.Count - at);
                        break;
                    case 2:
                        bytes.InsertRange(at, RandomBytes());
                        break;
                    case 3:
                        bytes.InsertRange(at, [0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a]); // a tag of field 536,870,911 with wire type 7, then a dangling length
                        break;
                    case 4:
                        bytes.InsertRange(at, Enumerable.Repeat((byte)0xff, _random.Next(1, 12))); // an unterminated or over-long varint
                        break;
                    case 5:
                        bytes.InsertRange(at, [(byte)((_random.Next(1, 16) << 3) | _random.Next(3, 8)), 0x01]); // wrong, group or reserved wire type
                        break;
                    case 6:
                        bytes.InsertRange(at, [(byte)((_random.Next(1, 16) << 3) | 2), 0x7f, 0x01]); // a length far past the end
                        break;
                    default:
                        bytes = [.. RandomBytes()];
                        break;
                }
            }

            return [.. bytes];
        }
    }

    private async Task<(StatusCode Status, string Detail)> CallAsync(MethodDescriptor descriptor, FuzzRequest request)
    {
        var method = GenericMethod(descriptor);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            switch (method.Type)
            {
                case MethodType.Unary:
                    await invoker.AsyncUnaryCall(method, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(5)), request.Bytes);
                    break;
                case MethodType.ClientStreaming:
                {
                    // The request and one to two more mutations of it on the same stream.
                    using var call = invoker.AsyncClientStreamingCall(method, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(5)));
                    await call.RequestStream.WriteAsync(request.Bytes);
                    for (var k = Next(3); k > 0; k--)
                    {
                        await call.RequestStream.WriteAsync(Payload(request.Message).Bytes);
                    }

                    await call.RequestStream.CompleteAsync();
                    await call.ResponseAsync;
                    break;
                }

                case MethodType.ServerStreaming:
                {
                    // Refusals come at once; a valid stream is read for a short window, then the client leaves.
                    using var leave = new CancellationTokenSource(StreamWindow);
                    using var call = invoker.AsyncServerStreamingCall(method, null, new CallOptions(cancellationToken: leave.Token), request.Bytes);
                    try
                    {
                        while (await call.ResponseStream.MoveNext(leave.Token))
                        {
                        }
                    }
                    catch (Exception ex) when (leave.IsCancellationRequested && ex is RpcException or OperationCanceledException)
                    {
                        // The client went away; what the transport says after that is the client's own doing.
                    }

                    break;
                }

                default:
                    throw new NotSupportedException($"{descriptor.Name}: duplex streams are not fuzzed.");
            }

            return (StatusCode.OK, string.Empty);
        }
        catch (RpcException ex)
        {
            // The time taken tells a stalled server (a reset at the deadline) from a wrong answer.
            return (ex.StatusCode, $"{ex.Status.Detail} {ex.Status.DebugException?.Message} after {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds:F0} ms");
        }
    }

    /// <summary>The bytes that malformed every RPC in the outside test: field 536,870,911 with wire type 7, then a dangling length.</summary>
    public static readonly byte[] MalformedBytes = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a];

    /// <summary>A unary call of <paramref name="descriptor"/> whose request is <paramref name="bytes"/> as they are (a 5 s deadline).</summary>
    public static async Task UnaryRawAsync(CallInvoker invoker, MethodDescriptor descriptor, byte[] bytes) =>
        await invoker.AsyncUnaryCall(GenericMethod(descriptor), null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(5)), bytes);

    /// <summary>The method with bytes as they go on the wire: requests are sent as given, responses are not parsed.</summary>
    private static Method<byte[], byte[]> GenericMethod(MethodDescriptor descriptor)
    {
        var type = (descriptor.IsClientStreaming, descriptor.IsServerStreaming) switch
        {
            (false, false) => MethodType.Unary,
            (true, false) => MethodType.ClientStreaming,
            (false, true) => MethodType.ServerStreaming,
            _ => MethodType.DuplexStreaming,
        };
        var raw = Marshallers.Create<byte[]>(bytes => bytes, bytes => bytes);
        return new Method<byte[], byte[]>(type, descriptor.Service.FullName, descriptor.Name, raw, raw);
    }

    private int Next(int max)
    {
        lock (_random)
        {
            return _random.Next(max);
        }
    }

    /// <summary>A mutated copy of <paramref name="seed"/>: one to four mutations anywhere in its tree.</summary>
    public IMessage Mutate(IMessage seed)
    {
        lock (_random)
        {
            var copy = seed.Descriptor.Parser.ParseFrom(seed.ToByteString());
            for (var m = _random.Next(1, 5); m > 0; m--)
            {
                MutateOne(copy, depth: 0);
            }

            return copy;
        }
    }

    private void MutateOne(IMessage message, int depth)
    {
        var fields = message.Descriptor.Fields.InDeclarationOrder();
        if (fields.Count == 0)
        {
            return;
        }

        var field = fields[_random.Next(fields.Count)];
        var accessor = field.Accessor;
        if (field.IsMap)
        {
            var map = (System.Collections.IDictionary)accessor.GetValue(message);
            if (_random.Next(3) == 0)
            {
                map.Clear();
                return;
            }

            var entry = field.MessageType;
            var key = RandomScalar(entry.FindFieldByNumber(1));
            var valueField = entry.FindFieldByNumber(2);
            var value = valueField.FieldType == FieldType.Message ? RandomMessage(valueField.MessageType, depth + 1) : RandomScalar(valueField);
            if (key is not null && value is not null)
            {
                map[key] = value;
            }

            return;
        }

        if (field.IsRepeated)
        {
            var list = (System.Collections.IList)accessor.GetValue(message);
            switch (_random.Next(4))
            {
                case 0:
                    list.Clear();
                    break;
                case 1 when list.Count > 0 && field.FieldType == FieldType.Message && depth < 3:
                    MutateOne((IMessage)list[_random.Next(list.Count)]!, depth + 1);
                    break;
                default:
                    for (var k = _random.Next(1, _random.Next(2) == 0 ? 3 : 60); k > 0; k--)
                    {
                        var element = field.FieldType == FieldType.Message ? RandomMessage(field.MessageType, depth + 1) : RandomScalar(field);
                        if (element is not null)
                        {
                            list.Add(element);
                        }
                    }

                    break;
            }

            return;
        }

        if (field.FieldType == FieldType.Message)
        {
            var current = (IMessage?)accessor.GetValue(message);
            if (_random.Next(4) == 0)
            {
                accessor.Clear(message);
            }
            else if (current is not null && depth < 3 && _random.Next(2) == 0)
            {
                MutateOne(current, depth + 1);
            }
            else
            {
                accessor.SetValue(message, RandomMessage(field.MessageType, depth + 1));
            }

            return;
        }

        var scalar = RandomScalar(field);
        if (scalar is not null)
        {
            accessor.SetValue(message, scalar);
        }
    }

    private IMessage RandomMessage(MessageDescriptor descriptor, int depth)
    {
        var message = descriptor.Parser.ParseFrom(ByteString.Empty);
        if (descriptor.FullName == "rebalance.common.v1.DecimalValue")
        {
            // The contracts' decimal is a string: malformed and out-of-range texts, not random unicode.
            descriptor.FindFieldByName("value").Accessor.SetValue(message, RandomDecimalText());
            return message;
        }

        for (var k = _random.Next(0, depth < 3 ? 4 : 1); k > 0; k--)
        {
            MutateOne(message, depth);
        }

        return message;
    }

    private static readonly string[] Strings =
    [
        string.Empty, " ", "fz", "DAX", "EUR", "USD", "SIM-A", "LEND-A", "L1", "plan-x", "has space", "a/b", "../../etc", "\u0000", "DAX\n",
        "💥", "ÄÖÜ", new string('x', 65), new string('y', 5_000), "'; DROP TABLE", "%s%n", "-1", "NaN",
    ];

    private string RandomDecimalText() => _random.Next(8) switch
    {
        0 => string.Empty,
        1 => "NaN",
        2 => "-" + _random.Next(0, 1_000_000),
        3 => "79228162514264337593543950336", // beyond decimal
        4 => "1e308",
        5 => "12..5",
        6 => (_random.NextDouble() * 1_000_000).ToString("R", CultureInfo.InvariantCulture),
        _ => _random.Next(0, 10_000).ToString(CultureInfo.InvariantCulture),
    };

    private object? RandomScalar(FieldDescriptor field) => field.FieldType switch
    {
        FieldType.String => _random.Next(4) == 0 ? RandomDecimalText() : Strings[_random.Next(Strings.Length)],
        FieldType.Bool => _random.Next(2) == 0,
        FieldType.Double => _random.Next(8) switch
        {
            0 => double.NaN,
            1 => double.PositiveInfinity,
            2 => double.NegativeInfinity,
            3 => -_random.NextDouble() * 1e6,
            4 => 1e300,
            5 => 0.0,
            _ => _random.NextDouble() * _random.Next(1, 5),
        },
        FieldType.Float => (float)(_random.NextDouble() * 10 - 5),
        FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => _random.Next(6) switch { 0 => int.MinValue, 1 => int.MaxValue, 2 => -1, 3 => 0, _ => _random.Next(0, 200) },
        FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => _random.Next(5) switch { 0 => long.MinValue, 1 => long.MaxValue, 2 => -1L, 3 => 0L, _ => (long)_random.Next(0, 200) },
        FieldType.UInt32 or FieldType.Fixed32 => (uint)_random.Next(),
        FieldType.UInt64 or FieldType.Fixed64 => (ulong)_random.Next(),
        FieldType.Enum => _random.Next(3) == 0 ? _random.Next(-5, 100) : field.EnumType.Values[_random.Next(field.EnumType.Values.Count)].Number,
        FieldType.Bytes => ByteString.CopyFrom(RandomBytes()),
        _ => null,
    };

    private byte[] RandomBytes()
    {
        var bytes = new byte[_random.Next(0, 64)];
        _random.NextBytes(bytes);
        return bytes;
    }

    /// <summary>A digest of every key matching one of <paramref name="patterns"/> and its value, in one round trip.</summary>
    public static async Task<string> DigestAsync(StackExchange.Redis.IDatabase database, params string[] patterns) =>
        (string)(await database.ScriptEvaluateAsync(
            """
            local keys = {}
            for _, pattern in ipairs(ARGV) do
                for _, key in ipairs(redis.call('KEYS', pattern)) do
                    keys[#keys + 1] = key
                end
            end
            table.sort(keys)
            local parts = {}
            for i, key in ipairs(keys) do
                parts[#parts + 1] = key
                parts[#parts + 1] = redis.call('DUMP', key) or ''
            end
            return redis.sha1hex(table.concat(parts, '|'))
            """, values: patterns.Select(p => (StackExchange.Redis.RedisValue)p).ToArray()))!;
}
