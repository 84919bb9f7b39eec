namespace RebalanceMesh.Planning.Core;

/// <summary>Applies fills to positions and cash.</summary>
public static class PortfolioLedger
{
    /// <summary>
    /// A buy adds quantity to the account and pays notional plus fee; a sell removes quantity from it and receives
    /// notional less fee. Positions that reach zero are removed.
    /// </summary>
    /// <param name="venue">The account (venue) the fill is booked in; empty is the default account.</param>
    public static PortfolioSnapshot ApplyFill(PortfolioSnapshot portfolio, string instrument, TradeSide side, decimal quantity, decimal price, decimal fee, string venue = "")
    {
        if (quantity <= 0 || price <= 0 || fee < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(quantity), "A fill has a positive quantity and price and a non-negative fee.");
        }

        var signed = side == TradeSide.Buy ? quantity : -quantity;
        var holdings = Accounts(portfolio);
        var key = (instrument, venue);
        var before = holdings.GetValueOrDefault(key) ?? new Holding(instrument, 0m, Venue: venue);
        holdings[key] = before with { Quantity = before.Quantity + signed };
        var cash = portfolio.Cash - (signed * price) - fee;
        return portfolio with { Holdings = Ordered(holdings), Cash = cash };
    }

    /// <summary>Holdings by (instrument, account).</summary>
    private static Dictionary<(string Instrument, string Venue), Holding> Accounts(PortfolioSnapshot portfolio) =>
        portfolio.Holdings.ToDictionary(h => (h.InstrumentId, h.Venue));

    /// <summary>Non-zero holdings by instrument, then account.</summary>
    private static Holding[] Ordered(Dictionary<(string Instrument, string Venue), Holding> holdings) =>
        holdings.Values.Where(h => h.Quantity != 0).OrderBy(h => h.InstrumentId, StringComparer.Ordinal).ThenBy(h => h.Venue, StringComparer.Ordinal).ToArray();

    /// <summary>
    /// Applies a completed loan leg: repay takes cash (or units of the debt asset) and reduces debt; borrow the reverse;
    /// supply moves held units (or
    /// cash, for the base currency) into the loan's collateral — from the default account first, then the largest
    /// accounts; withdraw returns them to the default account.
    /// </summary>
    public static PortfolioSnapshot ApplyLoanLeg(PortfolioSnapshot portfolio, GuardAction action, string loanId, string asset, decimal quantity, string baseCurrency)
    {
        if (quantity <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(quantity), "A loan leg moves a positive quantity.");
        }

        var loans = portfolio.LoanList.ToList();
        var index = loans.FindIndex(l => l.LoanId == loanId);
        if (index < 0)
        {
            throw new ArgumentException($"The portfolio has no loan '{loanId}'.", nameof(loanId));
        }

        var loan = loans[index];
        var cash = portfolio.Cash;
        var holdings = Accounts(portfolio);
        void Hold(decimal change)
        {
            if (asset == baseCurrency)
            {
                cash += change;
                return;
            }

            // Taking units out: the default account, then the accounts holding most; what they lack comes out of the
            // default account (below zero, as a fill would). Putting units back: the default account.
            var sources = change < 0
                ? holdings.Values.Where(h => h.InstrumentId == asset && h.Quantity > 0).OrderBy(h => h.Venue.Length == 0 ? 0 : 1).ThenByDescending(h => h.Quantity).ToList()
                : [];
            var remaining = change;
            foreach (var source in sources)
            {
                var take = Math.Max(remaining, -source.Quantity);
                holdings[(asset, source.Venue)] = source with { Quantity = source.Quantity + take };
                remaining -= take;
                if (remaining == 0)
                {
                    return;
                }
            }

            var before = holdings.GetValueOrDefault((asset, "")) ?? new Holding(asset, 0m);
            holdings[(asset, "")] = before with { Quantity = before.Quantity + remaining };
        }

        Loan Pledge(decimal change)
        {
            var collateral = loan.Collateral.ToList();
            var at = collateral.FindIndex(c => c.Asset == asset);
            if (at < 0)
            {
                throw new ArgumentException($"Loan '{loanId}' does not accept {asset} as collateral.", nameof(asset));
            }

            collateral[at] = collateral[at] with { Quantity = collateral[at].Quantity + change };
            return loan with { Collateral = collateral };
        }

        switch (action)
        {
            case GuardAction.Repay or GuardAction.Borrow when asset != (loan.OwesCash ? baseCurrency : loan.DebtAsset):
                throw new ArgumentException($"Loan '{loanId}' owes {(loan.OwesCash ? baseCurrency : loan.DebtAsset)}, not {asset}.", nameof(asset));
            case GuardAction.Repay:
                Hold(-quantity);
                loan = loan with { Debt = loan.Debt - quantity };
                break;
            case GuardAction.Borrow:
                Hold(quantity);
                loan = loan with { Debt = loan.Debt + quantity };
                break;
            case GuardAction.SupplyCollateral:
                Hold(-quantity);
                loan = Pledge(quantity);
                break;
            case GuardAction.WithdrawCollateral:
                Hold(quantity);
                loan = Pledge(-quantity);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(action), "Trades are applied as fills.");
        }

        loans[index] = loan;
        return portfolio with { Holdings = Ordered(holdings), Cash = cash, Loans = loans };
    }

    /// <summary>
    /// Free cash a completed loan leg moves (as <see cref="ApplyLoanLeg"/> books it): repaying or supplying cash pays
    /// it out, borrowing or withdrawing cash brings it in; a leg in another asset moves no cash.
    /// </summary>
    public static decimal LoanLegCash(GuardAction action, string asset, decimal quantity, string baseCurrency) =>
        asset != baseCurrency ? 0m : action switch
        {
            GuardAction.Repay or GuardAction.SupplyCollateral => -quantity,
            GuardAction.Borrow or GuardAction.WithdrawCollateral => quantity,
            _ => 0m,
        };

    /// <summary>Free cash a collateral transfer moves (as <see cref="ApplyCollateralTransfer"/> books it): out of cash when it leaves the default account, into it when it goes there.</summary>
    public static decimal TransferCash(string fromVenue, string toVenue, decimal amount) =>
        (fromVenue.Length == 0 ? -amount : 0m) + (toVenue.Length == 0 ? amount : 0m);

    /// <summary>
    /// A fill of a margined contract (perpetual, future): no notional changes hands. Adding to a position moves its
    /// entry price to the quantity-weighted average; reducing it realises (price − entry) × closed × multiplier
    /// (flipping sides opens the rest at the fill price); profit, loss and fee settle in the venue's margin account when
    /// the portfolio has one there, else in cash. Each account (venue) keeps its own position and entry price.
    /// </summary>
    public static PortfolioSnapshot ApplyMarginedFill(PortfolioSnapshot portfolio, string instrument, TradeSide side, decimal quantity, decimal price, decimal fee, decimal multiplier, string venue = "")
    {
        if (quantity <= 0 || price <= 0 || fee < 0 || multiplier <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(quantity), "A fill has a positive quantity, price and multiplier and a non-negative fee.");
        }

        var signed = side == TradeSide.Buy ? quantity : -quantity;
        var holdings = Accounts(portfolio);
        var key = (instrument, venue);
        var before = holdings.GetValueOrDefault(key) ?? new Holding(instrument, 0m, Venue: venue);
        var held = before.Quantity;
        var entry = before.EntryPrice ?? price;
        var settled = -fee;
        decimal newEntry;
        if (held == 0 || Math.Sign(held) == Math.Sign(signed))
        {
            newEntry = ((Math.Abs(held) * entry) + (quantity * price)) / (Math.Abs(held) + quantity);
        }
        else
        {
            var closed = Math.Min(quantity, Math.Abs(held));
            settled += closed * (price - entry) * multiplier * Math.Sign(held);
            newEntry = quantity > Math.Abs(held) ? price : entry;
        }

        holdings[key] = before with { Quantity = held + signed, EntryPrice = held + signed == 0 ? null : newEntry };
        return Settle(portfolio with { Holdings = Ordered(holdings) }, venue, settled);
    }

    /// <summary>Base-currency cash moved into the margin account on <paramref name="venue"/> (opened when it has none).</summary>
    public static PortfolioSnapshot ApplyMarginTopUp(PortfolioSnapshot portfolio, string venue, decimal amount)
    {
        if (amount <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(amount), "A top-up moves a positive amount.");
        }

        return AddCollateral(portfolio with { Cash = portfolio.Cash - amount }, venue, amount);
    }

    /// <summary>Collateral moved between margin accounts (an empty venue is the default account's cash).</summary>
    public static PortfolioSnapshot ApplyCollateralTransfer(PortfolioSnapshot portfolio, string fromVenue, string toVenue, decimal amount)
    {
        if (amount <= 0 || fromVenue == toVenue)
        {
            throw new ArgumentOutOfRangeException(nameof(amount), "A transfer moves a positive amount between two accounts.");
        }

        var left = fromVenue.Length == 0 ? portfolio with { Cash = portfolio.Cash - amount } : Settle(portfolio, fromVenue, -amount, requireAccount: true);
        return toVenue.Length == 0 ? left with { Cash = left.Cash + amount } : AddCollateral(left, toVenue, amount);
    }

    /// <summary>
    /// A position a venue liquidated: the account's position moves by <paramref name="closedQuantity"/> (its entry
    /// unchanged), the realised profit less the venue's fee settles in the venue's margin account (or cash without one).
    /// </summary>
    public static PortfolioSnapshot ApplyMarginLiquidation(PortfolioSnapshot portfolio, string venue, string instrument, decimal closedQuantity, decimal realizedPnl, decimal fee)
    {
        var holdings = Accounts(portfolio);
        var key = (instrument, venue);
        if (holdings.GetValueOrDefault(key) is { } before)
        {
            var after = before.Quantity + closedQuantity;
            holdings[key] = before with { Quantity = after, EntryPrice = after == 0 ? null : before.EntryPrice };
        }

        return Settle(portfolio with { Holdings = Ordered(holdings) }, venue, realizedPnl - fee);
    }

    /// <summary>Collateral added to the margin account on <paramref name="venue"/>, opened when the portfolio has none there.</summary>
    private static PortfolioSnapshot AddCollateral(PortfolioSnapshot portfolio, string venue, decimal amount)
    {
        var accounts = portfolio.MarginAccountList.ToList();
        var index = accounts.FindIndex(a => a.Venue == venue);
        if (index < 0)
        {
            accounts.Add(new MarginCollateral(venue, amount));
        }
        else
        {
            accounts[index] = accounts[index] with { Collateral = accounts[index].Collateral + amount };
        }

        return portfolio with { MarginAccounts = accounts.OrderBy(a => a.Venue, StringComparer.Ordinal).ToArray() };
    }

    /// <summary>Profit, loss and fees of margined contracts settle in the venue's margin account when there is one, else in cash.</summary>
    private static PortfolioSnapshot Settle(PortfolioSnapshot portfolio, string venue, decimal amount, bool requireAccount = false)
    {
        if (venue.Length > 0 && portfolio.MarginAccountList.Any(a => a.Venue == venue))
        {
            return AddCollateral(portfolio, venue, amount);
        }

        return requireAccount
            ? throw new ArgumentException($"The portfolio has no margin account on {venue}.", nameof(venue))
            : portfolio with { Cash = portfolio.Cash + amount };
    }

    /// <summary>Volume-weighted average price after adding a fill.</summary>
    public static decimal Vwap(decimal filledBefore, decimal averageBefore, decimal quantity, decimal price) =>
        filledBefore + quantity == 0 ? 0 : ((filledBefore * averageBefore) + (quantity * price)) / (filledBefore + quantity);
}
