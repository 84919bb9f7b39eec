using FsCheck;
using FsCheck.Fluent;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.Execution.Simulators;

namespace RebalanceMesh.Execution.Tests;

/// <summary>Invariants of routing and slicing, property-tested over random books, legs and limits (300 cases each).</summary>
public class ExecutionPropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(300);

    /// <summary>A random leg over the default venues' books: quotes, side, quantity, an optional limit, depth already taken.</summary>
    public sealed record RoutingCase(decimal[] Mids, decimal[] Sizes, bool Buy, decimal Quantity, int LimitBps, decimal[] Taken);

    private static readonly Gen<RoutingCase> Cases =
        from mids in Gen.ArrayOf(Gen.Choose(1_000, 500_000).Select(m => m / 100m), 3)
        from sizes in Gen.ArrayOf(Gen.Choose(0, 5_000).Select(s => (decimal)s), 3)
        from buy in Gen.Elements(true, false)
        from quantity in Gen.Choose(1, 200_000).Select(q => q / 10m)
        from limit in Gen.Choose(0, 50)
        from taken in Gen.ArrayOf(Gen.Choose(0, 3_000).Select(t => (decimal)t), 3)
        select new RoutingCase(mids, sizes, buy, quantity, limit, taken);

    [Fact]
    public void Child_orders_never_exceed_their_leg_stay_within_the_limit_and_caps_and_fill_it_when_the_books_can()
    {
        Prop.ForAll(Cases.ToArbitrary(), c =>
        {
            var venues = SimulatedVenues.Defaults;
            var side = c.Buy ? OrderSide.Buy : OrderSide.Sell;
            var quotes = venues.Select((v, i) => new VenueQuote(v.VenueId, c.Mids[i] * 0.9999m, c.Mids[i] * 1.0001m, c.Sizes[i], c.Sizes[i])).ToArray();
            var arrival = c.Mids.Average();
            decimal? limit = c.LimitBps > 0 ? SlippageLimit.For(side, arrival, c.LimitBps) : null;
            var taken = venues.Select((v, i) => (v.VenueId, c.Taken[i])).ToDictionary(x => x.VenueId, x => x.Item2);
            var children = SmartOrderRouter.Route(new LegOrder("p", "L", "X", side, c.Quantity), venues, quotes, limit, taken);

            var books = venues.Select((v, i) => v.BookOf(quotes[i]).After(side, taken[v.VenueId])).ToArray();
            var capped = venues.Select((v, i) => books[i].Depth(side, limit) * (decimal)v.ParticipationCap).ToArray();
            var routed = children.Sum(o => o.Quantity);
            var withinLeg = routed <= c.Quantity && children.All(o => o.Quantity > 0);
            var withinCaps = children.All(o => o.Quantity <= capped[venues.ToList().FindIndex(v => v.VenueId == o.VenueId)]);
            var withinLimit = limit is not { } worst || children.All(o => side == OrderSide.Buy ? o.ExpectedPrice <= worst : o.ExpectedPrice >= worst);
            var fullWhenPossible = routed == Math.Min(c.Quantity, capped.Sum());

            // Each child, sent to its venue's book, fills exactly what was routed to it.
            var fills = children.All(o =>
            {
                var i = venues.ToList().FindIndex(v => v.VenueId == o.VenueId);
                return SimulatedVenue.Execute(o, side, venues[i], quotes[i], limit, taken[o.VenueId]).FilledQuantity == o.Quantity;
            });
            return withinLeg && withinCaps && withinLimit && fullWhenPossible && fills;
        }).Check(Runs);
    }

    [Fact]
    public void A_routing_cut_to_the_plans_cash_never_costs_more_than_the_cash_at_the_venues()
    {
        // Random books, legs and cash: the children kept, sent to their venues at their own limits, fill for no more
        // than the cash (notional and fees for a purchase, fees alone for a margined contract); a cut leaves less cash
        // than the smallest step (10⁻⁸ of a unit) of a child would cost; with cash to spare nothing is cut.
        var withCash = from c in Cases
                       from cash in Gen.Choose(0, 2_000_000).Select(x => x / 10m)
                       from margined in Gen.Elements(false, false, true)
                       select (Case: c, Cash: cash, Margined: margined);
        Prop.ForAll(withCash.ToArbitrary(), x =>
        {
            var (c, cash, margined) = x;
            var venues = SimulatedVenues.Defaults;
            var side = c.Buy ? OrderSide.Buy : OrderSide.Sell;
            var quotes = venues.Select((v, i) => new VenueQuote(v.VenueId, c.Mids[i] * 0.9999m, c.Mids[i] * 1.0001m, c.Sizes[i], c.Sizes[i])).ToArray();
            var taken = venues.Select((v, i) => (v.VenueId, c.Taken[i])).ToDictionary(t => t.VenueId, t => t.Item2);
            var children = SmartOrderRouter.Route(new LegOrder("p", "L", "X", side, c.Quantity), venues, quotes, null, taken);
            var kept = PlanCash.Cap(children, side, margined, venues, cash);

            var spent = 0m;
            foreach (var child in kept)
            {
                var i = venues.ToList().FindIndex(v => v.VenueId == child.VenueId);
                var fill = SimulatedVenue.Execute(child, side, venues[i], quotes[i], child.WorstPrice, taken[child.VenueId]);
                spent += margined ? fill.Fee : side == OrderSide.Buy ? (fill.FilledQuantity * fill.Price) + fill.Fee : 0m;
            }

            var unitCosts = children.ToDictionary(o => o.VenueId, o => PlanCash.UnitCost(side, margined, Math.Max(o.WorstPrice, o.BestPrice), venues.First(v => v.VenueId == o.VenueId).TakerFeeBps));
            var cut = kept.Sum(o => o.Quantity) < children.Sum(o => o.Quantity);
            var left = cash - kept.Sum(o => o.Quantity * unitCosts[o.VenueId]);
            var cutOnlyWhenShort = !cut || children.Any(o => left < (0.00000001m * unitCosts[o.VenueId]) + PlanCash.RoundingReserve);
            var spareCashCutsNothing = !cut || children.Sum(o => o.Quantity * unitCosts[o.VenueId]) > cash - PlanCash.RoundingReserve;
            return spent <= cash && left >= 0 && cutOnlyWhenShort && spareCashCutsNothing;
        }).Check(Runs);
    }

    [Fact]
    public void TWAP_and_POV_slices_rise_to_exactly_the_leg()
    {
        var legs = from quantity in Gen.Choose(1, 10_000_000).Select(q => q / 100m)
                   from slices in Gen.Choose(0, 100)
                   from displayed in Gen.Choose(0, 100_000).Select(d => (decimal)d)
                   from rate in Gen.Choose(1, 50).Select(r => r / 100.0)
                   select (quantity, slices, displayed, rate);
        Prop.ForAll(legs.ToArbitrary(), l =>
        {
            bool Valid(IReadOnlyList<decimal> cumulative) =>
                cumulative[^1] == l.quantity && cumulative.Zip(cumulative.Skip(1)).All(p => p.Second >= p.First) && cumulative[0] > 0;
            return Valid(TwapSchedule.Cumulative(l.quantity, l.slices)) && Valid(PovSchedule.Cumulative(l.quantity, l.displayed, l.rate))
                && PovSchedule.Cumulative(l.quantity, l.displayed, l.rate).Count <= PovSchedule.MaxSlices;
        }).Check(Runs);
    }
}
