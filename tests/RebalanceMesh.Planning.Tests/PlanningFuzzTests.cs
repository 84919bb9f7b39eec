using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;
using StackExchange.Redis;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Bad input, at volume: 10,000 random and mutated requests to each of planning's RPCs (through the real gRPC stack,
/// as an admin). None may answer Unknown or Internal or take the service down, and a rejected request to an RPC that
/// writes must leave everything stored exactly as it was.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class PlanningFuzzTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    /// <summary>10,000 by default; FUZZ_PER_RPC sets another count (a longer run on purpose).</summary>
    private static readonly int PerRpc = int.TryParse(Environment.GetEnvironmentVariable("FUZZ_PER_RPC"), out var n) && n > 0 ? n : 10_000;
    private static readonly StatusCode[] Refused = [StatusCode.Unknown, StatusCode.Internal];
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly PlanningService.PlanningServiceClient _client;

    public PlanningFuzzTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>(TestAuth.Settings)
        {
            ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
            ["Services:risk:Grpc"] = "http://127.0.0.1:1",
        });
        _client = new PlanningService.PlanningServiceClient(_server.CreateInvoker(TestAuth.Token(MeshAuth.Admin)));
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = ValidPortfolio(), ExpectedVersion = -1 });
        await _client.SetPolicyAsync(new SetPolicyRequest { Policy = ValidPolicy() });
    }

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private static Portfolio ValidPortfolio() => new()
    {
        PortfolioId = "fz",
        BaseCurrency = "EUR",
        Cash = 1_000m,
        Positions = { new Position { InstrumentId = "DAX", Quantity = 2m, Venue = "SIM-A" } },
        Loans = { new Loan { LoanId = "L1", Venue = "LEND-A", Collateral = { new LoanCollateral { Asset = "DAX", Quantity = 1m, LiquidationThreshold = 0.8 } }, Debt = { new LoanDebt { Asset = "EUR", Quantity = 10m } } } },
        CashBalances = { new CashBalance { Currency = "USD", Amount = 5m } },
    };

    private static Policy ValidPolicy() => new()
    {
        PortfolioId = "fz",
        AbsoluteBand = 0.05,
        Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 0.5 } },
        HealthFactorBand = new HealthFactorBand { Target = 1.5, RepayBelow = 1.2 },
        ExecutionStyle = new ExecutionStyle { TwapSlices = 2, TwapDurationSeconds = 10 },
    };

    [Fact]
    public async Task Ten_thousand_random_and_mutated_requests_per_RPC_never_answer_Unknown_or_Internal_and_rejected_writes_change_nothing()
    {
        var random = new Random(20261125);
        var outcomes = new Dictionary<string, Dictionary<StatusCode, int>>();
        async Task FuzzAsync<T>(string rpc, T seed, Func<T, Task> call, bool writes)
            where T : IMessage<T>, new()
        {
            var counts = outcomes[rpc] = [];
            for (var i = 0; i < PerRpc; i++)
            {
                var request = Mutate(seed, random);
                var before = writes ? await DigestAsync() : null;
                var status = StatusCode.OK;
                var detail = string.Empty;
                try
                {
                    await call(request);
                }
                catch (RpcException ex)
                {
                    status = ex.StatusCode;
                    detail = ex.Status.Detail + " " + ex.Status.DebugException?.Message;
                }

                counts[status] = counts.GetValueOrDefault(status) + 1;
                Assert.False(Refused.Contains(status), $"{rpc} answered {status} ({detail}) to {request}");
                if (writes && status == StatusCode.InvalidArgument)
                {
                    Assert.Equal(before, await DigestAsync());
                }
            }
        }

        var deadline = () => DateTime.UtcNow.AddSeconds(5);
        await FuzzAsync("UpsertPortfolio", new UpsertPortfolioRequest { Portfolio = ValidPortfolio(), ExpectedVersion = -1 }, r => _client.UpsertPortfolioAsync(r, deadline: deadline()).ResponseAsync, writes: true);
        await FuzzAsync("SetPolicy", new SetPolicyRequest { Policy = ValidPolicy() }, r => _client.SetPolicyAsync(r, deadline: deadline()).ResponseAsync, writes: true);
        await FuzzAsync("SetTradingHalt", new SetTradingHaltRequest { Halted = false, Reason = "fuzz" }, r => _client.SetTradingHaltAsync(r, deadline: deadline()).ResponseAsync, writes: true);
        await FuzzAsync("SubmitRebalance", new SubmitRebalanceRequest { PortfolioId = "fz", IdempotencyKey = "k" }, r => _client.SubmitRebalanceAsync(r, deadline: deadline()).ResponseAsync, writes: true);
        await FuzzAsync("GetPortfolio", new GetPortfolioRequest { PortfolioId = "fz", SkipValuation = true }, r => _client.GetPortfolioAsync(r, deadline: deadline()).ResponseAsync, writes: false);
        await FuzzAsync("PreviewRebalance", new PreviewRebalanceRequest { PortfolioId = "fz" }, r => _client.PreviewRebalanceAsync(r, deadline: deadline()).ResponseAsync, writes: false);
        await FuzzAsync("GetPlan", new GetPlanRequest { PlanId = "plan-x" }, r => _client.GetPlanAsync(r, deadline: deadline()).ResponseAsync, writes: false);
        await FuzzAsync("ListPlans", new ListPlansRequest { PortfolioId = "fz", PageSize = 10 }, r => _client.ListPlansAsync(r, deadline: deadline()).ResponseAsync, writes: false);
        // Watches are read for 1 ms, then the client goes away (what happens after that is the client's own doing:
        // the in-process transport reports the reset it causes as an error, so only answers before it count).
        async Task WatchAsync<TResponse>(Func<CancellationToken, AsyncServerStreamingCall<TResponse>> open)
        {
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
            using var call = open(cancel.Token);
            try
            {
                await call.ResponseStream.MoveNext(cancel.Token);
            }
            catch (Exception ex) when (cancel.IsCancellationRequested && ex is RpcException or OperationCanceledException)
            {
                // accepted, nothing to say yet
            }
        }

        await FuzzAsync("WatchPlans", new WatchPlansRequest { PortfolioId = "fz" }, r => WatchAsync(ct => _client.WatchPlans(r, cancellationToken: ct)), writes: false);
        await FuzzAsync("WatchAlerts", new WatchAlertsRequest { PortfolioId = "fz" }, r => WatchAsync(ct => _client.WatchAlerts(r, cancellationToken: ct)), writes: false);

        // Every RPC was exercised, and the fuzz did find the validation (most mutated requests are refused).
        Assert.Equal(PlanningService.Descriptor.Methods.Count, outcomes.Count);
        Assert.All(outcomes.Where(o => o.Key is "UpsertPortfolio" or "SetPolicy"), o => Assert.True(o.Value.GetValueOrDefault(StatusCode.InvalidArgument) > PerRpc / 10, $"{o.Key}: {string.Join(", ", o.Value)}"));

        // The service is still up and serving.
        Assert.NotNull((await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "fz", SkipValuation = true })).Portfolio);
    }

    /// <summary>A digest of every planning key and value in Redis (the service's whole stored state), in one round trip.</summary>
    private async Task<string> DigestAsync() =>
        (string)(await _redis.Connection!.GetDatabase().ScriptEvaluateAsync("""
            local keys = redis.call('KEYS', 'pln:*')
            table.sort(keys)
            local parts = {}
            for i, key in ipairs(keys) do
                parts[#parts + 1] = key
                parts[#parts + 1] = redis.call('DUMP', key) or ''
            end
            return redis.sha1hex(table.concat(parts, '|'))
            """))!;

    /// <summary>
    /// A mutated copy: a few fields (anywhere in the message tree) set to random values — empty, huge, malformed,
    /// non-finite, negative, unicode — repeated fields grown or cleared, sub-messages dropped or added.
    /// </summary>
    private static T Mutate<T>(T seed, Random random)
        where T : IMessage<T>, new()
    {
        var copy = seed.Clone();
        var mutations = random.Next(1, 5);
        for (var m = 0; m < mutations; m++)
        {
            MutateOne(copy, random, depth: 0);
        }

        return copy;
    }

    private static void MutateOne(IMessage message, Random random, int depth)
    {
        var fields = message.Descriptor.Fields.InDeclarationOrder();
        if (fields.Count == 0)
        {
            return;
        }

        var field = fields[random.Next(fields.Count)];
        var accessor = field.Accessor;
        if (field.IsMap)
        {
            var map = (System.Collections.IDictionary)accessor.GetValue(message);
            if (random.Next(3) == 0)
            {
                map.Clear();
                return;
            }

            var entry = field.MessageType;
            var key = RandomScalar(entry.FindFieldByNumber(1), random);
            var valueField = entry.FindFieldByNumber(2);
            var value = valueField.FieldType == FieldType.Message ? RandomMessage(valueField.MessageType, random, depth + 1) : RandomScalar(valueField, random);
            if (key is not null && value is not null)
            {
                map[key] = value;
            }

            return;
        }

        if (field.IsRepeated)
        {
            var list = (System.Collections.IList)accessor.GetValue(message);
            switch (random.Next(4))
            {
                case 0:
                    list.Clear();
                    break;
                case 1 when list.Count > 0 && field.FieldType == FieldType.Message && depth < 3:
                    MutateOne((IMessage)list[random.Next(list.Count)]!, random, depth + 1);
                    break;
                default:
                    for (var k = random.Next(1, random.Next(2) == 0 ? 3 : 60); k > 0; k--)
                    {
                        var element = field.FieldType == FieldType.Message ? RandomMessage(field.MessageType, random, depth + 1) : RandomScalar(field, random);
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
            if (random.Next(4) == 0)
            {
                accessor.Clear(message);
            }
            else if (current is not null && depth < 3 && random.Next(2) == 0)
            {
                MutateOne(current, random, depth + 1);
            }
            else
            {
                accessor.SetValue(message, RandomMessage(field.MessageType, random, depth + 1));
            }

            return;
        }

        var scalar = RandomScalar(field, random);
        if (scalar is not null)
        {
            accessor.SetValue(message, scalar);
        }
    }

    private static IMessage RandomMessage(MessageDescriptor descriptor, Random random, int depth)
    {
        var message = descriptor.Parser.ParseFrom(ByteString.Empty);
        if (descriptor.ClrType == typeof(DecimalValue))
        {
            return new DecimalValue { Value = RandomDecimalText(random) };
        }

        for (var k = random.Next(0, depth < 3 ? 4 : 1); k > 0; k--)
        {
            MutateOne(message, random, depth);
        }

        return message;
    }

    private static readonly string[] Strings =
    [
        string.Empty, " ", "fz", "DAX", "EUR", "USD", "SIM-A", "LEND-A", "L1", "plan-x", "has space", "a/b", "../../etc", "\u0000", "DAX\n",
        "💥", "ÄÖÜ", new string('x', 65), new string('y', 5_000), "'; DROP TABLE", "%s%n", "-1", "NaN",
    ];

    private static string RandomDecimalText(Random random) => random.Next(8) switch
    {
        0 => string.Empty,
        1 => "NaN",
        2 => "-" + random.Next(0, 1_000_000),
        3 => "79228162514264337593543950336", // beyond decimal
        4 => "1e308",
        5 => "12..5",
        6 => (random.NextDouble() * 1_000_000).ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        _ => random.Next(0, 10_000).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private static object? RandomScalar(FieldDescriptor field, Random random) => field.FieldType switch
    {
        FieldType.String => random.Next(4) == 0 ? RandomDecimalText(random) : Strings[random.Next(Strings.Length)],
        FieldType.Bool => random.Next(2) == 0,
        FieldType.Double => random.Next(8) switch
        {
            0 => double.NaN,
            1 => double.PositiveInfinity,
            2 => double.NegativeInfinity,
            3 => -random.NextDouble() * 1e6,
            4 => 1e300,
            5 => 0.0,
            _ => random.NextDouble() * random.Next(1, 5),
        },
        FieldType.Float => (float)(random.NextDouble() * 10 - 5),
        FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => random.Next(6) switch { 0 => int.MinValue, 1 => int.MaxValue, 2 => -1, 3 => 0, _ => random.Next(0, 200) },
        FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => random.Next(5) switch { 0 => long.MinValue, 1 => long.MaxValue, 2 => -1L, 3 => 0L, _ => (long)random.Next(0, 200) },
        FieldType.UInt32 or FieldType.Fixed32 => (uint)random.Next(),
        FieldType.UInt64 or FieldType.Fixed64 => (ulong)random.Next(),
        FieldType.Enum => random.Next(3) == 0 ? random.Next(-5, 100) : field.EnumType.Values[random.Next(field.EnumType.Values.Count)].Number,
        FieldType.Bytes => ByteString.CopyFrom(RandomBytes(random)),
        _ => null,
    };

    private static byte[] RandomBytes(Random random)
    {
        var bytes = new byte[random.Next(0, 64)];
        random.NextBytes(bytes);
        return bytes;
    }
}
