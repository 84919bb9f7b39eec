using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Cli;

/// <summary>What a book benchmark measured.</summary>
/// <param name="Plans">Plans the batch submitted (accounts with trades).</param>
/// <param name="Completed">Of those, plans that completed (every leg filled).</param>
/// <param name="Legs">Legs over every plan (all trades here): a lower bound of the child orders the plans would send alone (each leg sends at least one).</param>
/// <param name="ChildOrders">Venue child orders sent: the blocks' and the plans' own.</param>
/// <param name="Blocks">Block orders allocated.</param>
/// <param name="Crossed">Units crossed internally between accounts, over every block.</param>
/// <param name="Traded">Units traded by the accounts (crossed and at the venues).</param>
/// <param name="ShortfallBps">Mean implementation shortfall versus arrival over the filled legs, in basis points.</param>
/// <param name="Seconds">From the model change to the last plan's end.</param>
/// <param name="SubmitSeconds">Of those, until the batch was submitted (rollout and planning).</param>
/// <param name="WarmUp">Accounts of the warm-up run on the same mesh before the measured one (0: a mesh that never traded).</param>
public sealed record BookBenchmarkResult(int Portfolios, int Instruments, bool Blocks, int Plans, int Completed, long Legs, long ChildOrders, int BlockCount, decimal Crossed, decimal Traded, double ShortfallBps, double Seconds, double SubmitSeconds, double SetUpSeconds, int WarmUp = 0)
{
    /// <summary>Venue child orders per trade leg: with blocks, the share of the orders the plans would send alone at the least.</summary>
    public double ChildOrdersPerLeg => Legs > 0 ? (double)ChildOrders / Legs : 0;

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Portfolios} portfolios × {Instruments} instruments ({(Blocks ? "block orders with internal crossing" : "each plan alone")}, set up in {SetUpSeconds:F1} s, {(WarmUp > 0 ? $"after a warm-up of {WarmUp} accounts" : "on a mesh that never traded")}): model change → {Completed}/{Plans} plans complete in {Seconds:F1} s (batch submitted after {SubmitSeconds:F1} s); {Legs} trade legs, {ChildOrders} venue child orders ({ChildOrdersPerLeg:P2} of the legs), {BlockCount} blocks, {Crossed:0.##} of {Traded:0.##} units crossed internally ({(Traded > 0 ? Crossed / Traded : 0):P1}); mean shortfall vs arrival {ShortfallBps:F2} bps");
}

/// <summary>
/// `rmesh bench-book`: its own mesh (no quote feed; <c>--instruments</c> instruments quoted still on three deep venues,
/// a year of history each), a model over those instruments (equal weights, 95 % invested, a 1 pp band, block orders
/// with internal crossing — or each plan alone with <c>--alone</c>) and <c>--portfolios</c> accounts linked to it, each
/// holding the model's weights ±30 % (so after a change some accounts buy what others sell). Measured: the model
/// changes (even instruments' weights up 15 %, odd ones down 15 %), its rollout reaches every account, one
/// batch submits every account's plan (filter ALL), and WatchBatch follows them until every plan has ended. Reports
/// the time from the change to the last end, the venue child orders sent (the blocks' and the plans' own) against the
/// trade legs (each leg alone sends at least one), the blocks and units crossed, and the mean shortfall versus arrival
/// (execution's legs). Before it, by default, the same run on a model of its own with <c>--warm-up</c> accounts: a
/// mesh in service has traded before, while a fresh one spends much of its first minute in the tiered JIT (a third
/// of planning's and execution's CPU, perf). Loopback only, bounded in count and time.
/// </summary>
public static class BookBenchmark
{
    public static Command Create(Option<string?> repoOption)
    {
        var portfoliosOption = new Option<int>("--portfolios") { Description = "Accounts linked to the model (2 to 10,000).", DefaultValueFactory = _ => 10_000 };
        var instrumentsOption = new Option<int>("--instruments") { Description = "Instruments of the model (2 to 50).", DefaultValueFactory = _ => 20 };
        var aloneOption = new Option<bool>("--alone") { Description = "Each plan sends its own orders (no block orders), for comparison." };
        var warmUpOption = new Option<int>("--warm-up") { Description = "Accounts of a warm-up run on a model of their own before the measured one (0: measure a mesh that never traded).", DefaultValueFactory = _ => 1_000 };
        var concurrencyOption = new Option<int>("--concurrency") { Description = "Plans the batch builds at once (1 to 256).", DefaultValueFactory = _ => 128 };
        var configurationOption = new Option<string>("--configuration") { Description = "Build configuration of the services.", DefaultValueFactory = _ => "Release" };
        var command = new Command("bench-book", "A model change over a book of linked accounts, to every plan complete, with block orders (starts and stops its own mesh).")
        {
            portfoliosOption, instrumentsOption, aloneOption, warmUpOption, concurrencyOption, configurationOption,
        };
        command.SetAction(async (parse, ct) =>
        {
            var repo = Repo.Root(parse.GetValue(repoOption));
            var configuration = parse.GetValue(configurationOption) ?? "Release";
            if (!await OwnMesh.BuildAsync(repo, configuration, Console.Out, ct))
            {
                return 1;
            }

            var result = await RunAsync(repo, Math.Clamp(parse.GetValue(portfoliosOption), 2, 10_000), Math.Clamp(parse.GetValue(instrumentsOption), 2, 50), !parse.GetValue(aloneOption), configuration, Console.Out, ct, Math.Clamp(parse.GetValue(concurrencyOption), 1, 256), Math.Clamp(parse.GetValue(warmUpOption), 0, 10_000));
            Console.WriteLine(result.Describe());
            return result.Completed == result.Plans ? 0 : 1;
        });
        return command;
    }

