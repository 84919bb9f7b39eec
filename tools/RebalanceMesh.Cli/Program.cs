using RebalanceMesh.ServiceDefaults;
using System.CommandLine;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Planning.V1;

var repoOption = new Option<string?>("--repo") { Description = "Repository root holding tye.yaml (default: found from the current directory).", Recursive = true };
var planningOption = new Option<string?>("--planning") { Description = "Planning gRPC address (default: from the running mesh, else tye.yaml).", Recursive = true };
var jsonOption = new Option<bool>("--json") { Description = "Print the response as protobuf JSON.", Recursive = true };

var root = new RootCommand("rmesh — run the RebalanceMesh suite locally and call planning.") { repoOption, planningOption, jsonOption };

// --- mesh lifecycle ---------------------------------------------------------------------------
var redisOption = new Option<string?>("--redis") { Description = "Use this Redis (host:port) instead of starting one. Also RMESH_REDIS." };
var freePortsOption = new Option<bool>("--free-ports") { Description = "Take free ports instead of tye.yaml's." };
var keepDataOption = new Option<bool>("--keep-data") { Description = "Start the local redis-server on the previous run's data (AOF) instead of empty." };
var configurationOption = new Option<string>("--configuration") { Description = "Build configuration of the services to run (Debug or Release).", DefaultValueFactory = _ => "Debug" };
var containersOption = new Option<bool>("--containers") { Description = "Run Redis and the services as podman containers from the local images (deploy/images/build.sh), as the Kubernetes manifests run them." };
var tagOption = new Option<string>("--tag") { Description = "Tag of the local images (--containers).", DefaultValueFactory = _ => "dev" };
var up = new Command("up", "Start redis-server (unless --redis) and the four services from tye.yaml; wait until healthy.") { redisOption, freePortsOption, keepDataOption, configurationOption, containersOption, tagOption };
up.SetAction(async (parse, ct) =>
{
    var repo = Repo.Root(parse.GetValue(repoOption));
    if (parse.GetValue(containersOption))
    {
        await MeshContainers.UpAsync(MeshTopology.Load(Repo.TyePath(repo)), Repo.Options(repo, null, parse.GetValue(freePortsOption)), parse.GetValue(tagOption)!, Console.Out, ct);
        Console.WriteLine("Mesh is up in containers. `rmesh demo` runs a rebalance; `rmesh down` stops it.");
        return 0;
    }

    await MeshLauncher.UpAsync(MeshTopology.Load(Repo.TyePath(repo)), Repo.Options(repo, parse.GetValue(redisOption), parse.GetValue(freePortsOption)) with { KeepData = parse.GetValue(keepDataOption), Configuration = parse.GetValue(configurationOption)! }, Console.Out, ct);
    Console.WriteLine("Mesh is up. `rmesh demo` runs a rebalance; `rmesh down` stops it.");
    return 0;
});
root.Subcommands.Add(up);

var down = new Command("down", "Stop everything `rmesh up` started.");
down.SetAction(parse =>
{
    MeshLauncher.Down(Repo.StateDir(Repo.Root(parse.GetValue(repoOption))), Console.Out);
    return 0;
});
root.Subcommands.Add(down);

var status = new Command("status", "Show what is running.");
status.SetAction(parse =>
{
    var state = MeshState.TryLoad(Repo.StateDir(Repo.Root(parse.GetValue(repoOption))));
    if (state is null)
    {
        Console.WriteLine("The mesh is not running.");
        return 1;
    }

    Console.WriteLine($"redis      {state.RedisConnection}");
    foreach (var s in state.Services)
    {
        Console.WriteLine($"{s.Name,-10} {(MeshLauncher.IsAlive(s.Pid) ? "running" : "STOPPED"),-8} gRPC {s.GrpcUrl}  HTTP {s.HttpUrl}  pid {s.Pid}");
    }

    return 0;
});
root.Subcommands.Add(status);

