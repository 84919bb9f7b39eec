using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Simulators;
using RebalanceMesh.MarketState;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Execution.Tests;

/// <summary>
/// The venue gateway port and the simulated venues behind it, as a plugin: the service without the plugin reaches no
/// venue and keeps no venue accounts; with it, the simulated venues answer a client order id once, as real venues do.
/// </summary>
public sealed class VenueGatewayTests(RedisServer redis) : IClassFixture<RedisServer>, IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        await redis.FlushAsync();
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private static async Task QuoteAsync(GrpcTestServer<Program> server, decimal bid, decimal ask)
    {
        var now = DateTimeOffset.UtcNow.ToTimestamp();
        await server.Services.GetRequiredService<MarketStateStore>().WriteQuotesAsync(
        [
            new Quote { Venue = "SIM-A", InstrumentId = "DAX", Bid = bid, Ask = ask, BidSize = 100m, AskSize = 100m, Timestamp = now },
            new Quote { Venue = "SIM-B", InstrumentId = "DAX", Bid = bid, Ask = ask, BidSize = 100m, AskSize = 100m, Timestamp = now },
        ]);
    }

    [Fact]
    public async Task Without_the_simulator_plugin_no_venue_is_reached_and_the_account_RPCs_are_unimplemented()
    {
        // The production build: no plugin configured.
        await using var server = new GrpcTestServer<Program>(redis);
        await QuoteAsync(server, 99.9m, 100.1m);
        Assert.Empty(server.Services.GetServices<IVenueGateway>());
        Assert.Empty(server.Services.GetServices<IVenueAccounts>());

        var client = new ExecutionService.ExecutionServiceClient(server.CreateMeshInvoker());
        await RpcAssert.StatusAsync(() => client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-A", PortfolioId = "p1" }).ResponseAsync, StatusCode.Unimplemented);
        await RpcAssert.StatusAsync(() => client.OpenLendingAccountAsync(new OpenLendingAccountRequest { Account = new LendingAccount { Venue = "LEND-A" } }).ResponseAsync, StatusCode.Unimplemented);

        // A trade is refused at every venue with the reason and the plan fails without a fill; a loan leg is refused
        // the same way, and the plan stops there.
        var bus = server.Services.GetRequiredService<InMemoryEventBus>();
        await bus.PublishAsync(Topics.PlansApproved, new PlanApproved
        {
            PlanId = "plan-nowhere",
            PortfolioId = "p1",
            Legs = { new ApprovedLeg { LegId = "L1", Sequence = 1, InstrumentId = "DAX", Side = Side.Sell, Quantity = 10m, ReferencePrice = 100m } },
        });
        await bus.PublishAsync(Topics.PlansApproved, new PlanApproved
        {
            PlanId = "plan-no-loan",
            PortfolioId = "p2",
            Legs =
            {
                new ApprovedLeg { LegId = "G1", Sequence = 1, Kind = LegKind.Repay, LoanId = "L1", Venue = "LEND-A", InstrumentId = "EUR", Quantity = 10m, ReferencePrice = 1m },
                new ApprovedLeg { LegId = "L1", Sequence = 2, InstrumentId = "DAX", Side = Side.Sell, Quantity = 10m, ReferencePrice = 100m },
            },
        });
        await bus.WhenDeliveredAsync();
        await server.Services.GetRequiredService<PlanRunner>().WhenIdleAsync();
        var trade = await client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-nowhere" });
        Assert.Equal(ExecutionStatus.Failed, trade.Status);
        Assert.Equal(0m, trade.Legs.Single().FilledQuantity.ToDecimal());
        Assert.NotEmpty(trade.Orders);
        Assert.All(trade.Orders, o => Assert.Equal((OrderStatus.Rejected, $"no venue gateway reaches {o.Venue}"), (o.Status, o.StatusReason)));
        var loan = await client.GetPlanExecutionAsync(new GetPlanExecutionRequest { PlanId = "plan-no-loan" });
        Assert.Equal(ExecutionStatus.Cancelled, loan.Status);
        Assert.Equal("leg G1 (Repay on loan L1 at LEND-A) refused: no venue gateway reaches LEND-A; the plan stops", loan.Execution.Message);
        Assert.Empty(loan.Orders);
    }

    [Fact]
    public async Task The_simulated_venues_answer_a_client_order_id_once_and_book_an_account_fill_once()
    {
        await using var server = new GrpcTestServer<Program>(redis, SimulatedExecution.Settings());
        var gateway = Assert.IsType<SimulatedVenueGateway>(Assert.Single(server.Services.GetServices<IVenueGateway>()));
        var venue = server.Services.GetRequiredService<IOptions<ExecutionOptions>>().Value.Venues.Single(v => v.VenueId == "SIM-A");
        var client = new ExecutionService.ExecutionServiceClient(server.CreateMeshInvoker());
        await client.OpenMarginAccountAsync(new OpenMarginAccountRequest
        {
            Account = new VenueMarginAccount { Venue = "SIM-A", PortfolioId = "p-spot", BaseCurrency = "EUR", Collateral = 0m, SpotBalances = { new VenueSpotBalance { InstrumentId = "DAX", Quantity = 5m } } },
        });

        // Sell 5 DAX from the account at the bid of 99.9 (SIM-A: 10 bp taker fee); the units leave the account.
        var child = new ChildOrder("plan-g:L1-r1:1", "SIM-A", 5m, 99.9m, 99.8m, 99.9m, 99.9m);
        var account = new VenueAccount("p-spot", "DAX");
        var first = await gateway.ExecuteAsync(venue, new VenueOrder(child, OrderSide.Sell, 99.9m, new VenueQuote("SIM-A", 99.9m, 100.1m, 100m, 100m), 0m, account), CancellationToken.None);
        Assert.Equal((true, 5m, 99.9m, 0.4995m), (first.Accepted, first.FilledQuantity, first.Price, first.Fee));

        // The same client order id again, on a market that moved: the venue's first answer, and nothing booked twice.
        var resent = await gateway.ExecuteAsync(venue, new VenueOrder(child, OrderSide.Sell, 99.9m, new VenueQuote("SIM-A", 120m, 120.2m, 100m, 100m), 0m, account), CancellationToken.None);
        Assert.Equal(first, resent);
        var held = (await client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-A", PortfolioId = "p-spot" })).Account;
        Assert.Empty(held.SpotBalances);

        // A new order selling what the account no longer holds is refused by the venue, and stays refused when resent.
        var more = child with { ClientOrderId = "plan-g:L1-r2:1", Quantity = 1m };
        var refused = await gateway.ExecuteAsync(venue, new VenueOrder(more, OrderSide.Sell, 99.9m, new VenueQuote("SIM-A", 99.9m, 100.1m, 100m, 100m), 0m, account), CancellationToken.None);
        Assert.False(refused.Accepted);
        Assert.Contains("insufficient balance", refused.RejectReason, StringComparison.Ordinal);
        Assert.Equal(refused, await gateway.ExecuteAsync(venue, new VenueOrder(more, OrderSide.Sell, 99.9m, new VenueQuote("SIM-A", 99.9m, 100.1m, 100m, 100m), 0m, account), CancellationToken.None));
    }

    [Fact]
    public async Task A_margin_top_up_goes_through_the_gateway_once_per_operation_id()
    {
        await using var server = new GrpcTestServer<Program>(redis, SimulatedExecution.Settings());
        var gateway = server.Services.GetRequiredService<IVenueGateway>();
        var client = new ExecutionService.ExecutionServiceClient(server.CreateMeshInvoker());
        await client.OpenMarginAccountAsync(new OpenMarginAccountRequest { Account = new VenueMarginAccount { Venue = "SIM-B", PortfolioId = "p-m", BaseCurrency = "EUR", Collateral = 1_000m } });

        var topUp = new VenueOperation("plan-t:M1", VenueOperationKind.MarginTopUp, "p-m", "SIM-B", "EUR", 250m);
        Assert.Equal(new VenueOperationResult(true, 250m, string.Empty), await gateway.ApplyAsync(topUp, CancellationToken.None));
        Assert.Equal(new VenueOperationResult(true, 250m, string.Empty), await gateway.ApplyAsync(topUp, CancellationToken.None));
        Assert.Equal(1_250m, (await client.GetMarginAccountAsync(new GetMarginAccountRequest { Venue = "SIM-B", PortfolioId = "p-m" })).Account.Collateral.ToDecimal());

        // An account that does not exist is refused with the reason, and the refusal is the operation's answer.
        var nowhere = topUp with { OperationId = "plan-t:M2", PortfolioId = "p-none" };
        var refused = await gateway.ApplyAsync(nowhere, CancellationToken.None);
        Assert.Equal((false, "SIM-B has no margin account for portfolio p-none"), (refused.Accepted, refused.Reason));
    }

    [Fact]
    public async Task A_configured_plugin_that_cannot_be_loaded_stops_the_start()
    {
        // A service configured for venues it cannot reach must not run as if it could.
        await using var server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?> { ["Plugins:0"] = "RebalanceMesh.NoSuchVenues" });
        var failure = Assert.ThrowsAny<Exception>(() => server.Services);
        var inner = failure is AggregateException aggregate ? aggregate.InnerExceptions.Single() : failure;
        Assert.Contains("Plugin RebalanceMesh.NoSuchVenues could not be loaded", inner.Message, StringComparison.Ordinal);
    }
}
