using System.Diagnostics.Metrics;
using Grpc.Core;
using RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Planning;

/// <summary>
/// Measures plans' risk through risk's CompareRiskBatch, coalescing concurrent requests
/// (<see cref="CallCoalescer{TRequest, TAnswer}"/>): a breach storm's plans cost one risk call per round instead of one
/// each. Each caller gets its own outcome; an item risk could not measure carries its error, and a failed call fails
/// every item it carried.
/// </summary>
public sealed class RiskBatcher : IAsyncDisposable
{
    /// <summary>Items and rows (holdings and trades) per call: risk's own limits (RiskComparer.MaxBatchItems and MaxBatchRows).</summary>
    public const int MaxItems = 256;

    public const int MaxRows = 20_000;

    /// <summary>
    /// Risk calls in flight at once. With one, a storm's plans waited for the call before theirs to come back whole
    /// (planning.build.risk_ms p50 ~460 ms at bench-book 2,000 × 20, while risk served a call in ~53 ms p50): the time
    /// was the answers' travel and the batch's slowest item, not risk's CPU.
    /// </summary>
    public const int MaxCallsInFlight = 2;

    private static readonly Meter Meter = new("RebalanceMesh.Planning.Risk");
    private static readonly Histogram<long> RequestsPerCall = Meter.CreateHistogram<long>("rebalancemesh.planning.risk_batch.requests", description: "Plans one shared CompareRiskBatch call measured.");

    private readonly RiskService.RiskServiceClient _risk;
    private readonly CallCoalescer<CompareRiskRequest, CompareRiskOutcome> _calls;

    public RiskBatcher(RiskService.RiskServiceClient risk)
    {
        _risk = risk;
        _calls = new("risk batch", ServeAsync, item => item.Holdings.Count + item.Trades.Count, MaxItems, MaxRows, RequestsPerCall, MaxCallsInFlight);
    }

    /// <summary>
    /// The comparison of <paramref name="request"/>; an item risk refused or could not measure throws the
    /// <see cref="RpcException"/> its own CompareRisk call would have.
    /// </summary>
    public async Task<CompareRiskResponse> CompareAsync(CompareRiskRequest request, CancellationToken cancellationToken)
    {
        var outcome = await _calls.CallAsync(request, cancellationToken);
        return outcome.OutcomeCase == CompareRiskOutcome.OutcomeOneofCase.Comparison
            ? outcome.Comparison
            : throw new RpcException(new Status((StatusCode)outcome.Error.Code, outcome.Error.Message));
    }

    private async Task<IReadOnlyList<CompareRiskOutcome>> ServeAsync(IReadOnlyList<CompareRiskRequest> batch, CancellationToken cancellationToken)
    {
        var request = new CompareRiskBatchRequest();
        request.Items.AddRange(batch);
        try
        {
            var response = await _risk.CompareRiskBatchAsync(request, cancellationToken: cancellationToken);
            return response.Outcomes;
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Unimplemented)
        {
            // A risk service of an earlier version (a rolling upgrade): one CompareRisk per item, as before batches.
            return await Task.WhenAll(batch.Select(item => OneByOneAsync(item, cancellationToken)));
        }
    }

    private async Task<CompareRiskOutcome> OneByOneAsync(CompareRiskRequest item, CancellationToken cancellationToken)
    {
        try
        {
            return new CompareRiskOutcome { Comparison = await _risk.CompareRiskAsync(item, cancellationToken: cancellationToken) };
        }
        catch (RpcException ex) when (ex.StatusCode != StatusCode.Cancelled)
        {
            return new CompareRiskOutcome { Error = new ItemError { Code = (int)ex.StatusCode, Message = ex.Status.Detail } };
        }
    }

    public ValueTask DisposeAsync() => _calls.DisposeAsync();
}