var serviceArgument = new Argument<string>("service") { Description = "A service of the running mesh (pricing, risk, planning, execution, a replica's name) or redis." };
var restart = new Command("restart", "Restart one service of the running mesh: stopped gracefully and started again as it was (ports, environment); `rmesh down` stops the new process.") { serviceArgument };
restart.SetAction(async (parse, ct) =>
{
    var stateDir = Repo.StateDir(Repo.Root(parse.GetValue(repoOption)));
    var name = parse.GetValue(serviceArgument)!;
    try
    {
        var state = await MeshLauncher.RestartGracefullyAsync(stateDir, name, ct);
        Console.WriteLine(name == "redis" ? $"redis restarted (pid {state.RedisPid})" : $"{name} restarted (pid {state.Service(name).Pid}) and ready");
        return 0;
    }
    catch (InvalidOperationException ex)
    {
        Console.Error.WriteLine(ex.Message);
        return 1;
    }
});
root.Subcommands.Add(restart);

var followOption = new Option<bool>("--follow", "-f") { Description = "Keep printing what the service logs (across rotations) until Ctrl+C." };
var linesOption = new Option<int>("--lines", "-n") { Description = "How many of the last lines to print first.", DefaultValueFactory = _ => 100 };
var logs = new Command("logs", "Print one service's log (JSON lines; capped and rotated by the service: Telemetry:LogFileMaxBytes, LogFileKeep).") { serviceArgument, followOption, linesOption };
logs.SetAction(async (parse, ct) =>
{
    var stateDir = Repo.StateDir(Repo.Root(parse.GetValue(repoOption)));
    var name = parse.GetValue(serviceArgument)!;
    var state = MeshState.TryLoad(stateDir);
    var logFile = name == "redis" ? Path.Combine(stateDir, "logs", "redis.log") : state?.Services.FirstOrDefault(s => s.Name == name)?.LogFile;
    if (logFile is null)
    {
        Console.Error.WriteLine(state is null ? "The mesh is not running." : state.NoSuchService(name));
        return 1;
    }

    await ServiceLogs.PrintAsync(logFile, Math.Max(parse.GetValue(linesOption), 0), parse.GetValue(followOption), Console.Out, ct);
    return 0;
});
root.Subcommands.Add(logs);

var intervalOption = new Option<double>("--interval") { Description = "Seconds between refreshes.", DefaultValueFactory = _ => 2.0 };
var onceOption = new Option<bool>("--once") { Description = "Print one view (over one interval) and exit." };
var top = new Command("top", "A live view of the running mesh from each service's /metrics: per service and RPC the call rate, errors and p99; event lag per topic; monitored portfolios and their drift; plans running.") { intervalOption, onceOption };
top.SetAction(async (parse, ct) =>
{
    var state = MeshState.TryLoad(Repo.StateDir(Repo.Root(parse.GetValue(repoOption))));
    if (state is null)
    {
        Console.Error.WriteLine("The mesh is not running.");
        return 1;
    }

    await MeshTop.RunAsync(state, TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(intervalOption), 0.2, 60)), parse.GetValue(onceOption), Spectre.Console.AnsiConsole.Console, ct);
    return 0;
});
root.Subcommands.Add(top);

var roleOption = new Option<string>("--role") { Description = "viewer, trader or admin.", DefaultValueFactory = _ => MeshAuth.Viewer };
var subjectOption = new Option<string>("--subject") { Description = "The token's sub claim: who calls.", DefaultValueFactory = _ => "integrator" };
var token = new Command("token", "Print a development token (HS256, 12 hours) of the running mesh for a role, for clients such as examples/.") { roleOption, subjectOption };
token.SetAction(parse =>
{
    var state = MeshState.TryLoad(Repo.StateDir(Repo.Root(parse.GetValue(repoOption))));
    var role = parse.GetValue(roleOption)!;
    if (state?.Credentials is null || MeshAuth.Implied(role).Count == 0)
    {
        Console.Error.WriteLine(state?.Credentials is null ? "The mesh is not running (no credentials to sign with)." : $"'{role}' is not a role: viewer, trader or admin.");
        return 1;
    }

    Console.WriteLine(state.Credentials.Token(role, parse.GetValue(subjectOption)!));
    return 0;
});
root.Subcommands.Add(token);

