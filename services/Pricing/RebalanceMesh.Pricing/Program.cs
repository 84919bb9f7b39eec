using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.MarketState;
using RebalanceMesh.Pricing;
using RebalanceMesh.Pricing.Core;
using RebalanceMesh.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults("pricing");
builder.AddEventBus("pricing");

// Mesh callers (the mesh credential or Dapr's API token) may call every RPC; clients holding a viewer token (or above)
// may call the reads: quotes, valuations, vol surfaces, history (MeshAuth.MeshAndClientReads).
builder.AddMeshAuthentication(MeshAuth.MeshAndClientReads(RebalanceMesh.Contracts.Pricing.V1.PricingService.Descriptor));

builder.Services.TryAddTimeProvider();
builder.Services.Configure<PricingOptions>(builder.Configuration.GetSection("Pricing"));
builder.Services.Configure<MarketStateOptions>(builder.Configuration.GetSection("MarketState"));
builder.Services.AddSingleton<MarketStateStore>();
builder.Services.AddSingleton<QuoteCoalescer<ConsolidatedPrice>>();
builder.Services.AddSingleton(sp => new ConfiguredFeed(
    PricingComposition.CreateFeed(sp.GetRequiredService<IOptions<PricingOptions>>().Value, sp.GetRequiredService<TimeProvider>())));
builder.Services.AddSingleton(sp => PricingComposition.CreateValidator(
    sp.GetRequiredService<IOptions<PricingOptions>>().Value, sp.GetRequiredService<IOptions<MarketStateOptions>>().Value,
    sp.GetRequiredService<ConfiguredFeed>().Feed, sp.GetRequiredService<TimeProvider>()));
builder.Services.AddSingleton(sp => PricingComposition.BookRules(
    sp.GetRequiredService<IOptions<PricingOptions>>().Value, sp.GetRequiredService<IOptions<MarketStateOptions>>().Value));
builder.Services.AddSingleton<QuoteIngestor>();
builder.Services.AddSingleton<InstrumentCatalog>();
builder.Services.AddSingleton<InstrumentValuer>();
builder.Services.AddSingleton<VolSurfaceService>();
builder.Services.AddHostedService(sp => sp.GetRequiredService<VolSurfaceService>());
builder.Services.AddRedisBroadcast<RebalanceMesh.Contracts.Events.V1.QuotesUpdated>(QuotePublisher.BroadcastChannel);
builder.Services.AddHostedService<TickOrderSeeder>();
builder.Services.AddHostedService<FeedService>();
builder.Services.AddHostedService<QuotePublisher>();

var app = builder.Build();
app.UseMeshAuthentication();
app.MapGrpcService<PricingGrpcService>();
app.MapDefaultEndpoints();
app.MapEventSubscriptions();
app.Run();

/// <summary>Entry point; public for the in-process test server.</summary>
public partial class Program;