    public static async Task<BookBenchmarkResult> RunAsync(string repo, int portfolios, int instrumentCount, bool blocks, string configuration, TextWriter log, CancellationToken cancellationToken, int concurrency = 128, int warmUp = 0)
    {
        var instruments = Enumerable.Range(1, instrumentCount).Select(i => $"BK{i:D2}").ToArray();
        var env = new Dictionary<string, string>
        {
            ["Pricing__Feed"] = "none",
            ["Execution__MaxConcurrentPlans"] = "2000",
        };
        for (var i = 0; i < instruments.Length; i++)
        {
            env[$"Pricing__Instruments__{i}"] = instruments[i];
        }

        using var own = await OwnMesh.StartAsync(repo, env, configuration, "rmesh-bench-book-", log, cancellationToken);
        var state = own.State;
        using var pricingChannel = state.ServiceChannel("pricing");
        using var planningChannel = state.PlanningChannel();
        using var executionChannel = state.ServiceChannel("execution");
        var pricing = new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline());
        var execution = new ExecutionService.ExecutionServiceClient(executionChannel.WithDefaultDeadline());
        using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(state.RedisConnection);
        var book = new Book(new PlanningService.PlanningServiceClient(planningChannel), pricing, redis.GetDatabase(), instruments, instruments.Select((_, i) => 50m + (5m * i)).ToArray(), blocks, concurrency, log);
        await MonitorBenchmark.QuoteAsync(pricing, instruments, book.Prices, cancellationToken);
        await MonitorBenchmark.ImportHistoryAsync(pricing, instruments, book.Prices, cancellationToken);

        // Quotes stay fresh (a minute's staleness) while the book is set up and trades: requoted every 10 s, still.
        using var quoting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var requote = Task.Run(async () =>
        {
            while (!quoting.IsCancellationRequested)
            {
                await Task.Delay(10_000, quoting.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                if (!quoting.IsCancellationRequested)
                {
                    await MonitorBenchmark.QuoteAsync(pricing, instruments, book.Prices, CancellationToken.None);
                }
            }
        }, CancellationToken.None);

        try
        {
            var db = redis.GetDatabase();
            if (warmUp > 0)
            {
                // The same run on a model of its own first, so the measured one finds the services as a mesh that has
                // traded before finds them (code compiled and optimised by the tiered JIT, connections and pools grown).
                var warmed = Stopwatch.GetTimestamp();
                var warmRun = await book.RebalanceAsync(await book.SetUpAsync("warm-up", warmUp, cancellationToken), cancellationToken);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"warm-up: {warmUp} accounts of model 'warm-up' rebalanced in {Stopwatch.GetElapsedTime(warmed).TotalSeconds:F1} s ({warmRun.Progress?.Completed} of {warmRun.Submitted.Planned} plans completed)"));
            }

            var blocksBefore = (await db.SortedSetRangeByRankAsync("exe:blocks")).Select(v => v.ToString()).ToHashSet(StringComparer.Ordinal);
            var setUp = Stopwatch.GetTimestamp();
            var linked = await book.SetUpAsync("book", portfolios, cancellationToken);
            var setUpSeconds = Stopwatch.GetElapsedTime(setUp).TotalSeconds;
            var run = await book.RebalanceAsync(linked, cancellationToken);
            var (submitted, last) = (run.Submitted, run.Progress);