var outOption = new Option<string>("--out") { Description = "Folder to write the bundle to.", DefaultValueFactory = _ => "proto-bundle" };
var protos = new Command("protos", "Write the contracts for integrators: the .proto sources with the google/rpc files their errors use, and one FileDescriptorSet (rebalancemesh.binpb) for dynamic clients. See examples/.") { outOption };
protos.SetAction(parse =>
{
    var repo = Repo.Root(parse.GetValue(repoOption));
    var directory = Path.GetFullPath(parse.GetValue(outOption)!);
    foreach (var file in ProtoBundle.Write(repo, directory))
    {
        Console.WriteLine(Path.Combine(directory, file));
    }

    return 0;
});
root.Subcommands.Add(protos);

// --- demo and traces --------------------------------------------------------------------------
var portfolioIdOption = new Option<string>("--portfolio") { Description = "Portfolio id.", DefaultValueFactory = _ => "demo-eu" };
var keepOption = new Option<bool>("--keep") { Description = "Leave a mesh that the demo started running." };
var bookOption = new Option<int>("--book") { Description = "Accounts of the second act (a model, a model change, a batch in block orders); 0 skips it.", DefaultValueFactory = _ => 1_000 };
var demo = new Command("demo", "Act one: create a portfolio, preview and submit a rebalance, print plan, fills, final weights and trace. Act two: a model followed by --book accounts changes; the batch report, its progress, the block orders and their allocation, the trace. Starts the mesh when it is not running.") { portfolioIdOption, keepOption, redisOption, bookOption };
demo.SetAction(async (parse, ct) =>
{
    var repo = Repo.Root(parse.GetValue(repoOption));
    var stateDir = Repo.StateDir(repo);
    var state = MeshState.TryLoad(stateDir);
    var started = false;
    if (state is null || !state.Services.All(s => MeshLauncher.IsAlive(s.Pid)))
    {
        if (state is not null)
        {
            MeshLauncher.Down(stateDir, TextWriter.Null);
        }

        Console.WriteLine("Starting the mesh …");
        state = await MeshLauncher.UpAsync(MeshTopology.Load(Repo.TyePath(repo)), Repo.Options(repo, parse.GetValue(redisOption), freePorts: false), Console.Out, ct);
        started = true;
        Console.WriteLine();
    }

    try
    {
        await new DemoRunner(state, Path.Combine(stateDir, "spans"), Console.Out).RunAsync(parse.GetValue(portfolioIdOption)!, ct);
        if (Math.Clamp(parse.GetValue(bookOption), 0, 10_000) is > 0 and var accounts)
        {
            var book = await new DemoBookAct(state, Path.Combine(stateDir, "spans"), Console.Out).RunAsync(accounts, ct);
            return book.Final.Done ? 0 : 1; // a plan the market left unfilled is shown, as in act one; a batch that did not end is a failure
        }

        return 0;
    }
    finally
    {
        if (started && !parse.GetValue(keepOption))
        {
            Console.WriteLine();
            MeshLauncher.Down(stateDir, Console.Out);
        }
    }
});
root.Subcommands.Add(demo);

var traceIdArgument = new Argument<string>("trace-id") { Description = "W3C trace id (32 hex digits), as plans report it." };
var trace = new Command("trace", "Print one trace from the local span files.") { traceIdArgument };
trace.SetAction(parse =>
{
    var spans = SpanFiles.ReadTrace(Path.Combine(Repo.StateDir(Repo.Root(parse.GetValue(repoOption))), "spans"), parse.GetValue(traceIdArgument)!);
    SpanFiles.PrintTree(spans, Console.Out, maxLines: 500);
    return spans.Count > 0 ? 0 : 1;
});
root.Subcommands.Add(trace);

// --- planning client --------------------------------------------------------------------------
var dataOption = new Option<string?>("--data") { Description = "The message as protobuf JSON." };
var fileOption = new Option<FileInfo?>("--file") { Description = "A file holding the message as protobuf JSON." };
var portfolioOption = new Option<string>("--portfolio") { Description = "Portfolio id.", Required = true };
var planOption = new Option<string>("--plan") { Description = "Plan id.", Required = true };
var forceOption = new Option<bool>("--force") { Description = "Trade to target even inside the bands." };
var expectedVersionOption = new Option<long>("--expected-version") { Description = "0: must be new; -1: no check; else the version last seen.", DefaultValueFactory = _ => -1 };

