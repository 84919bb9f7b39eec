using Google.OrTools.Sat;

namespace RebalanceMesh.Planning.Core;

/// <summary>One trade to round: the continuous change the planner wants and the instrument's trading terms.</summary>
/// <param name="DesiredChange">Signed quantity the plan would trade without lots (positive buys).</param>
/// <param name="CostRate">Cost per unit of notional (fees, spread) paid on top of buys and taken from sells.</param>
public sealed record RoundingItem(string InstrumentId, decimal Price, decimal Lot, decimal DesiredChange, decimal MinNotional, decimal CostRate);

/// <summary>The rounded trades, the cash left after them, and how far they are from the continuous plan.</summary>
/// <param name="Changes">Signed quantity per instrument, whole lots; zero when dropped.</param>
/// <param name="Continuous">
/// The continuous plan the rounding stays within one lot of: the desired changes with buys scaled down, together,
/// as far as cash (after the sales and every cost) requires.
/// </param>
/// <param name="Deviation">Σ |rounded − continuous| notional.</param>
public sealed record RoundingResult(IReadOnlyDictionary<string, decimal> Changes, decimal CashAfter, decimal Deviation, bool Optimal, IReadOnlyDictionary<string, decimal>? Continuous = null);

/// <summary>
/// Rounds a plan's trades to whole lots as a small integer program (OR-Tools CP-SAT). First the continuous plan is made
/// affordable: if buying everything (with costs) needs more cash than there is after the sales, every buy is scaled
/// down by the same factor. Then each trade becomes a whole number of lots within one lot of its continuous size —
/// the lot below or the lot above, never flipping side — and either zero or at least the minimum notional (zero is
/// allowed only when the lot below is under it); cash after every trade and its cost stays non-negative; the total
/// notional distance from the continuous plan is minimised. Unlike truncation it rounds up where cash allows and
/// trades a larger lot of one instrument against a smaller one of another. Money is in cents (buys' costs rounded up,
/// sells' proceeds down, so the integer model is on the safe side).
/// </summary>
public static class LotRounder
{
    public static RoundingResult Round(IReadOnlyList<RoundingItem> items, decimal cash, TimeSpan? timeLimit = null)
    {
        foreach (var item in items)
        {
            if (item.Price <= 0 || item.Lot <= 0 || item.CostRate < 0)
            {
                throw new ArgumentException($"{item.InstrumentId}: price and lot must be positive and the cost rate non-negative.", nameof(items));
            }
        }

        var continuous = Affordable(items, cash);
        return Solve(items, continuous, cash, timeLimit, strict: true) ?? Solve(items, continuous, cash, timeLimit, strict: false)!;
    }

    /// <summary>Cents one lot costs to buy with its cost (rounded up), or raises when sold after its cost (rounded down).</summary>
    private static long BuyCents(RoundingItem item) => (long)decimal.Ceiling(item.Lot * item.Price * 100 * (1 + item.CostRate));

    private static long SellCents(RoundingItem item) => (long)decimal.Floor(item.Lot * item.Price * 100 * (1 - item.CostRate));

    private static long MinimumLots(RoundingItem item) => (long)decimal.Ceiling(item.MinNotional / (item.Lot * item.Price));

    /// <summary>
    /// The desired changes with the buys scaled down together so that, bought at the lot below (whole lots, the cents
    /// rounded as the model rounds them), they fit the cash plus what the sales raise at the lot above when that lot
    /// meets the minimum notional (as the integer model may sell it).
    /// </summary>
    private static IReadOnlyDictionary<string, decimal> Affordable(IReadOnlyList<RoundingItem> items, decimal cash)
    {
        decimal available = decimal.Floor(Math.Max(cash, 0) * 100), needed = 0;
        foreach (var item in items)
        {
            var lots = item.DesiredChange / item.Lot;
            if (lots < 0)
            {
                var most = decimal.Ceiling(-lots);
                available += most >= MinimumLots(item) ? most * SellCents(item) : 0;
            }
            else
            {
                needed += lots * BuyCents(item);
            }
        }

        var scale = needed > available && needed > 0 ? available / needed : 1m;
        return items.ToDictionary(i => i.InstrumentId, i => i.DesiredChange > 0 ? i.DesiredChange * scale : i.DesiredChange, StringComparer.Ordinal);
    }

