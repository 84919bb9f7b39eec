using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Planning;
using RebalanceMesh.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("planning");
builder.AddEventBus("planning");

builder.Services.TryAddTimeProvider();

// Clients authenticate with a JWT bearer token: viewers read and preview, traders also submit and cancel, admins also change
// portfolios, policies and the trading halt. Services of the mesh (risk reading a stored portfolio) use the mesh
// credential and may only read portfolios.
string Rpc(string method) => $"/{RebalanceMesh.Contracts.Planning.V1.PlanningService.Descriptor.FullName}/{method}";
builder.AddMeshAuthentication(new Dictionary<string, string[]>
{
    [Rpc("GetPortfolio")] = [MeshAuth.Viewer, MeshAuth.Mesh],
    [Rpc("PreviewRebalance")] = [MeshAuth.Viewer],
    [Rpc("GetPlan")] = [MeshAuth.Viewer],
    [Rpc("ListPlans")] = [MeshAuth.Viewer],
    [Rpc("WatchPlans")] = [MeshAuth.Viewer],
    [Rpc("WatchAlerts")] = [MeshAuth.Viewer],
    [Rpc("SubmitRebalance")] = [MeshAuth.Trader],
    [Rpc("CancelPlan")] = [MeshAuth.Trader],
    [Rpc("UpsertPortfolio")] = [MeshAuth.Admin],
    [Rpc("SetPolicy")] = [MeshAuth.Admin],
    [Rpc("SetTradingHalt")] = [MeshAuth.Admin],
    [Rpc("GetModel")] = [MeshAuth.Viewer],
    [Rpc("ListModels")] = [MeshAuth.Viewer],
    [Rpc("CreateModel")] = [MeshAuth.Admin],
    [Rpc("UpdateModel")] = [MeshAuth.Admin],
    [Rpc("LinkPortfolio")] = [MeshAuth.Admin],
    [Rpc("PreviewBatchRebalance")] = [MeshAuth.Viewer],
    [Rpc("SubmitBatchRebalance")] = [MeshAuth.Trader],
    [Rpc("WatchBatch")] = [MeshAuth.Viewer],
});
builder.AddMeshGrpcClient<PricingService.PricingServiceClient>("pricing", PricingService.Descriptor);
builder.AddMeshGrpcClient<RiskService.RiskServiceClient>("risk", RiskService.Descriptor);
builder.Services.AddSingleton<PlanningStore>();
// Valuations go through one batcher: concurrent requests (a storm's plans, the monitor's pass) share pricing calls.
builder.Services.AddSingleton<PriceBatcher>();
builder.Services.AddSingleton<RiskBatcher>();
builder.Services.AddRedisBroadcast<RebalanceMesh.Contracts.Planning.V1.Plan>(PlanningStore.PlanUpdatesChannel);
builder.Services.AddRedisBroadcast<RebalanceMesh.Contracts.Planning.V1.PolicyAlert>("pln:alerts");
builder.Services.AddScoped<PlanPipeline>();
builder.Services.AddScoped<PlanSubmitter>();
// Reports of one portfolio are applied one at a time, in stream order (they move its positions and plans); the monitor
// evaluates one market event at a time.
builder.Services.AddEventSubscription<ExecutionReport, ExecutionReportHandler>(Topics.ExecutionReports, report => report.PortfolioId.Length > 0 ? report.PortfolioId : report.PlanId);
builder.Services.AddSingleton<ModelWeightCache>();
// The monitor: the book in memory (following the store's change stream, loaded at start), split into partitions dealt
// over the live replicas; each market.quotes event becomes a tick every replica evaluates for the partitions it holds.
builder.Services.AddOptions<MonitorOptions>()
    .Bind(builder.Configuration.GetSection("Monitor"))
    .PostConfigure(o => o.ReplicaId = o.ReplicaId.Length > 0 ? o.ReplicaId : builder.Configuration["Mesh:InstanceId"] ?? $"{Environment.MachineName}-{Environment.ProcessId}")
    .Validate(o => o.Partitions is > 0 and <= 4_096 && o.MaxConcurrentPlans > 0 && o.TickBatch > 0 && o.MemberTimeout > o.HeartbeatInterval, "Monitor: Partitions 1..4096, MaxConcurrentPlans and TickBatch positive, MemberTimeout longer than HeartbeatInterval")
    .ValidateOnStart();
builder.Services.AddSingleton<MonitorBook>();
builder.Services.AddHostedService<MonitorBookLoader>();
builder.Services.AddSingleton<MonitorShards>();
builder.Services.AddSingleton<MonitorGauges>();
builder.Services.AddSingleton<MonitorEvaluator>();
builder.Services.AddSingleton<DriftMonitor>();
builder.Services.AddSingleton<AutoPlanner>();
builder.Services.AddHostedService<MonitorLoop>();
builder.Services.AddHostedService<PlanOutbox>();
builder.Services.AddSingleton<ModelStore>();
builder.Services.AddScoped<BatchPlanner>();
builder.Services.AddSingleton<ModelRollout>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<ModelRollout>());
builder.Services.AddHostedService(sp => sp.GetRequiredService<AutoPlanner>());
builder.Services.AddEventSubscription<QuotesUpdated, MarketTickRelay>(Topics.MarketQuotes);

var app = builder.Build();
app.UseMeshAuthentication();
app.MapGrpcService<PlanningGrpcService>();
app.MapDefaultEndpoints();
app.MapEventSubscriptions();
app.Run();

/// <summary>Entry point; public for the in-process test server.</summary>
public partial class Program;
