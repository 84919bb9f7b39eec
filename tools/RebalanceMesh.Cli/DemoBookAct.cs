using System.Diagnostics;
using System.Globalization;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Cli;

/// <summary>What the demo's second act did.</summary>
/// <param name="Blocks">The block orders the batch's plans traded in, whole.</param>
public sealed record BookActResult(int Accounts, PreviewBatchRebalanceResponse Preview, SubmitBatchRebalanceResponse Submitted, BatchProgress Final, IReadOnlyList<Block> Blocks, TimeSpan ChangeToLastEnd, IReadOnlyList<SpanRecord> Spans);

/// <summary>
/// The demo's second act: a book. A model ("demo-balanced": the four indices at 24 % each, ±3 pp, block orders with
/// internal crossing) followed by many accounts, each holding the model's weights ±30 %; the model changes (DAX up to
/// 30 %, SMI down to 18 %); the batch report (per instrument and in total) is shown before anything trades; the batch
/// is submitted and followed with WatchBatch; then the block orders its plans traded in — slices, internal crosses,
/// venue fills, child orders — and the check that every block's allocations add up to its fills, with the trace.
/// </summary>
public sealed class DemoBookAct(MeshState mesh, string spansDirectory, TextWriter output)
{
    public const string ModelId = "demo-balanced";

    public async Task<BookActResult> RunAsync(int accounts, CancellationToken cancellationToken)
    {
        using var planningChannel = mesh.PlanningChannel();
        using var pricingChannel = mesh.ServiceChannel("pricing");
        using var executionChannel = mesh.ServiceChannel("execution");
        var planning = new PlanningService.PlanningServiceClient(planningChannel.WithDefaultDeadline());
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());
        var prices = await DemoRunner.WaitForPricesAsync(pricing, cancellationToken);
        output.WriteLine();
        output.WriteLine($"Act two — a book: model '{ModelId}' (CAC, DAX, FTSE, SMI at 24 % each, ±3 pp, block orders crossing internally) followed by {accounts:N0} accounts of 100,000 EUR, each at the model's weights ±30 %.");

        var model = new Model
        {
            ModelId = ModelId,
            Name = "Demo: balanced European indices",
            Policy = new Policy
            {
                AbsoluteBand = 0.03,
                MinTradeNotional = 100m,
                EstimatedCostBps = 8,
                ExecutionStyle = new ExecutionStyle { BlockTrading = BlockTrading.BlockAndCross },
            },
        };
        model.Policy.Targets.AddRange(DemoRunner.Instruments.Select(i => new TargetWeight { InstrumentId = i, Weight = 0.24 }));
        Model stored;
        try
        {
            // Run again on the same mesh: the model starts over from its first targets.
            var existing = (await planning.GetModelAsync(new GetModelRequest { ModelId = ModelId }, cancellationToken: cancellationToken)).Model;
            stored = (await planning.UpdateModelAsync(new UpdateModelRequest { Model = model, ExpectedVersion = existing.Version }, cancellationToken: cancellationToken)).Model;
        }
        catch (Grpc.Core.RpcException ex) when (ex.StatusCode == Grpc.Core.StatusCode.NotFound)
        {
            stored = (await planning.CreateModelAsync(new CreateModelRequest { Model = model }, cancellationToken: cancellationToken)).Model;
        }

