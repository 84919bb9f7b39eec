using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// The simulated venues behind the venue gateway port, for every leg kind. Trades: an immediate-or-cancel child waits
/// the venue's latency and walks the book built from its quote (<see cref="SimulatedVenue"/>); a resting maker order
/// fills when the touch comes to it (<see cref="SimulatedRestingOrder"/>). Like a real venue, it answers a client order
/// id (or a resting order's fill id) once: a resend gets the first answer. A trade in the portfolio's account at the
/// venue is refused when it sells units the account does not hold, and its fills are booked into the account (spot
/// units, or margined positions against collateral: <see cref="MarginDesk"/>). Operations: loan legs on the lending
/// venues (<see cref="LendingDesk"/>), margin top-ups and collateral transfers on the trading venues' margin accounts.
/// </summary>
public sealed class SimulatedVenueGateway(SimulatedAccountStore store, LendingDesk lending, MarginDesk margin, TimeProvider time) : IVenueGateway
{
    public bool Handles(string venueId) => true;

    public async Task<VenueExecution> ExecuteAsync(VenueSpec venue, VenueOrder order, CancellationToken cancellationToken)
    {
        if (venue.LatencyMs > 0)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(venue.LatencyMs), time, cancellationToken);
        }

        var refusal = order.Account is { } held && order.Side == OrderSide.Sell
            ? await margin.SpotSellRefusalAsync(held.PortfolioId, venue.VenueId, held.InstrumentId, order.Child.Quantity)
            : null;
        var answer = refusal is null
            ? SimulatedVenue.Execute(order.Child, order.Side, venue, order.Quote, order.Limit, order.Taken)
            : new VenueExecution(order.Child.ClientOrderId, venue.VenueId, false, 0, 0, 0, refusal);
        answer = await store.AnswerOnceAsync(answer);
        await BookAsync(order.Account, order.Side, answer, cancellationToken);
        return answer;
    }

    public async Task<VenueExecution> PollRestingAsync(VenueSpec venue, RestingState order, CancellationToken cancellationToken)
    {
        var fill = SimulatedRestingOrder.Fill(order.ClientOrderId, order.Side, order.Limit, order.Open, venue, order.Quote, order.Taken);
        if (fill.FilledQuantity <= 0)
        {
            return fill;
        }

        fill = await store.AnswerOnceAsync(fill with { ClientOrderId = RestingOrder.FillId(order.ClientOrderId, order.Filled + fill.FilledQuantity) });
        await BookAsync(order.Account, order.Side, fill, cancellationToken);
        return fill;
    }

    public Task<VenueOperationResult> ApplyAsync(VenueOperation operation, CancellationToken cancellationToken) => operation.Kind switch
    {
        VenueOperationKind.MarginTopUp => margin.TopUpAsync(operation),
        VenueOperationKind.CollateralTransfer => margin.TransferAsync(operation),
        _ => lending.ApplyAsync(operation),
    };

    /// <summary>A fill in the portfolio's account at the venue, once per fill id (a resend books nothing twice).</summary>
    private async Task BookAsync(VenueAccount? account, OrderSide side, VenueExecution fill, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (account is not null && fill.Accepted && fill.FilledQuantity > 0)
        {
            await margin.ApplyFillAsync(account.PortfolioId, fill.VenueId, account.InstrumentId, (side == OrderSide.Buy ? 1 : -1) * fill.FilledQuantity, fill.Price, fill.Fee, fill.ClientOrderId);
        }
    }
}
