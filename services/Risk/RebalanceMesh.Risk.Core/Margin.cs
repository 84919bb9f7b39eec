namespace RebalanceMesh.Risk.Core;

/// <summary>Standard margin rates by contract kind, as fractions of notional exposure.</summary>
public sealed record MarginRates(
    double DeltaOneInitial = 0.10,
    double DeltaOneMaintenance = 0.05,
    double ShortOptionInitial = 0.15,
    double ShortOptionMaintenance = 0.10);

/// <summary>What standard margin needs to know about one position.</summary>
/// <param name="Kind">spot, delta-one (perpetual/future) or option.</param>
/// <param name="Notional">|quantity| × underlying price × multiplier, in currency.</param>
/// <param name="Premium">Option value held (negative when short).</param>
public sealed record MarginPosition(MarginKind Kind, double Notional, double Premium, bool IsShort);

/// <summary>Kinds that margin treats differently.</summary>
public enum MarginKind
{
    Spot,
    DeltaOne,
    Option,
}

/// <summary>Standard (per-position) and portfolio (scenario-grid) margin.</summary>
public static class MarginModel
{
    /// <summary>The shock grid of portfolio margin: underlying price ±15 % in 5 % steps × volatility −30 %, 0, +30 %.</summary>
    public static IReadOnlyList<(double Price, double Volatility)> Grid { get; } =
        (from price in new[] { -0.15, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15 }
         from vol in new[] { -0.30, 0.0, 0.30 }
         select (price, vol)).ToArray();

    /// <summary>
    /// Standard margin: spot is fully paid; delta-one contracts need a rate of notional; long options are paid by their
    /// premium; short options need their premium plus a rate of the underlying's notional.
    /// </summary>
    public static (double Initial, double Maintenance) Standard(IEnumerable<MarginPosition> positions, MarginRates rates)
    {
        double initial = 0, maintenance = 0;
        foreach (var position in positions)
        {
            switch (position.Kind)
            {
                case MarginKind.DeltaOne:
                    initial += rates.DeltaOneInitial * position.Notional;
                    maintenance += rates.DeltaOneMaintenance * position.Notional;
                    break;
                case MarginKind.Option when position.IsShort:
                    initial += Math.Abs(position.Premium) + (rates.ShortOptionInitial * position.Notional);
                    maintenance += Math.Abs(position.Premium) + (rates.ShortOptionMaintenance * position.Notional);
                    break;
            }
        }

        return (initial, maintenance);
    }

    /// <summary>Portfolio margin from the P&amp;L of each grid scenario: the worst loss (zero if none loses), and where it is.</summary>
    public static (double Maintenance, double Initial, double WorstPrice, double WorstVolatility) Portfolio(IReadOnlyList<double> scenarioPnl)
    {
        if (scenarioPnl.Count != Grid.Count)
        {
            throw new ArgumentException("One P&L per grid scenario is required.", nameof(scenarioPnl));
        }

        var worst = 0;
        for (var i = 1; i < scenarioPnl.Count; i++)
        {
            if (scenarioPnl[i] < scenarioPnl[worst])
            {
                worst = i;
            }
        }

        var maintenance = Math.Max(0, -scenarioPnl[worst]);
        return (maintenance, 1.25 * maintenance, Grid[worst].Price, Grid[worst].Volatility);
    }
}
