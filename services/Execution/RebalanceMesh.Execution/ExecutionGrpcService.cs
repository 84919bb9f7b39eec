using Grpc.Core;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Execution;

/// <summary>gRPC surface of execution.</summary>
public sealed class ExecutionGrpcService(ExecutionStore store, IEnumerable<IVenueAccounts> venueAccounts, RebalanceMesh.MarketState.MarketStateStore market, IOptions<ExecutionOptions> options, ILogger<ExecutionGrpcService> logger) : ExecutionService.ExecutionServiceBase
{
    /// <summary>The venue accounts of a venue plugin (the simulated venues); a build without one answers Unimplemented.</summary>
    private IVenueAccounts Accounts => venueAccounts.LastOrDefault()
        ?? throw new RpcException(new Status(StatusCode.Unimplemented, "No venue accounts are reachable here: no venue plugin that keeps accounts (Plugins) is loaded."));

    public override async Task<OpenLendingAccountResponse> OpenLendingAccount(OpenLendingAccountRequest request, ServerCallContext context)
    {
        if (request.Account is null)
        {
            var check = new RequestValidator();
            check.Require(false, "account", "is required");
            check.ThrowIfInvalid();
        }

        return new OpenLendingAccountResponse { Account = await Accounts.OpenLendingAsync(request.Account!) };
    }

