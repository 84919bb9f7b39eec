using RebalanceMesh.Execution.Core;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>One margined position in a venue account: signed contracts, average entry price per unit of the underlying.</summary>
public sealed record MarginPosition(string Instrument, decimal Quantity, decimal EntryPrice, decimal Multiplier);

/// <summary>A portfolio's account on a venue: its margin collateral (in the base currency), margined positions and spot units.</summary>
public sealed record MarginAccountState(string Venue, string PortfolioId, string BaseCurrency, decimal Collateral, IReadOnlyList<MarginPosition> Positions, int Liquidations = 0, IReadOnlyDictionary<string, decimal>? Spot = null)
{
    /// <summary>Spot units of an instrument held in the account.</summary>
    public decimal SpotUnits(string instrument) => Spot?.GetValueOrDefault(instrument) ?? 0m;
}

/// <summary>One position the venue closed because the account fell below its maintenance margin.</summary>
/// <param name="ClosedQuantity">Signed change of the position (a long of 5 closed is −5).</param>
/// <param name="RealizedPnl">Profit or loss realised against the entry price, credited to the collateral.</param>
/// <param name="RatioBefore">Margin ratio (equity over maintenance margin) before and after this call.</param>
public sealed record MarginLiquidationCall(string Instrument, decimal ClosedQuantity, decimal Price, decimal Fee, decimal RealizedPnl, double RatioBefore, double RatioAfter);

/// <summary>
/// The rules of a venue that clears margined contracts in isolated accounts, enforced as prices move and on every
/// fill: equity E = collateral + Σ (mark − entry) × quantity × multiplier; maintenance margin M = Σ |quantity| × mark ×
/// multiplier × maintenance rate. Below E &lt; M the venue liquidates: at the mark, largest maintenance first, it
/// closes just enough to bring the account back to its initial margin (whole positions when that is not enough),
/// charging its liquidation fee on what it closes — a plan that did not top the account up in time is liquidated for
/// real. Fills move the average entry when a position grows and realise
/// profit and loss into the collateral when it shrinks; fees come out of the collateral.
/// </summary>
public static class MarginVenue
{
    /// <summary>Collateral plus every position's open profit or loss at <paramref name="mark"/>.</summary>
    public static decimal Equity(MarginAccountState account, Func<string, decimal> mark) =>
        account.Collateral + account.Positions.Sum(p => (mark(p.Instrument) - p.EntryPrice) * p.Quantity * p.Multiplier);

    /// <summary>Σ |quantity| × mark × multiplier × maintenance rate.</summary>
    public static decimal Maintenance(MarginAccountState account, Func<string, decimal> mark, MarginTerms terms) =>
        account.Positions.Sum(p => Math.Abs(p.Quantity) * mark(p.Instrument) * p.Multiplier * terms.MaintenanceRate);

    /// <summary>Equity over maintenance margin; infinite without positions.</summary>
    public static double Ratio(MarginAccountState account, Func<string, decimal> mark, MarginTerms terms)
    {
        var maintenance = Maintenance(account, mark, terms);
        return maintenance <= 0 ? double.PositiveInfinity : (double)(Equity(account, mark) / maintenance);
    }

    /// <summary>Σ |quantity| × mark × multiplier × initial rate.</summary>
    public static decimal Initial(MarginAccountState account, Func<string, decimal> mark, MarginTerms terms) =>
        account.Positions.Sum(p => Math.Abs(p.Quantity) * mark(p.Instrument) * p.Multiplier * terms.InitialRate);

    /// <summary>
    /// Collateral leaving the account (to another venue): at most the collateral, and only while the equity that stays
    /// covers the initial margin. Returns the account after, or why the venue refuses.
    /// </summary>
    public static (MarginAccountState? After, string Reason) Withdraw(MarginAccountState account, decimal amount, Func<string, decimal> mark, MarginTerms terms)
    {
        if (amount <= 0)
        {
            return (null, "the amount must be positive");
        }

        if (amount > account.Collateral)
        {
            return (null, $"only {account.Collateral} of collateral is in the account");
        }

        var after = account with { Collateral = account.Collateral - amount };
        var equity = Equity(after, mark);
        var initial = Initial(after, mark, terms);
        return equity < initial ? (null, $"what stays ({equity:0.##}) would not cover the initial margin ({initial:0.##})") : (after, string.Empty);
    }

    /// <summary>Cash moved into the account's collateral (a margin top-up); the amount must be positive.</summary>
    public static MarginAccountState TopUp(MarginAccountState account, decimal amount) =>
        amount > 0 ? account with { Collateral = account.Collateral + amount } : throw new ArgumentOutOfRangeException(nameof(amount), "A top-up moves a positive amount.");