        var random = new Random(41);
        var ids = Enumerable.Range(1, accounts).Select(k => $"demo-acct-{k:D5}").ToArray();
        var setUp = Stopwatch.StartNew();
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellationToken }, async (id, ct) =>
        {
            var portfolio = new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = 4_000m };
            lock (random)
            {
                portfolio.Positions.AddRange(DemoRunner.Instruments.Select(i => new Position { InstrumentId = i, Quantity = decimal.Floor(24_000m * (decimal)(0.7 + (0.6 * random.NextDouble())) / prices[i]) }));
            }

            await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 }, cancellationToken: ct);
            await planning.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = id, ModelId = ModelId }, cancellationToken: ct);
        });
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {accounts:N0} accounts set up and linked in {setUp.Elapsed.TotalSeconds:F1} s"));

        // The model change.
        var changed = stored.Clone();
        changed.Policy = model.Policy.Clone();
        changed.Policy.Targets.Clear();
        changed.Policy.Targets.AddRange(new[] { ("CAC", 0.24), ("DAX", 0.30), ("FTSE", 0.24), ("SMI", 0.18) }.Select(t => new TargetWeight { InstrumentId = t.Item1, Weight = t.Item2 }));
        var clock = Stopwatch.StartNew();
        var update = await planning.UpdateModelAsync(new UpdateModelRequest { Model = changed, ExpectedVersion = stored.Version }, cancellationToken: cancellationToken);
        output.WriteLine($"  Model change (version {update.Model.Version}): DAX 24 → 30 %, SMI 24 → 18 %; {update.PortfoliosUpdated:N0} accounts follow it at once, {update.PortfoliosPending:N0} in the background.");
        for (var attempt = 0; attempt < 150 && (await planning.GetModelAsync(new GetModelRequest { ModelId = ModelId }, cancellationToken: cancellationToken)).RolloutPending; attempt++)
        {
            await Task.Delay(200, cancellationToken);
        }

        var preview = await planning.PreviewBatchRebalanceAsync(new PreviewBatchRebalanceRequest { ModelId = ModelId, Concurrency = 32, OmitPlans = true }, deadline: DateTime.UtcNow.AddMinutes(5), cancellationToken: cancellationToken);
        output.WriteLine();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Batch report before anything trades: {preview.Selected:N0} accounts — {preview.Planned:N0} out of tolerance and planned, {preview.NoAction:N0} inside their bands, {preview.Failed:N0} failed; estimated cost {preview.EstimatedCost.ToDecimal():N2} EUR"));
        output.WriteLine("  instrument    bought      sold       net   gross notional   est. cost  accounts");
        foreach (var instrument in preview.Instruments)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {instrument.InstrumentId,-10} {instrument.Bought.ToDecimal(),9:N0} {instrument.Sold.ToDecimal(),9:N0} {instrument.Net.ToDecimal(),9:N0} {instrument.GrossNotional.ToDecimal(),16:N0} {instrument.EstimatedCost.ToDecimal(),11:N2} {instrument.Accounts,9}"));
        }

        var key = "demo-act2-" + Guid.NewGuid().ToString("N")[..8];
        var submitted = await planning.SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = ModelId, BatchKey = key, Concurrency = 32, OmitPlans = true }, deadline: DateTime.UtcNow.AddMinutes(5), cancellationToken: cancellationToken);
        output.WriteLine();
        output.WriteLine($"Batch {key} submitted: {submitted.Planned:N0} plans. Progress (WatchBatch):");
        BatchProgress final = new() { BatchKey = key };
        using (var watch = planning.WatchBatch(new WatchBatchRequest { BatchKey = key }, deadline: DateTime.UtcNow.AddMinutes(5), cancellationToken: cancellationToken))
        {
            while (await watch.ResponseStream.MoveNext(cancellationToken))
            {
                final = watch.ResponseStream.Current.Progress;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {clock.Elapsed.TotalSeconds,5:F1} s  approved {final.Approved,5}  executing {final.Executing,5}  completed {final.Completed,5}  partly filled {final.PartiallyFilled,3}  failed {final.Failed,3}{(final.Done ? "  — done" : string.Empty)}"));
            }
        }

        var changeToLastEnd = clock.Elapsed;
        var plans = submitted.Accounts.Where(a => a.PlanId.Length > 0 && a.Status == PlanStatus.Approved).Select(a => a.PlanId).ToHashSet(StringComparer.Ordinal);
        var blocks = new List<Block>();
        foreach (var listed in (await execution.ListBlocksAsync(new ListBlocksRequest { PageSize = 500 }, cancellationToken: cancellationToken)).Blocks)
        {
            var block = (await execution.GetBlockAsync(new GetBlockRequest { BlockId = listed.BlockId }, cancellationToken: cancellationToken)).Block;
            if (block.Members.Any(m => plans.Contains(m.PlanId)))
            {
                blocks.Add(block);
            }
        }

        output.WriteLine();
        output.WriteLine($"Block orders: {blocks.Count} blocks, {blocks.Sum(b => b.Orders.Count)} venue child orders for {submitted.Accounts.Where(a => plans.Contains(a.PlanId)).Sum(a => a.Trades)} plan legs.");
        output.WriteLine("  instrument  blocks  slices  crossed @ mid   venue filled @ average     fees  child orders  allocated");
        foreach (var instrument in blocks.GroupBy(b => b.InstrumentId).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var filled = instrument.SelectMany(b => b.Sides).Sum(s => s.Filled.ToDecimal());
            var notional = instrument.SelectMany(b => b.Sides).Sum(s => s.Filled.ToDecimal() * (s.AveragePrice?.ToDecimal() ?? 0m));
            var crossed = instrument.Sum(b => b.Crossed.ToDecimal());
            var mid = crossed > 0 ? instrument.Sum(b => b.Crossed.ToDecimal() * b.CrossPrice.ToDecimal()) / crossed : 0m;
            var allocated = instrument.SelectMany(b => b.Members).Sum(m => m.Allocated?.ToDecimal() ?? 0m);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {instrument.Key,-10} {instrument.Count(),7} {instrument.Sum(b => b.MemberCount),7} {crossed,8:N0} @ {mid,-10:N2} {filled,8:N0} @ {(filled > 0 ? notional / filled : 0),-12:N4} {instrument.SelectMany(b => b.Sides).Sum(s => s.Fees.ToDecimal()),8:N2} {instrument.Sum(b => b.Orders.Count),13} {allocated,10:N0}{(allocated == filled ? "  = filled" : "  ≠ filled!")}"));
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Model change to the last plan's end: {changeToLastEnd.TotalSeconds:F1} s"));
        await Task.Delay(500, cancellationToken);
        var first = submitted.Accounts.FirstOrDefault(a => plans.Contains(a.PlanId));
        var traceId = first is null ? string.Empty : (await planning.GetPlanAsync(new GetPlanRequest { PlanId = first.PlanId }, cancellationToken: cancellationToken)).Plan.TraceId;
        var spans = traceId.Length > 0 ? SpanFiles.ReadTrace(spansDirectory, traceId) : [];
        output.WriteLine($"Trace {traceId} (the batch's submission and its plans): {spans.Count} spans from {string.Join(", ", spans.Select(s => s.Service).Distinct().Order())}");
        SpanFiles.PrintTree(spans, output, maxLines: 30);
        return new BookActResult(accounts, preview, submitted, final, blocks, changeToLastEnd, spans);
    }
}
