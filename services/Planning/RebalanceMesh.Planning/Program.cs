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
builder.AddMeshGrpcClient<PricingService.PricingServiceClient>("pricing");
builder.AddMeshGrpcClient<RiskService.RiskServiceClient>("risk");
builder.Services.AddSingleton<PlanningStore>();
builder.Services.AddRedisBroadcast<RebalanceMesh.Contracts.Planning.V1.Plan>(PlanningStore.PlanUpdatesChannel);
builder.Services.AddRedisBroadcast<RebalanceMesh.Contracts.Planning.V1.PolicyAlert>("pln:alerts");
builder.Services.AddScoped<PlanPipeline>();
builder.Services.AddScoped<PlanSubmitter>();
builder.Services.AddEventSubscription<ExecutionReport, ExecutionReportHandler>(Topics.ExecutionReports);
builder.Services.AddSingleton<ModelWeightCache>();
builder.Services.AddEventSubscription<QuotesUpdated, DriftMonitor>(Topics.MarketQuotes);

var app = builder.Build();
app.MapGrpcService<PlanningGrpcService>();
app.MapDefaultEndpoints();
app.MapEventSubscriptions();
app.Run();

/// <summary>Entry point; public for the in-process test server.</summary>
public partial class Program;
