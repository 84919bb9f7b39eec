using RebalanceMesh.Contracts.Execution.V1;

namespace RebalanceMesh.Execution;

/// <summary>
/// The portfolios' accounts held at venues — loans on lending venues, margin accounts on trading venues — as the
/// account RPCs open and show them. A venue plugin provides it (the simulated venues keep such accounts); without
/// one the RPCs answer Unimplemented.
/// </summary>
public interface IVenueAccounts
{
    /// <summary>Validates (InvalidArgument with field violations) and opens a loan account.</summary>
    Task<LendingAccount> OpenLendingAsync(LendingAccount account);

    /// <summary>A loan account valued at current prices, or null.</summary>
    Task<LendingAccount?> GetLendingAsync(string venue, string portfolioId, string loanId);

    /// <summary>Validates and opens a margin account.</summary>
    Task<VenueMarginAccount> OpenMarginAsync(VenueMarginAccount account);

    /// <summary>A margin account valued at current marks, or null.</summary>
    Task<VenueMarginAccount?> GetMarginAsync(string venue, string portfolioId);
}
