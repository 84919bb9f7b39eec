using Google.OrTools.Sat;

namespace RebalanceMesh.Planning.Core;

/// <summary>One trade to round: the continuous change the planner wants and the instrument's trading terms.</summary>
/// <param name="DesiredChange">Signed quantity the plan would trade without lots (positive buys).</param>
/// <param name="CostRate">Cost per unit of notional (fees, spread) paid on top of buys and taken from sells.</param>
public sealed record RoundingItem(string InstrumentId, decimal Price, decimal Lot, decimal DesiredChange, decimal MinNotional, decimal CostRate);

/// <summary>The rounded trades, the cash left after them, and how far they are from the continuous plan.</summary>
/// <param name="Changes">Signed quantity per instrument, whole lots; zero when dropped.</param>
/// <param name="Deviation">Σ |rounded − desired| notional.</param>
public sealed record RoundingResult(IReadOnlyDictionary<string, decimal> Changes, decimal CashAfter, decimal Deviation, bool Optimal);

/// <summary>
/// Rounds a plan's trades to whole lots as a small integer program (OR-Tools CP-SAT): each trade is a whole number of
/// lots between zero and one lot beyond its continuous size (never flipping side), either zero or at least the minimum
/// notional; cash after every trade and its cost stays non-negative; the total notional distance from the continuous
/// plan is minimised. Unlike truncation it rounds up where cash allows and trades a larger lot of one instrument
/// against a smaller one of another. Money is in cents (buys' costs rounded up, sells' proceeds down, so the integer
/// model is on the safe side).
/// </summary>
public static class LotRounder
{
    public static RoundingResult Round(IReadOnlyList<RoundingItem> items, decimal cash, TimeSpan? timeLimit = null)
    {
        var model = new CpModel();
        var lots = new IntVar[items.Count];
        var deviations = new List<IntVar>();
        var cashUse = LinearExpr.Constant(0);
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            if (item.Price <= 0 || item.Lot <= 0 || item.CostRate < 0)
            {
                throw new ArgumentException($"{item.InstrumentId}: price and lot must be positive and the cost rate non-negative.", nameof(items));
            }

            var desiredLots = item.DesiredChange / item.Lot;
            var low = (long)Math.Min(0, decimal.Floor(desiredLots));
            var high = (long)Math.Max(0, decimal.Ceiling(desiredLots));
            var k = lots[i] = model.NewIntVar(low, high, item.InstrumentId);
            var size = Math.Max(-low, high);
            var unitCents = item.Lot * item.Price * 100;

            // Either no trade or at least the minimum notional (in lots: ⌈min / (lot · price)⌉).
            var minimumLots = (long)decimal.Ceiling(item.MinNotional / (item.Lot * item.Price));
            if (minimumLots > 0 && size > 0)
            {
                var active = model.NewBoolVar(item.InstrumentId + "-active");
                var magnitude = high > 0 ? (LinearExpr)k : -k;
                model.Add(magnitude >= minimumLots).OnlyEnforceIf(active);
                model.Add(k == 0).OnlyEnforceIf(active.Not());
            }

            // Cash: buys pay notional and cost (rounded up), sells raise notional less cost (rounded down).
            cashUse += high > 0
                ? (long)decimal.Ceiling(unitCents * (1 + item.CostRate)) * k
                : (long)decimal.Floor(unitCents * (1 - item.CostRate)) * k;

            // |k · unit − desired| in cents.
            var desiredCents = (long)decimal.Round(item.DesiredChange * item.Price * 100);
            var deviation = model.NewIntVar(0, (long)decimal.Ceiling(Math.Abs(desiredCents) + (unitCents * (size + 1))), item.InstrumentId + "-deviation");
            model.Add(deviation >= ((long)decimal.Round(unitCents) * k) - desiredCents);
            model.Add(deviation >= desiredCents - ((long)decimal.Round(unitCents) * k));
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
            // Cannot happen for non-negative cash (trading nothing is feasible); say so rather than guess.
            throw new InvalidOperationException($"Lot rounding found no feasible allocation ({status}).");
        }

        var changes = new Dictionary<string, decimal>(StringComparer.Ordinal);
        decimal cashAfter = cash, distance = 0;
        for (var i = 0; i < items.Count; i++)
        {
            var change = solver.Value(lots[i]) * items[i].Lot;
            changes[items[i].InstrumentId] = change;
            var notional = change * items[i].Price;
            cashAfter -= notional + (Math.Abs(notional) * items[i].CostRate);
            distance += Math.Abs(notional - (items[i].DesiredChange * items[i].Price));
        }

        return new RoundingResult(changes, cashAfter, distance, status == CpSolverStatus.Optimal);
    }
}