            // What went to the venues, crossed and cost, read back from execution.
            var planIds = submitted.Accounts.Where(a => a.Status == PlanStatus.Approved).Select(a => a.PlanId).ToArray();
            var legs = submitted.Accounts.Where(a => a.Status == PlanStatus.Approved).Sum(a => (long)a.Trades);
            long childOrders = 0;
            foreach (var chunk in planIds.Chunk(1_000))
            {
                childOrders += (await Task.WhenAll(chunk.Select(id => db.ListLengthAsync("exe:plan-orders:" + id)))).Sum();
            }

            var blockIds = (await db.SortedSetRangeByRankAsync("exe:blocks")).Select(v => v.ToString()).Where(id => !blocksBefore.Contains(id)).ToArray();
            decimal crossed = 0, traded = 0;
            foreach (var id in blockIds)
            {
                var block = (await execution.GetBlockAsync(new GetBlockRequest { BlockId = id }, cancellationToken: cancellationToken)).Block;
                childOrders += block.Orders.Count;
                crossed += block.Crossed.ToDecimal();
            }

            double shortfall = 0;
            var filledLegs = 0;
            foreach (var chunk in planIds.Chunk(1_000))
            {
                foreach (var value in await db.StringGetAsync(chunk.Select(id => (StackExchange.Redis.RedisKey)("exe:plan:" + id)).ToArray()))
                {
                    if (value.IsNull)
                    {
                        continue;
                    }

                    foreach (var leg in PlanExecution.Parser.ParseFrom((byte[])value!).Legs.Where(l => l.FilledQuantity.ToDecimal() > 0))
                    {
                        shortfall += leg.ShortfallBps;
                        filledLegs++;
                        traded += leg.FilledQuantity.ToDecimal();
                    }
                }
            }

