namespace RebalanceMesh.Risk.Core;

/// <summary>A trade's change of one position's value, in currency.</summary>
public sealed record ValueChange(string InstrumentId, double ValueDelta);

/// <summary>One trade's first-order effect on annualised portfolio variance.</summary>
public sealed record VarianceContribution(string InstrumentId, double AnnualVarianceContribution);

/// <summary>Variance impact of trades: Δσ² = 2 Vᵀ Σ ΔV + ΔVᵀ Σ ΔV; each trade's first-order share is 2 ΔVᵢ (Σ V)ᵢ.</summary>
public static class TradeImpact
{
    public static IReadOnlyList<VarianceContribution> Contributions(IReadOnlyList<double> valuesBefore, IReadOnlyList<ValueChange> changes, ReturnMatrix returns)
    {
        // S·V in O(T·n) from the returns, without forming the n×n covariance.
        var marginal = PortfolioRiskModel.LinearMoments(returns.Values, valuesBefore).CovarianceTimesValues.Select(v => v * RiskMath.TradingDaysPerYear).ToArray();
        var index = returns.Instruments.Select((id, i) => (id, i)).ToDictionary(x => x.id, x => x.i, StringComparer.Ordinal);
        return changes.Select(c => new VarianceContribution(c.InstrumentId, 2 * c.ValueDelta * marginal[index[c.InstrumentId]])).ToArray();
    }
}
