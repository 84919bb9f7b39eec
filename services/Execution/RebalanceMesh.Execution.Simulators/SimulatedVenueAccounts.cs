using RebalanceMesh.Contracts.Execution.V1;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>The simulated venues' accounts as the execution service's account RPCs open and show them.</summary>
public sealed class SimulatedVenueAccounts(LendingDesk lending, MarginDesk margin) : IVenueAccounts
{
    public Task<LendingAccount> OpenLendingAsync(LendingAccount account) => lending.OpenAsync(account);

    public Task<LendingAccount?> GetLendingAsync(string venue, string portfolioId, string loanId) => lending.GetAsync(venue, portfolioId, loanId);

    public Task<VenueMarginAccount> OpenMarginAsync(VenueMarginAccount account) => margin.OpenAsync(account);

    public Task<VenueMarginAccount?> GetMarginAsync(string venue, string portfolioId) => margin.GetAsync(venue, portfolioId);
}
