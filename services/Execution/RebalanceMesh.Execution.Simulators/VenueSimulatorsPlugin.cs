using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// Plugs the simulated venues into the execution service (configuration: <c>Plugins:0</c> = this assembly's path or
/// name): the gateway every venue is reached through unless a real venue's gateway registered after it handles the
/// venue, the venue accounts behind the account RPCs, and the liquidation engines run on every market.quotes event
/// (one event at a time).
/// </summary>
public sealed class VenueSimulatorsPlugin : IServicePlugin
{
    public void Register(IHostApplicationBuilder builder)
    {
        builder.Services.Configure<SimulatorOptions>(builder.Configuration.GetSection("Execution"));
        builder.Services.AddSingleton<SimulatedAccountStore>();
        builder.Services.AddSingleton<LendingDesk>();
        builder.Services.AddSingleton<MarginDesk>();
        builder.Services.AddSingleton<IVenueGateway, SimulatedVenueGateway>();
        builder.Services.AddSingleton<IVenueAccounts, SimulatedVenueAccounts>();
        builder.Services.AddEventSubscription<QuotesUpdated, LiquidationMonitor>(Topics.MarketQuotes, _ => "market");
    }
}