    /// <summary>
    /// The integer program; <paramref name="strict"/> keeps every trade within one lot of its continuous size (null when
    /// cash cannot allow that), otherwise any buy may also be dropped (zero is always feasible for non-negative cash).
    /// </summary>
    private static RoundingResult? Solve(IReadOnlyList<RoundingItem> items, IReadOnlyDictionary<string, decimal> continuous, decimal cash, TimeSpan? timeLimit, bool strict)
    {
        var model = new CpModel();
        var lots = new IntVar[items.Count];
        var deviations = new List<IntVar>();
        var cashUse = LinearExpr.Constant(0);
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            var wanted = continuous[item.InstrumentId];
            var desiredLots = wanted / item.Lot;
            var buy = desiredLots > 0;
            var below = (long)decimal.Truncate(Math.Abs(desiredLots));  // the lot toward zero
            var above = (long)decimal.Ceiling(Math.Abs(desiredLots));   // the lot away from zero
            var minimumLots = MinimumLots(item);

            // The lot below or above, each only at or over the minimum notional; zero when the lot below is under it
            // (or, relaxed, for any buy cash cannot pay).
            var allowed = new SortedSet<long>(new[] { below, above }.Where(k => k == 0 || k >= minimumLots));
            if (below < minimumLots || (!strict && buy))
            {
                allowed.Add(0);
            }

            var magnitude = model.NewIntVarFromDomain(Google.OrTools.Util.Domain.FromValues([.. allowed]), item.InstrumentId + "-lots");
            lots[i] = magnitude;
            var unitCents = item.Lot * item.Price * 100;

            // Cash: buys pay notional and cost (rounded up), sells raise notional less cost (rounded down).
            cashUse += buy ? BuyCents(item) * magnitude : -SellCents(item) * magnitude;

            // |k · unit − continuous| in cents.
            var desiredCents = (long)decimal.Round(Math.Abs(wanted) * item.Price * 100);
            var deviation = model.NewIntVar(0, (long)decimal.Ceiling(desiredCents + (unitCents * (above + 1))), item.InstrumentId + "-deviation");
            model.Add(deviation >= ((long)decimal.Round(unitCents) * magnitude) - desiredCents);
            model.Add(deviation >= desiredCents - ((long)decimal.Round(unitCents) * magnitude));
            deviations.Add(deviation);
        }

        model.Add(cashUse <= (long)decimal.Floor(Math.Max(cash, 0) * 100));
        model.Minimize(LinearExpr.Sum(deviations));
        var solver = new CpSolver
        {
            StringParameters = $"max_time_in_seconds:{(timeLimit ?? TimeSpan.FromSeconds(2)).TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)},num_workers:2",
        };
        var status = solver.Solve(model);
        if (status is not (CpSolverStatus.Optimal or CpSolverStatus.Feasible))
        {
            if (strict)
            {
                return null;
            }

            // Cannot happen for non-negative cash (trading nothing is feasible); say so rather than guess.
            throw new InvalidOperationException($"Lot rounding found no feasible allocation ({status}).");
        }

        var changes = new Dictionary<string, decimal>(StringComparer.Ordinal);
        decimal cashAfter = cash, distance = 0;
        for (var i = 0; i < items.Count; i++)
        {
            var sign = continuous[items[i].InstrumentId] < 0 ? -1 : 1;
            var change = sign * solver.Value(lots[i]) * items[i].Lot;
            changes[items[i].InstrumentId] = change;
            var notional = change * items[i].Price;
            cashAfter -= notional + (Math.Abs(notional) * items[i].CostRate);
            distance += Math.Abs(notional - (continuous[items[i].InstrumentId] * items[i].Price));
        }

        return new RoundingResult(changes, cashAfter, distance, status == CpSolverStatus.Optimal, continuous);
    }
}