Command Rpc(string name, string description, Func<ParseResultContext, Task<IMessage>> call, params Option[] options)
{
    var command = new Command(name, description);
    foreach (var option in options)
    {
        command.Options.Add(option);
    }

    command.SetAction(async (parse, ct) =>
    {
        using var channel = Repo.PlanningChannel(parse.GetValue(repoOption), parse.GetValue(planningOption));
        var client = new PlanningService.PlanningServiceClient(channel.WithDefaultDeadline());
        return await Output.CallAsync(() => call(new ParseResultContext(parse, client, ct)), parse.GetValue(jsonOption));
    });
    return command;
}

T Parse<T>(ParseResultContext c, MessageParser<T> parser)
    where T : IMessage<T> => Output.ReadMessage(parser, c.Parse.GetValue(dataOption), c.Parse.GetValue(fileOption));

root.Subcommands.Add(Rpc("upsert-portfolio", "UpsertPortfolio: create or replace a portfolio (Portfolio JSON).",
    async c => await c.Client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = Parse(c, Portfolio.Parser), ExpectedVersion = c.Parse.GetValue(expectedVersionOption) }, cancellationToken: c.Token),
    dataOption, fileOption, expectedVersionOption));
root.Subcommands.Add(Rpc("get-portfolio", "GetPortfolio: a portfolio, its policy and valuation.",
    async c => await c.Client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = c.Parse.GetValue(portfolioOption)! }, cancellationToken: c.Token),
    portfolioOption));
root.Subcommands.Add(Rpc("set-policy", "SetPolicy: set a portfolio's policy (Policy JSON).",
    async c => await c.Client.SetPolicyAsync(new SetPolicyRequest { Policy = Parse(c, Policy.Parser) }, cancellationToken: c.Token),
    dataOption, fileOption));
root.Subcommands.Add(Rpc("preview", "PreviewRebalance: the plan that would run now.",
    async c => await c.Client.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = c.Parse.GetValue(portfolioOption)!, Force = c.Parse.GetValue(forceOption) }, cancellationToken: c.Token),
    portfolioOption, forceOption));
var keyOption = new Option<string?>("--key") { Description = "Idempotency key (default: a new one)." };
root.Subcommands.Add(Rpc("submit", "SubmitRebalance: compute, store and approve a plan.",
    async c => await c.Client.SubmitRebalanceAsync(new SubmitRebalanceRequest
    {
        PortfolioId = c.Parse.GetValue(portfolioOption)!,
        Force = c.Parse.GetValue(forceOption),
        IdempotencyKey = c.Parse.GetValue(keyOption) ?? "cli-" + Guid.NewGuid().ToString("N"),
    }, cancellationToken: c.Token),
    portfolioOption, forceOption, keyOption));
root.Subcommands.Add(Rpc("get-plan", "GetPlan: one plan.",
    async c => await c.Client.GetPlanAsync(new GetPlanRequest { PlanId = c.Parse.GetValue(planOption)! }, cancellationToken: c.Token),
    planOption));
var cancelReasonOption = new Option<string?>("--reason") { Description = "Why (recorded with the plan)." };
root.Subcommands.Add(Rpc("cancel-plan", "CancelPlan: stop a plan that has not ended (what filled stays filled).",
    async c => await c.Client.CancelPlanAsync(new CancelPlanRequest { PlanId = c.Parse.GetValue(planOption)!, Reason = c.Parse.GetValue(cancelReasonOption) ?? string.Empty }, cancellationToken: c.Token),
    planOption, cancelReasonOption));
