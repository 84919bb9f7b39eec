using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// Block orders on the whole mesh: five portfolios that allow blocks and internal crosses rebalance at once — one sells
/// DAX that the others buy (fewer units than they buy, so the cross leaves a net purchase) — and execution is killed (SIGKILL) after a block's venue fills and before its allocation
/// (a fault-injection pause holds it there), then started again. Every account must end consistent with the venues'
/// records: each block's allocations sum to its child orders' fills, crosses net to zero, each plan's legs filled by
/// exactly its shares, and each portfolio's positions and cash moved by exactly those shares.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class BlockMeshTests(ITestOutputHelper output) : MeshTest(output)
{
    private const decimal Capital = 200_000m;

    protected override IReadOnlyDictionary<string, string>? ExtraEnv { get; } = new Dictionary<string, string>
    {
        ["Execution__BlockWindow"] = "00:00:02",
        ["Execution__BlockQuiet"] = "00:00:01", // the five plans, built at once, reach execution within a second
        ["Execution__BlockAllocationPause"] = "00:00:04",
        ["Pricing__Feed"] = "none", // a still market, quoted by the test: the plans' prices hold while the blocks form
        ["Pricing__Instruments__0"] = "DAX",
        ["Pricing__Instruments__1"] = "SMI",
    };

    private static readonly Dictionary<string, decimal> Mids = new(StringComparer.Ordinal) { ["DAX"] = 2_000m, ["SMI"] = 1_000m };

    [Fact]
    public async Task Execution_killed_mid_allocation_leaves_every_account_consistent_with_the_venues_records()
    {
        var planning = PlanningClient();
        var execution = new ExecutionService.ExecutionServiceClient(ServiceChannel("execution").WithDefaultDeadline());
        var pricing = new RebalanceMesh.Contracts.Pricing.V1.PricingService.PricingServiceClient(ServiceChannel("pricing").WithDefaultDeadline());
        using var quoting = new CancellationTokenSource();
        var quotes = QuoteUntilAsync(pricing, quoting.Token);
        var ids = new[] { "blk-seller", "blk-1", "blk-2", "blk-3", "blk-4" };
        var start = new Dictionary<string, Portfolio>(StringComparer.Ordinal);
        foreach (var id in ids)
        {
            var portfolio = new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = Capital };
            if (id == "blk-seller")
            {
                portfolio.Positions.Add(new Position { InstrumentId = "DAX", Quantity = 10m });
            }

            start[id] = (await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 })).Portfolio;
            var policy = new Policy
            {
                PortfolioId = id,
                AbsoluteBand = 0.02,
                MinTradeNotional = 100m,
                ExecutionStyle = new ExecutionStyle { BlockTrading = BlockTrading.BlockAndCross },
            };
            policy.Targets.AddRange(id == "blk-seller"
                ? [new TargetWeight { InstrumentId = "DAX", Weight = 0 }, new TargetWeight { InstrumentId = "SMI", Weight = 0.3 }]
                : [new TargetWeight { InstrumentId = "DAX", Weight = 0.2 }, new TargetWeight { InstrumentId = "SMI", Weight = 0.2 }]);
            await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
            await PreviewWhenPricedAsync(planning, new PreviewRebalanceRequest { PortfolioId = id });
        }

        var submitted = await Task.WhenAll(ids.Select(async id => (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = id, IdempotencyKey = id + "-1" })).Plan));
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} submitted {submitted.Length} plans");

        // A block has been sent and filled at the venues and waits to be allocated: execution is killed there.
        Block? waiting = null;
        for (var attempt = 0; attempt < 300 && waiting is null; attempt++)
        {
            await Task.Delay(100);
            foreach (var listed in (await execution.ListBlocksAsync(new ListBlocksRequest())).Blocks.Where(b => !b.Allocated))
            {
                var block = (await execution.GetBlockAsync(new GetBlockRequest { BlockId = listed.BlockId })).Block;
                if (block.Orders.Count > 0 && block.Orders.All(o => o.Status is OrderStatus.Filled or OrderStatus.PartiallyFilled or OrderStatus.Expired or OrderStatus.Rejected))
                {
                    waiting = block;
                    break;
                }
            }
        }

        Assert.NotNull(waiting);
        Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} block {waiting.BlockId} ({waiting.InstrumentId}, {waiting.MemberCount} slices) filled at the venues, not allocated: killing execution");
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await MeshLauncher.RestartAsync(StateDir, "execution", cancel.Token);

        var plans = new List<Plan>();
        foreach (var plan in submitted)
        {
            var ended = await WaitForPlanEndAsync(planning, plan, seconds: 90);
            Output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {ended.PortfolioId}: {ended.Status}: {ended.StatusMessage}; {string.Join("; ", ended.Legs.Select(l => $"{l.Side} {l.InstrumentId} {l.FilledQuantity.ToDecimal()}/{l.Quantity.ToDecimal()} {l.Status}"))}");
            plans.Add(ended);
        }

        Assert.All(plans, p => Assert.Equal(PlanStatus.Completed, p.Status));
        await quoting.CancelAsync();
        await quotes;

        // Every block allocated once: allocations sum to the venues' fills per side, crosses net to zero.
        var blocks = new List<Block>();
        foreach (var listed in (await execution.ListBlocksAsync(new ListBlocksRequest { PageSize = 500 })).Blocks)
        {
            var block = (await execution.GetBlockAsync(new GetBlockRequest { BlockId = listed.BlockId })).Block;
            Assert.True(block.Allocated, $"block {block.BlockId} not allocated");
            Assert.Equal(block.Orders.Count, block.Orders.Select(o => o.ClientOrderId).Distinct().Count());
            foreach (var side in new[] { Side.Buy, Side.Sell })
            {
                var venueFilled = block.Orders.Where(o => o.Side == side).Sum(o => o.FilledQuantity.ToDecimal());
                Assert.Equal(venueFilled, block.Members.Where(m => m.Side == side).Sum(m => m.Allocated.ToDecimal()));
                Assert.Equal(venueFilled, block.Sides.Where(s => s.Side == side).Sum(s => s.Filled.ToDecimal()));
            }

            Assert.Equal(block.Members.Where(m => m.Side == Side.Buy).Sum(m => m.Crossed.ToDecimal()), block.Members.Where(m => m.Side == Side.Sell).Sum(m => m.Crossed.ToDecimal()));
            blocks.Add(block);
        }

        Assert.Contains(blocks, b => b.BlockId == waiting.BlockId);
        Assert.Contains(blocks, b => b.Crossed.ToDecimal() > 0); // the seller's DAX crossed with the buyers'
        var shares = blocks.SelectMany(b => b.Members.Select(m => (Block: b, Member: m))).ToArray();

        // Each plan's legs filled by exactly their shares, and each portfolio moved by exactly them.
        foreach (var plan in plans)
        {
            Assert.Empty((await execution.ListOrdersAsync(new ListOrdersRequest { PlanId = plan.PlanId })).Orders);
            var mine = shares.Where(s => s.Member.PlanId == plan.PlanId).ToArray();
            foreach (var leg in plan.Legs)
            {
                Assert.Equal(leg.FilledQuantity.ToDecimal(), mine.Where(s => s.Member.LegId == leg.LegId).Sum(s => s.Member.Crossed.ToDecimal() + s.Member.Allocated.ToDecimal()));
            }

            var portfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = plan.PortfolioId, SkipValuation = true })).Portfolio;
            var cash = Capital;
            var held = start[plan.PortfolioId].Positions.ToDictionary(p => p.InstrumentId, p => p.Quantity.ToDecimal(), StringComparer.Ordinal);
            foreach (var (block, member) in mine)
            {
                var sign = member.Side == Side.Buy ? 1m : -1m;
                var units = member.Crossed.ToDecimal() + member.Allocated.ToDecimal();
                var notional = (member.Crossed.ToDecimal() * block.CrossPrice.ToDecimal()) + (member.Allocated.ToDecimal() * (member.Allocated.ToDecimal() > 0 ? member.AveragePrice.ToDecimal() : 0m));
                cash -= (sign * notional) + member.Fee.ToDecimal();
                held[block.InstrumentId] = held.GetValueOrDefault(block.InstrumentId) + (sign * units);
            }

            Assert.Equal(cash, portfolio.Cash.ToDecimal());
            foreach (var (instrument, quantity) in held.Where(h => h.Value != 0))
            {
                Assert.Equal(quantity, portfolio.Positions.Single(p => p.InstrumentId == instrument).Quantity.ToDecimal());
            }
        }
    }

    /// <summary>Quotes DAX and SMI on the three simulated venues at their still mids, once a second, until cancelled.</summary>
    private static async Task QuoteUntilAsync(RebalanceMesh.Contracts.Pricing.V1.PricingService.PricingServiceClient pricing, CancellationToken cancellationToken)
    {
        var last = DateTimeOffset.UtcNow.AddSeconds(-1);
        while (!cancellationToken.IsCancellationRequested)
        {
            last = DateTimeOffset.UtcNow > last ? DateTimeOffset.UtcNow : last.AddMilliseconds(1);
            using var ingest = pricing.IngestQuotes(cancellationToken: CancellationToken.None);
            foreach (var (instrument, mid) in Mids)
            {
                foreach (var venue in new[] { "SIM-A", "SIM-B", "SIM-C" })
                {
                    await ingest.RequestStream.WriteAsync(new RebalanceMesh.Contracts.Pricing.V1.IngestQuotesRequest
                    {
                        Quote = new Quote { Venue = venue, InstrumentId = instrument, Bid = mid - 0.5m, Ask = mid + 0.5m, BidSize = 500m, AskSize = 500m, Timestamp = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTimeOffset(last) },
                    }, CancellationToken.None);
                }
            }

            await ingest.RequestStream.CompleteAsync();
            await ingest.ResponseAsync;
            try
            {
                await Task.Delay(1_000, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
