using RebalanceMesh.MarketState;
using RebalanceMesh.Risk;
using RebalanceMesh.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("risk");

// Mesh callers (the mesh credential or Dapr's API token) may call every RPC; clients holding a viewer token (or above)
// may call every risk measurement, all reads (MeshAuth.MeshAndClientReads).
builder.AddMeshAuthentication(MeshAuth.MeshAndClientReads(RebalanceMesh.Contracts.Risk.V1.RiskService.Descriptor));

builder.Services.TryAddTimeProvider();
builder.Services.Configure<MarketStateOptions>(builder.Configuration.GetSection("MarketState"));
builder.Services.AddSingleton<MarketStateStore>();
builder.Services.AddSingleton<HistoryCache>();
builder.Services.AddSingleton<RiskInputs>();
builder.Services.AddTransient<RiskBookBuilder>();
builder.Services.AddTransient<RiskComparer>();
builder.AddMeshGrpcClient<RebalanceMesh.Contracts.Pricing.V1.PricingService.PricingServiceClient>("pricing", RebalanceMesh.Contracts.Pricing.V1.PricingService.Descriptor);
builder.AddMeshGrpcClient<RebalanceMesh.Contracts.Planning.V1.PlanningService.PlanningServiceClient>("planning", RebalanceMesh.Contracts.Planning.V1.PlanningService.Descriptor); // AssessPortfolio by portfolio id

var app = builder.Build();
app.UseMeshAuthentication();
app.MapGrpcService<RiskGrpcService>();
app.MapDefaultEndpoints();
app.Run();

/// <summary>Entry point; public for the in-process test server.</summary>
public partial class Program;
