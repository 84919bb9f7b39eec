using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution;
using RebalanceMesh.MarketState;
using RebalanceMesh.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("execution");
builder.AddEventBus("execution");

// An internal service: only the mesh credential (or Dapr's API token) may call it; clients go through planning.
builder.AddMeshAuthentication(MeshAuth.MeshOnly(RebalanceMesh.Contracts.Execution.V1.ExecutionService.Descriptor));

builder.Services.TryAddTimeProvider();
builder.Services.AddOptions<ExecutionOptions>()
    .Bind(builder.Configuration.GetSection("Execution"))
    .PostConfigure(o => o.ReplicaId = o.ReplicaId.Length > 0 ? o.ReplicaId : builder.Configuration["Mesh:InstanceId"] ?? $"{Environment.MachineName}-{Environment.ProcessId}")
    .Validate(o => o.MaxConcurrentPlans >= 1 && o.MaxPlanAttempts >= 1, "Execution:MaxConcurrentPlans and MaxPlanAttempts are at least 1.")
    .Validate(o => o.RunScanInterval > TimeSpan.Zero && o.PlanLease >= 3 * o.RunScanInterval, "Execution:PlanLease is at least three RunScanIntervals (a lease is renewed every interval).")
    .ValidateOnStart();
builder.Services.Configure<MarketStateOptions>(builder.Configuration.GetSection("MarketState"));
builder.Services.AddSingleton<MarketStateStore>();
builder.Services.AddSingleton<ExecutionStore>();
builder.Services.AddSingleton<ReportOutbox>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<ReportOutbox>());
builder.Services.AddSingleton<VenueOrders>();
builder.Services.AddSingleton<BlockDesk>();
builder.Services.AddSingleton<PlanExecutor>();
// Accepted plans wait in the run queue (Redis, shared by the replicas); each replica runs up to
// Execution:MaxConcurrentPlans of them at once, each under a lease that another replica takes when this one dies.
builder.Services.AddSingleton<RunQueue>();
builder.Services.AddSingleton<PlanRunner>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<PlanRunner>());
// Events arrive concurrently (EventBus:Concurrency, as Dapr's pubsub.redis `concurrency`): plans are accepted one per
// portfolio at a time (planning sends one plan per portfolio at a time); halts apply in order.
builder.Services.AddEventSubscription<PlanApproved, PlanApprovedHandler>(Topics.PlansApproved, plan => plan.PortfolioId.Length > 0 ? plan.PortfolioId : plan.PlanId);
builder.Services.AddEventSubscription<TradingHaltChanged, TradingHaltHandler>(Topics.PlansHalted, _ => "halt");
builder.Services.AddEventSubscription<PlanCancelRequested, PlanCancelHandler>(Topics.PlansCancelled, cancel => cancel.PlanId);

// Venues are reached through venue gateways (IVenueGateway), every leg kind: the last registered gateway that handles a
// venue reaches it. None is built in: the simulated venues are a plugin (Plugins:0 = RebalanceMesh.Execution.Simulators,
// which local runs, tests and the demo load); a real venue's gateway is registered the same way. A leg on a venue no
// gateway reaches is refused with its reason.
var plugins = builder.AddServicePlugins();

var app = builder.Build();
app.Logger.LogInformation("Execution plugins: {Plugins}", plugins.Count == 0 ? "none" : string.Join(", ", plugins));
app.UseMeshAuthentication();
app.MapGrpcService<ExecutionGrpcService>();
app.MapDefaultEndpoints();
app.MapEventSubscriptions();
app.Run();

/// <summary>Entry point; public for the in-process test server.</summary>
public partial class Program;
