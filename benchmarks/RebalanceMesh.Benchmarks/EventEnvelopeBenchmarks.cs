using BenchmarkDotNet.Attributes;
using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;

namespace RebalanceMesh.Benchmarks;

/// <summary>
/// One execution report (a block allocation's fill) through the event envelope: what a publisher spends to write it
/// as a structured CloudEvent, and what a subscriber spends to read it back. Every report crosses this twice.
/// </summary>
[MemoryDiagnoser]
public class EventEnvelopeBenchmarks
{
    private static readonly DateTimeOffset Now = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    private readonly ExecutionReport _report = new()
    {
        ReportId = "pln-0123456789abcdef:L7:fill:blk-00000042:3",
        PlanId = "pln-0123456789abcdef",
        PortfolioId = "acct-004711",
        LegId = "L7",
        Kind = ReportKind.Fill,
        ReportedAt = Timestamp.FromDateTimeOffset(Now),
        Fill = new Fill
        {
            FillId = "blk-00000042:pln-0123456789abcdef:L7:alloc",
            ClientOrderId = "blk-00000042-SIM-A-1",
            Venue = "SIM-A",
            InstrumentId = "DAX",
            Side = Side.Buy,
            Quantity = 37m,
            Price = 18234.125m,
            Fee = 0.6746626m,
            FilledAt = Timestamp.FromDateTimeOffset(Now),
            Source = FillSource.BlockAllocation,
            BlockId = "blk-00000042",
        },
    };

    private byte[] _event = [];

    [GlobalSetup]
    public void Setup() => _event = Publish();

    [Benchmark]
    public byte[] Publish() => CloudEventEnvelope.Create(_report, Topics.ExecutionReports, "pubsub", "execution", Now).ToJsonBytes();

    [Benchmark]
    public ExecutionReport Consume() => CloudEventEnvelope.Parse(_event).ReadData(ExecutionReport.Parser);

}
