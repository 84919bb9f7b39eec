namespace RebalanceMesh.Execution.Core;

/// <summary>An immediate-or-cancel child as a venue receives it, with what a simulated venue needs of the market.</summary>
/// <param name="Quote">The venue's latest top of book (simulated venues build their book from it).</param>
/// <param name="Taken">Depth already taken from that quote's side by this leg (simulated venues deplete their book by it).</param>
public sealed record VenueOrder(ChildOrder Child, OrderSide Side, decimal? Limit, VenueQuote? Quote, decimal Taken);

/// <summary>A post-only order resting at a venue: what is still open, at what price, and the quote liquidity it already used.</summary>
public sealed record RestingState(string FillId, OrderSide Side, decimal Limit, decimal Open, VenueQuote? Quote, decimal Taken);

/// <summary>
/// One way to reach trading venues. The executor journals every child before it calls the connector and records each
/// execution once by its id, so a connector must be idempotent per client order id: a resend after a crash has to
/// return the original execution, as real venues answer a duplicate client order id. The simulated venues are one
/// connector (<see cref="SimulatedVenueConnector"/>); a real venue's API is another, registered for its venue id —
/// the last registered connector that handles a venue reaches it.
/// </summary>
public interface IVenueConnector
{
    /// <summary>Whether this connector reaches <paramref name="venueId"/>.</summary>
    bool Handles(string venueId);

    /// <summary>Immediate-or-cancel: what fills now (the rest expires), or a reject with its reason.</summary>
    Task<VenueExecution> ExecuteAsync(VenueSpec venue, VenueOrder order, CancellationToken cancellationToken);

    /// <summary>What a resting post-only order fills against the venue's current state.</summary>
    Task<VenueExecution> PollRestingAsync(VenueSpec venue, RestingState order, CancellationToken cancellationToken);
}

/// <summary>The simulated venues (book walk after the venue's latency, maker fills when the touch crosses) as a connector to every venue.</summary>
public sealed class SimulatedVenueConnector(TimeProvider time) : IVenueConnector
{
    public bool Handles(string venueId) => true;

    public async Task<VenueExecution> ExecuteAsync(VenueSpec venue, VenueOrder order, CancellationToken cancellationToken)
    {
        if (venue.LatencyMs > 0)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(venue.LatencyMs), time, cancellationToken);
        }

        return SimulatedVenue.Execute(order.Child, order.Side, venue, order.Quote, order.Limit, order.Taken);
    }

    public Task<VenueExecution> PollRestingAsync(VenueSpec venue, RestingState order, CancellationToken cancellationToken) =>
        Task.FromResult(RestingOrder.Fill(order.FillId, order.Side, order.Limit, order.Open, venue, order.Quote, order.Taken));
}