    /// <summary>
    /// A fill of <paramref name="signedQuantity"/> contracts at <paramref name="price"/>: a growing position averages
    /// its entry, a shrinking one realises (price − entry) × closed × multiplier into the collateral, a flip opens
    /// the rest at the fill price; the fee comes out of the collateral.
    /// </summary>
    public static MarginAccountState ApplyFill(MarginAccountState account, string instrument, decimal signedQuantity, decimal price, decimal fee, decimal multiplier)
    {
        var positions = account.Positions.ToList();
        var index = positions.FindIndex(p => p.Instrument == instrument);
        var before = index >= 0 ? positions[index] : new MarginPosition(instrument, 0m, price, multiplier);
        var after = before.Quantity + signedQuantity;
        decimal realized = 0;
        MarginPosition updated;
        if (before.Quantity == 0 || Math.Sign(before.Quantity) == Math.Sign(signedQuantity))
        {
            var entry = ((before.EntryPrice * Math.Abs(before.Quantity)) + (price * Math.Abs(signedQuantity))) / Math.Abs(after);
            updated = before with { Quantity = after, EntryPrice = entry };
        }
        else
        {
            var closed = Math.Min(Math.Abs(signedQuantity), Math.Abs(before.Quantity)) * Math.Sign(before.Quantity);
            realized = (price - before.EntryPrice) * closed * before.Multiplier;
            updated = before with { Quantity = after, EntryPrice = Math.Sign(after) == Math.Sign(before.Quantity) || after == 0 ? before.EntryPrice : price };
        }

        if (index >= 0)
        {
            positions[index] = updated;
        }
        else
        {
            positions.Add(updated);
        }

        return account with { Collateral = account.Collateral + realized - fee, Positions = positions.Where(p => p.Quantity != 0).ToArray() };
    }

    /// <summary>Why the venue rejects a sell of <paramref name="quantity"/> spot units from the account, or null when it holds them.</summary>
    public static string? SpotSellRefusal(MarginAccountState account, string instrument, decimal quantity) =>
        quantity <= account.SpotUnits(instrument) ? null : $"insufficient balance: the {account.Venue} account holds {account.SpotUnits(instrument)} {instrument}, the order sells {quantity}";

    /// <summary>A spot fill in the account: units move by <paramref name="signedQuantity"/> (cash is the portfolio's, not the account's).</summary>
    public static MarginAccountState ApplySpotFill(MarginAccountState account, string instrument, decimal signedQuantity)
    {
        var spot = new Dictionary<string, decimal>(account.Spot ?? new Dictionary<string, decimal>(), StringComparer.Ordinal);
        spot[instrument] = spot.GetValueOrDefault(instrument) + signedQuantity;
        return spot[instrument] < 0
            ? throw new InvalidOperationException($"The {account.Venue} account would hold {spot[instrument]} {instrument}.")
            : account with { Spot = spot.Where(kv => kv.Value != 0).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal) };
    }

    /// <summary>
    /// The venue's liquidation: while equity is below maintenance, it takes the position with the largest maintenance
    /// margin and closes at the mark just enough of it (to 10⁻⁸ of a contract, rounded up) to bring the account back to
    /// its initial margin — closing c contracts of notional n each costs the fee c·n·fee rate and frees c·n·initial
    /// rate of initial margin, so c = (initial − equity) / (n·(initial rate − fee rate)) — or all of it when that is
    /// not enough, then the next. An account whose equity is gone loses every position. Each close charges the
    /// liquidation fee on its notional and realises its profit or loss into the collateral. Returns the account
    /// after and each call.
    /// </summary>
    public static (MarginAccountState After, IReadOnlyList<MarginLiquidationCall> Calls) Liquidate(MarginAccountState account, Func<string, decimal> mark, MarginTerms terms)
    {
        var calls = new List<MarginLiquidationCall>();
        while (account.Positions.Count > 0 && Equity(account, mark) < Maintenance(account, mark, terms))
        {
            var before = Ratio(account, mark, terms);
            var position = account.Positions.OrderByDescending(p => Math.Abs(p.Quantity) * mark(p.Instrument) * p.Multiplier).ThenBy(p => p.Instrument, StringComparer.Ordinal).First();
            var price = mark(position.Instrument);
            var unitNotional = price * position.Multiplier;
            var freed = unitNotional * (terms.InitialRate - terms.LiquidationFeeRate);
            var needed = freed > 0 ? (Initial(account, mark, terms) - Equity(account, mark)) / freed : decimal.MaxValue;
            var contracts = needed >= Math.Abs(position.Quantity) ? Math.Abs(position.Quantity) : Math.Min(Math.Abs(position.Quantity), decimal.Round(needed, 8, MidpointRounding.ToPositiveInfinity));
            var closed = contracts * Math.Sign(position.Quantity);
            var fee = contracts * unitNotional * terms.LiquidationFeeRate;
            var realized = (price - position.EntryPrice) * closed * position.Multiplier;
            var left = position with { Quantity = position.Quantity - closed };
            account = account with
            {
                Collateral = account.Collateral + realized - fee,
                Positions = account.Positions.Select(p => p == position ? left : p).Where(p => p.Quantity != 0).ToArray(),
                Liquidations = account.Liquidations + 1,
            };
            calls.Add(new MarginLiquidationCall(position.Instrument, -closed, price, fee, realized, before, Ratio(account, mark, terms)));
        }

        return (account, calls);
    }
}