var pageSizeOption = new Option<int>("--page-size") { Description = "Plans per page (1–100)." , DefaultValueFactory = _ => 20 };
var pageTokenOption = new Option<string?>("--page-token") { Description = "Token of the page to read." };
root.Subcommands.Add(Rpc("list-plans", "ListPlans: a portfolio's plans, newest first.",
    async c => await c.Client.ListPlansAsync(new ListPlansRequest { PortfolioId = c.Parse.GetValue(portfolioOption)!, PageSize = c.Parse.GetValue(pageSizeOption), PageToken = c.Parse.GetValue(pageTokenOption) ?? string.Empty }, cancellationToken: c.Token),
    portfolioOption, pageSizeOption, pageTokenOption));
var haltedOption = new Option<bool>("--halted") { Description = "true halts trading, false resumes.", Required = true };
var reasonOption = new Option<string?>("--reason") { Description = "Why (required when halting)." };
root.Subcommands.Add(Rpc("set-halt", "SetTradingHalt: halt or resume trading.",
    async c => await c.Client.SetTradingHaltAsync(new SetTradingHaltRequest { Halted = c.Parse.GetValue(haltedOption), Reason = c.Parse.GetValue(reasonOption) ?? string.Empty }, cancellationToken: c.Token),
    haltedOption, reasonOption));

var modelOption = new Option<string>("--model") { Description = "Model id.", Required = true };
root.Subcommands.Add(Rpc("create-model", "CreateModel: a policy many portfolios follow (Model JSON).",
    async c => await c.Client.CreateModelAsync(new CreateModelRequest { Model = Parse(c, Model.Parser) }, cancellationToken: c.Token),
    dataOption, fileOption));
root.Subcommands.Add(Rpc("update-model", "UpdateModel: a model's next version (Model JSON), rolled out to its linked portfolios.",
    async c => await c.Client.UpdateModelAsync(new UpdateModelRequest { Model = Parse(c, Model.Parser), ExpectedVersion = c.Parse.GetValue(expectedVersionOption) }, cancellationToken: c.Token),
    dataOption, fileOption, expectedVersionOption));
root.Subcommands.Add(Rpc("get-model", "GetModel: a model and how many portfolios follow it.",
    async c => await c.Client.GetModelAsync(new GetModelRequest { ModelId = c.Parse.GetValue(modelOption)! }, cancellationToken: c.Token),
    modelOption));
root.Subcommands.Add(Rpc("list-models", "ListModels: the models by id.",
    async c => await c.Client.ListModelsAsync(new ListModelsRequest { PageSize = c.Parse.GetValue(pageSizeOption), PageToken = c.Parse.GetValue(pageTokenOption) ?? string.Empty }, cancellationToken: c.Token),
    pageSizeOption, pageTokenOption));
var linkModelOption = new Option<string?>("--model") { Description = "Model to follow; leave out to unlink." };
root.Subcommands.Add(Rpc("link-portfolio", "LinkPortfolio: make a portfolio follow a model (overrides as ModelOverrides JSON), or unlink it.",
    async c => await c.Client.LinkPortfolioAsync(new LinkPortfolioRequest
    {
        PortfolioId = c.Parse.GetValue(portfolioOption)!,
        ModelId = c.Parse.GetValue(linkModelOption) ?? string.Empty,
        Overrides = c.Parse.GetValue(dataOption) is null && c.Parse.GetValue(fileOption) is null ? null : Parse(c, ModelOverrides.Parser),
    }, cancellationToken: c.Token),
    portfolioOption, linkModelOption, dataOption, fileOption));

