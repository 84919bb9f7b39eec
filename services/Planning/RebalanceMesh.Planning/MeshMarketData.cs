using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Contracts.Risk.V1;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Planning;

/// <summary>
/// Planning's market data from the mesh: annualised sample covariance and mean log returns estimated by risk from
/// market-state history, half-spreads from pricing's consolidated quotes.
/// </summary>
public sealed class MeshMarketData(PricingService.PricingServiceClient pricing, RiskService.RiskServiceClient risk) : IPlanningMarketData
{
    public async Task<CovarianceEstimate> EstimateCovarianceAsync(IReadOnlyList<string> instruments, int lookbackDays, CancellationToken cancellationToken)
    {
        var request = new EstimateCovarianceRequest { Method = CovarianceMethod.Sample, LookbackDays = lookbackDays };
        request.InstrumentIds.AddRange(instruments);
        var estimate = await risk.EstimateCovarianceAsync(request, cancellationToken: cancellationToken);
        var n = instruments.Count;
        var covariance = new double[n, n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                covariance[i, j] = estimate.Covariance[(i * n) + j];
            }
        }

        return new CovarianceEstimate(instruments.ToArray(), covariance, estimate.AnnualMeanReturns.ToArray(), estimate.Observations);
    }

    public async Task<IReadOnlyDictionary<string, double>> HalfSpreadsAsync(IReadOnlyList<string> instruments, CancellationToken cancellationToken)
    {
        var request = new GetQuotesRequest();
        request.InstrumentIds.AddRange(instruments);
        var prices = (await pricing.GetQuotesAsync(request, cancellationToken: cancellationToken)).Prices;
        return prices
            .Where(p => p.Mid.ToDecimal() > 0 && p.Ask.ToDecimal() >= p.Bid.ToDecimal())
            .ToDictionary(p => p.InstrumentId, p => (double)((p.Ask.ToDecimal() - p.Bid.ToDecimal()) / 2 / p.Mid.ToDecimal()), StringComparer.Ordinal);
    }
}