    public override async Task<GetLendingAccountResponse> GetLendingAccount(GetLendingAccountRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.Venue, "venue");
        check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        check.RequireIdentifier(request.LoanId, "loan_id");
        check.ThrowIfInvalid();
        var account = await Accounts.GetLendingAsync(request.Venue, request.PortfolioId, request.LoanId)
            ?? throw DomainException.NotFound($"Loan '{request.LoanId}' of portfolio '{request.PortfolioId}' on {request.Venue}");
        return new GetLendingAccountResponse { Account = account };
    }

    public override async Task<OpenMarginAccountResponse> OpenMarginAccount(OpenMarginAccountRequest request, ServerCallContext context)
    {
        if (request.Account is null)
        {
            var check = new RequestValidator();
            check.Require(false, "account", "is required");
            check.ThrowIfInvalid();
        }

        return new OpenMarginAccountResponse { Account = await Accounts.OpenMarginAsync(request.Account!) };
    }

    public override async Task<GetMarginAccountResponse> GetMarginAccount(GetMarginAccountRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.Venue, "venue");
        check.RequireIdentifier(request.PortfolioId, "portfolio_id");
        check.ThrowIfInvalid();
        var account = await Accounts.GetMarginAsync(request.Venue, request.PortfolioId)
            ?? throw DomainException.NotFound($"Margin account of portfolio '{request.PortfolioId}' on {request.Venue}");
        return new GetMarginAccountResponse { Account = account };
    }

    public override async Task<GetPlanExecutionResponse> GetPlanExecution(GetPlanExecutionRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PlanId, "plan_id");
        check.ThrowIfInvalid();
        var execution = await store.GetExecutionAsync(request.PlanId) ?? throw DomainException.NotFound($"Execution of plan '{request.PlanId}'");
        if (!PlanExecutor.IsFinal(execution.Status) && await store.GetPendingStopAsync(request.PlanId) is { } stop)
        {
            execution.PendingStop = new PendingStop { Reason = stop };
        }

        var response = new GetPlanExecutionResponse { PlanId = execution.PlanId, Status = execution.Status, Execution = execution };
        response.Legs.AddRange(execution.Legs);
        response.Orders.AddRange(await store.GetPlanOrdersAsync(request.PlanId));
        return response;
    }

    public override async Task<GetBlockResponse> GetBlock(GetBlockRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.BlockId, "block_id");
        check.ThrowIfInvalid();
        var (order, outcome) = await store.GetBlockAsync(request.BlockId) ?? throw DomainException.NotFound($"Block '{request.BlockId}'");
        var block = RunMapping.ToBlock(order, outcome, withMembers: true);
        block.Orders.AddRange(await store.GetPlanOrdersAsync(request.BlockId));
        return new GetBlockResponse { Block = block };
    }

    public override async Task<ListBlocksResponse> ListBlocks(ListBlocksRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.Require(request.PageSize is >= 0 and <= 500, "page_size", "must be between 0 and 500");
        check.ThrowIfInvalid();
        var response = new ListBlocksResponse();
        foreach (var id in await store.GetRecentBlocksAsync(request.PageSize == 0 ? 50 : request.PageSize))
        {
            if (await store.GetBlockAsync(id) is { } stored)
            {
                response.Blocks.Add(RunMapping.ToBlock(stored.Order, stored.Outcome, withMembers: false));
            }
        }

        return response;
    }

    public override async Task<ListOrdersResponse> ListOrders(ListOrdersRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PlanId, "plan_id");
        if (request.Venue.Length > 0)
        {
            check.RequireIdentifier(request.Venue, "venue");
        }

        check.ThrowIfInvalid();
        var orders = await store.GetPlanOrdersAsync(request.PlanId);
        var response = new ListOrdersResponse();
        response.Orders.AddRange(orders.Where(o => request.Venue.Length == 0 || o.Venue == request.Venue));
        return response;
    }

    public override async Task<CancelPlanResponse> CancelPlan(CancelPlanRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        check.RequireIdentifier(request.PlanId, "plan_id");
        check.RequireReason(request.Reason);
        check.ThrowIfInvalid();
        var execution = await store.GetExecutionAsync(request.PlanId) ?? throw DomainException.NotFound($"Execution of plan '{request.PlanId}'");
        if (PlanExecutor.IsFinal(execution.Status))
        {
            return new CancelPlanResponse { PlanId = request.PlanId, Status = execution.Status, CancelledLegs = 0 };
        }

        await store.RequestCancelAsync(request.PlanId, request.Reason.Length > 0 ? request.Reason : "cancelled by client");
        var open = execution.Legs.Count(l => Contracts.Common.V1.DecimalValue.TryParse(l.FilledQuantity, out var f) && f < l.Quantity.ToDecimal());
        return new CancelPlanResponse { PlanId = request.PlanId, Status = execution.Status, CancelledLegs = open };
    }

    public override async Task<ListVenuesResponse> ListVenues(ListVenuesRequest request, ServerCallContext context)
    {
        var response = new ListVenuesResponse();
        var down = await store.GetVenuesDownAsync();
        foreach (var v in options.Value.Venues)
        {
            response.Venues.Add(await DescribeAsync(v, down));
        }

        return response;
    }

    public override async Task<GetVenueBookResponse> GetVenueBook(GetVenueBookRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        var venue = TradingVenue(check, request.VenueId);
        check.RequireIdentifier(request.InstrumentId, "instrument_id");
        check.ThrowIfInvalid();
        var quote = (await market.GetQuotesAsync([request.InstrumentId])).FirstOrDefault(q => q.Venue == request.VenueId)
            ?? throw DomainException.NotFound($"A quote of {request.InstrumentId} on {request.VenueId}");
        var book = venue!.BookOf(VenueOrders.ToVenueQuote(quote));
        var response = new GetVenueBookResponse
        {
            VenueId = request.VenueId,
            InstrumentId = request.InstrumentId,
            Available = !(await store.GetVenuesDownAsync()).ContainsKey(request.VenueId),
            AsOf = quote.Timestamp,
        };
        response.Bids.AddRange(book.Bids.Select(l => new BookLevel { Price = l.Price, Size = l.Size }));
        response.Asks.AddRange(book.Asks.Select(l => new BookLevel { Price = l.Price, Size = l.Size }));
        return response;
    }

    public override async Task<SetVenueStatusResponse> SetVenueStatus(SetVenueStatusRequest request, ServerCallContext context)
    {
        var check = new RequestValidator();
        var venue = TradingVenue(check, request.VenueId);
        check.RequireReason(request.Reason);
        check.ThrowIfInvalid();
        await store.SetVenueDownAsync(request.VenueId, !request.Available, request.Reason.Length > 0 ? request.Reason : "taken down by an operator");
        logger.LogWarning("Venue {Venue} {Status}: {Reason}", request.VenueId, request.Available ? "back up" : "down", request.Reason);
        return new SetVenueStatusResponse { Venue = await DescribeAsync(venue!, await store.GetVenuesDownAsync()) };
    }

    /// <summary>The configured trading venue named by a request's venue_id, or a field violation.</summary>
    private Core.VenueSpec? TradingVenue(RequestValidator check, string venueId)
    {
        var venue = check.RequireIdentifier(venueId, "venue_id") ? options.Value.Venues.FirstOrDefault(v => v.VenueId == venueId) : null;
        check.Require(venueId.Length == 0 || venue is not null, "venue_id", "is not a trading venue: " + string.Join(", ", options.Value.Venues.Select(v => v.VenueId)));
        return venue;
    }

    private async Task<Venue> DescribeAsync(Core.VenueSpec v, IReadOnlyDictionary<string, string> down)
    {
        var (fills, notional, fees, slippage) = await store.GetVenueCostsAsync(v.VenueId);
        return new Venue
        {
            VenueId = v.VenueId,
            TakerFeeBps = v.TakerFeeBps,
            MakerFeeBps = v.MakerFeeBps,
            Available = v.Available && !down.ContainsKey(v.VenueId),
            StatusReason = down.GetValueOrDefault(v.VenueId, string.Empty),
            LatencyMs = v.LatencyMs,
            ParticipationCap = v.ParticipationCap,
            RealisedCosts = new VenueCosts
            {
                Fills = fills,
                Notional = notional,
                Fees = fees,
                Slippage = slippage,
                FeeBps = notional > 0 ? fees / notional * 10_000 : 0,
                SlippageBps = notional > 0 ? slippage / notional * 10_000 : 0,
            },
        };
    }
}