var batchModelOption = new Option<string?>("--model") { Description = "Every portfolio linked to this model." };
var batchPortfoliosOption = new Option<string?>("--portfolios") { Description = "These portfolios, comma-separated." };
var batchFilterOption = new Option<string>("--filter") { Description = "out-of-tolerance (default), new-cash or all.", DefaultValueFactory = _ => "out-of-tolerance" };
batchFilterOption.AcceptOnlyFromAmong("out-of-tolerance", "new-cash", "all");
BatchFilter BatchFilterOf(ParseResult parse) => parse.GetValue(batchFilterOption) switch
{
    "all" => BatchFilter.All,
    "new-cash" => BatchFilter.NewCash,
    _ => BatchFilter.OutOfTolerance,
};
var omitPlansOption = new Option<bool>("--omit-plans") { Description = "Leave each account's full plan out of the report (required above 1,000 accounts)." };
var batch = new Command("batch", "Rebalance many portfolios at once: a model's, or a list.");
batch.Subcommands.Add(Rpc("preview", "PreviewBatchRebalance: every selected account's plan on one market snapshot, with the report per account and per instrument.",
    async c =>
    {
        var request = new PreviewBatchRebalanceRequest
        {
            Filter = BatchFilterOf(c.Parse),
            OmitPlans = c.Parse.GetValue(omitPlansOption),
        };
        if (c.Parse.GetValue(batchPortfoliosOption) is { } list)
        {
            request.Portfolios = new PortfolioList { PortfolioIds = { list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) } };
        }
        else
        {
            request.ModelId = c.Parse.GetValue(batchModelOption) ?? string.Empty;
        }

        return await c.Client.PreviewBatchRebalanceAsync(request, cancellationToken: c.Token);
    },
    batchModelOption, batchPortfoliosOption, batchFilterOption, omitPlansOption));
var batchKeyOption = new Option<string>("--key") { Description = "The batch's idempotency key (the same key again returns the plans it made).", Required = true };
batch.Subcommands.Add(Rpc("submit", "SubmitBatchRebalance: submit every selected account's plan, on one market snapshot, once per batch key.",
    async c =>
    {
        var request = new SubmitBatchRebalanceRequest
        {
            Filter = BatchFilterOf(c.Parse),
            BatchKey = c.Parse.GetValue(batchKeyOption)!,
            OmitPlans = c.Parse.GetValue(omitPlansOption),
        };
        if (c.Parse.GetValue(batchPortfoliosOption) is { } list)
        {
            request.Portfolios = new PortfolioList { PortfolioIds = { list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) } };
        }
        else
        {
            request.ModelId = c.Parse.GetValue(batchModelOption) ?? string.Empty;
        }

        return await c.Client.SubmitBatchRebalanceAsync(request, cancellationToken: c.Token);
    },
    batchModelOption, batchPortfoliosOption, batchFilterOption, batchKeyOption, omitPlansOption));
var batchWatch = new Command("watch", "WatchBatch: a submitted batch's plans by status, as they execute, until every plan has ended.") { batchKeyOption };
batchWatch.SetAction(async (parse, ct) =>
{
    using var channel = Repo.PlanningChannel(parse.GetValue(repoOption), parse.GetValue(planningOption));
    var client = new PlanningService.PlanningServiceClient(channel.WithDefaultDeadline());
    var call = client.WatchBatch(new WatchBatchRequest { BatchKey = parse.GetValue(batchKeyOption)! }, cancellationToken: ct);
    return await Output.StreamAsync(call, update => Output.Print(update, parse.GetValue(jsonOption)), limit: 0, ct);
});
batch.Subcommands.Add(batchWatch);
root.Subcommands.Add(batch);

var blockIdOption = new Option<string?>("--id") { Description = "One block, whole (members, cross, sides, child orders, allocation)." };
var blocks = new Command("blocks", "Execution's block orders: ListBlocks (newest first), or GetBlock with --id.") { blockIdOption, pageSizeOption };
blocks.SetAction(async (parse, ct) =>
{
    using var channel = Repo.ServiceChannel("execution", parse.GetValue(repoOption), null);
    var execution = new RebalanceMesh.Contracts.Execution.V1.ExecutionService.ExecutionServiceClient(channel.WithDefaultDeadline());
    return await Output.CallAsync(async () => parse.GetValue(blockIdOption) is { } id
        ? await execution.GetBlockAsync(new RebalanceMesh.Contracts.Execution.V1.GetBlockRequest { BlockId = id }, cancellationToken: ct)
        : await execution.ListBlocksAsync(new RebalanceMesh.Contracts.Execution.V1.ListBlocksRequest { PageSize = parse.GetValue(pageSizeOption) }, cancellationToken: ct), parse.GetValue(jsonOption));
});
root.Subcommands.Add(blocks);