            return new BookBenchmarkResult(portfolios, instrumentCount, blocks, planIds.Length, last?.Completed ?? 0, legs, childOrders, blockIds.Length, crossed * 2, traded,
                filledLegs > 0 ? shortfall / filledLegs : 0, run.Seconds, run.SubmitSeconds, setUpSeconds, warmUp);
        }
        finally
        {
            await quoting.CancelAsync();
            await requote;
        }
    }

    /// <summary>A model's accounts as set up: the model as created and the accounts linked to it.</summary>
    private sealed record LinkedBook(Model Model, string[] Accounts);

    /// <summary>One rebalance of a model's accounts: the batch as submitted, when (from the model change), and how its plans ended.</summary>
    private sealed record Rebalanced(SubmitBatchRebalanceResponse Submitted, double SubmitSeconds, double Seconds, BatchProgress? Progress);

    /// <summary>The benchmark's book: models over its instruments, accounts linked to them, and one rebalance of a model's accounts.</summary>
    private sealed class Book(PlanningService.PlanningServiceClient planning, PricingService.PricingServiceClient pricing, StackExchange.Redis.IDatabase db, string[] instruments, decimal[] prices, bool blocks, int concurrency, TextWriter log)
    {
        public decimal[] Prices => prices;

        private double Weight => 0.95 / instruments.Length;

        /// <summary>
        /// A model over the instruments (equal weights, 95 % invested, a 1 pp band) and <paramref name="count"/> accounts
        /// linked to it, each holding the weights ±30 %.
        /// </summary>
        public async Task<LinkedBook> SetUpAsync(string modelId, int count, CancellationToken cancellationToken)
        {
            var started = Stopwatch.GetTimestamp();
            var model = new Model
            {
                ModelId = modelId,
                Name = "Benchmark book " + modelId,
                Policy = new Policy
                {
                    AbsoluteBand = 0.01,
                    ExecutionMode = ExecutionMode.Manual,
                    ExecutionStyle = new ExecutionStyle { BlockTrading = blocks ? BlockTrading.BlockAndCross : BlockTrading.Alone },
                },
            };
            model.Policy.Targets.AddRange(instruments.Select(id => new TargetWeight { InstrumentId = id, Weight = Weight }));
            var created = (await planning.CreateModelAsync(new CreateModelRequest { Model = model }, deadline: Deadline(30), cancellationToken: cancellationToken)).Model;

            var random = new Random(29);
            var books = Enumerable.Range(0, count).Select(k => (Id: $"{modelId}-{k:D5}", Noise: instruments.Select(_ => 1 + (0.6 * (random.NextDouble() - 0.5))).ToArray())).ToArray();
            await Parallel.ForEachAsync(books, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = cancellationToken }, async (account, ct) =>
            {
                var portfolio = new Portfolio { PortfolioId = account.Id, BaseCurrency = "EUR", Cash = 5_000m };
                for (var i = 0; i < instruments.Length; i++)
                {
                    portfolio.Positions.Add(new Position { InstrumentId = instruments[i], Quantity = decimal.Floor((decimal)(Weight * account.Noise[i]) * 100_000m / prices[i]) });
                }

                await planning.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = portfolio, ExpectedVersion = -1 }, deadline: Deadline(30), cancellationToken: ct);
                await planning.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = account.Id, ModelId = modelId }, deadline: Deadline(30), cancellationToken: ct);
            });
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count} accounts linked to model '{modelId}' in {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s"));
            return new LinkedBook(created, books.Select(b => b.Id).ToArray());
        }

        /// <summary>
        /// The model changes (even instruments' weights up 15 %, odd ones down as much, still 95 % invested), the change
        /// reaches every account, one batch submits every account's plan, and WatchBatch follows them to their end.
        /// Times are from the change.
        /// </summary>
        public async Task<Rebalanced> RebalanceAsync(LinkedBook book, CancellationToken cancellationToken)
        {
            var modelId = book.Model.ModelId;
            await MonitorBenchmark.QuoteAsync(pricing, instruments, prices, cancellationToken);
            var started = Stopwatch.GetTimestamp();
            var changed = book.Model.Clone();
            var raw = instruments.Select((_, i) => Weight * (i % 2 == 0 ? 1.15 : 0.85)).ToArray();
            changed.Policy.Targets.Clear();
            changed.Policy.Targets.AddRange(instruments.Select((id, i) => new TargetWeight { InstrumentId = id, Weight = raw[i] * 0.95 / raw.Sum() }));
            var update = await planning.UpdateModelAsync(new UpdateModelRequest { Model = changed, ExpectedVersion = book.Model.Version }, deadline: Deadline(60), cancellationToken: cancellationToken);
            await WaitForRolloutAsync(db, book.Accounts, update.Model.Version, cancellationToken);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"model '{modelId}' version {update.Model.Version} reached every account after {Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s"));

            var batchKey = "bench-book-" + modelId;
            var submitted = await planning.SubmitBatchRebalanceAsync(new SubmitBatchRebalanceRequest { ModelId = modelId, Filter = BatchFilter.All, BatchKey = batchKey, Concurrency = concurrency, OmitPlans = true },
                deadline: Deadline(1_800), cancellationToken: cancellationToken);
            var submitSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"batch submitted after {submitSeconds:F1} s: {submitted.Planned} plans, {submitted.NoAction} without action, {submitted.Failed} failed"));

            // Every plan to its end, as WatchBatch tells it.
            BatchProgress? last = null;
            using var watch = planning.WatchBatch(new WatchBatchRequest { BatchKey = batchKey }, deadline: Deadline(1_800), cancellationToken: cancellationToken);
            while (await watch.ResponseStream.MoveNext(cancellationToken))
            {
                last = watch.ResponseStream.Current.Progress;
            }

            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"every plan ended after {seconds:F1} s: {last?.Completed} completed, {last?.PartiallyFilled} partly filled, {last?.Failed} failed"));
            return new Rebalanced(submitted, submitSeconds, seconds, last);
        }
    }

    private static DateTime Deadline(int seconds) => DateTime.UtcNow.AddSeconds(seconds);

    /// <summary>Waits until every account's stored policy follows the model's <paramref name="version"/> (read from Redis in pipelined chunks).</summary>
    private static async Task WaitForRolloutAsync(StackExchange.Redis.IDatabase db, IReadOnlyList<string> ids, long version, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 600; attempt++)
        {
            var behind = 0;
            foreach (var chunk in ids.Chunk(1_000))
            {
                var values = await db.StringGetAsync(chunk.Select(id => (StackExchange.Redis.RedisKey)("pln:policy:" + id)).ToArray());
                behind += values.Count(v => v.IsNull || Policy.Parser.ParseFrom((byte[])v!).ModelLink?.ModelVersion != version);
            }

            if (behind == 0)
            {
                return;
            }

            await Task.Delay(500, cancellationToken);
        }

        throw new TimeoutException("The model change did not reach every account within five minutes.");
    }
}