var watchPortfolioOption = new Option<string?>("--portfolio") { Description = "Watch a portfolio's plans." };
var watchPlanOption = new Option<string?>("--plan") { Description = "Watch one plan until it ends." };
var watch = new Command("watch-plans", "WatchPlans: stream plan changes.") { watchPortfolioOption, watchPlanOption };
watch.SetAction(async (parse, ct) =>
{
    using var channel = Repo.PlanningChannel(parse.GetValue(repoOption), parse.GetValue(planningOption));
    var client = new PlanningService.PlanningServiceClient(channel.WithDefaultDeadline());
    var call = client.WatchPlans(new WatchPlansRequest { PortfolioId = parse.GetValue(watchPortfolioOption) ?? string.Empty, PlanId = parse.GetValue(watchPlanOption) ?? string.Empty }, cancellationToken: ct);
    return await Output.StreamAsync(call, update => Output.Print(update, parse.GetValue(jsonOption)), limit: 0, ct);
});
root.Subcommands.Add(watch);

var alertsPortfolioOption = new Option<string?>("--portfolio") { Description = "Only this portfolio's alerts." };
var watchAlerts = new Command("watch-alerts", "WatchAlerts: stream the monitor's policy alerts.") { alertsPortfolioOption };
watchAlerts.SetAction(async (parse, ct) =>
{
    using var channel = Repo.PlanningChannel(parse.GetValue(repoOption), parse.GetValue(planningOption));
    var client = new PlanningService.PlanningServiceClient(channel.WithDefaultDeadline());
    var call = client.WatchAlerts(new WatchAlertsRequest { PortfolioId = parse.GetValue(alertsPortfolioOption) ?? string.Empty }, cancellationToken: ct);
    return await Output.StreamAsync(call, update => Output.Print(update, parse.GetValue(jsonOption)), limit: 0, ct);
});
root.Subcommands.Add(watchAlerts);

var historyFileArgument = new Argument<FileInfo>("file") { Description = "CSV of daily closes: 'date,DAX,CAC,…' (one column per instrument) or 'date,instrument,close'." };
var importHistory = new Command("import-history", "ImportPriceHistory: load your own daily closes from a CSV file (idempotent; corrections replace).") { historyFileArgument };
importHistory.SetAction(async (parse, ct) =>
{
    IReadOnlyDictionary<string, List<(DateOnly Day, decimal Close)>> closes;
    try
    {
        using var reader = parse.GetValue(historyFileArgument)!.OpenText();
        closes = HistoryImport.ParseCsv(reader);
    }
    catch (Exception ex) when (ex is FormatException or IOException)
    {
        Console.Error.WriteLine(ex.Message);
        return 2;
    }

    using var channel = Repo.ServiceChannel("pricing", parse.GetValue(repoOption), null);
    var pricing = new RebalanceMesh.Contracts.Pricing.V1.PricingService.PricingServiceClient(channel.WithDefaultDeadline());
    return await Output.CallAsync(async () =>
    {
        var summary = new RebalanceMesh.Contracts.Pricing.V1.ImportPriceHistoryResponse();
        foreach (var (instrument, stored, replaced, total) in await HistoryImport.ImportAsync(pricing, closes, ct))
        {
            Console.WriteLine($"{instrument,-12} {stored,6} closes stored ({replaced} replaced), {total} kept");
            summary.StoredCount += stored;
            summary.ReplacedCount += replaced;
        }

        return (IMessage)summary;
    }, parse.GetValue(jsonOption));
});
root.Subcommands.Add(importHistory);

root.Subcommands.Add(PricingCommands.Create(repoOption, jsonOption));
root.Subcommands.Add(BacktestCommand.Create(repoOption, jsonOption));
root.Subcommands.Add(MeshBenchmark.Create(repoOption, jsonOption));
root.Subcommands.Add(MonitorBenchmark.Create(repoOption));
root.Subcommands.Add(BookBenchmark.Create(repoOption));
foreach (var command in LoadCommands.Create(repoOption))
{
    root.Subcommands.Add(command);
}

return await root.Parse(args).InvokeAsync();

/// <summary>What an RPC subcommand's call needs.</summary>
internal sealed record ParseResultContext(ParseResult Parse, PlanningService.PlanningServiceClient Client, CancellationToken Token);
