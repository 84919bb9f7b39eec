using RebalanceMesh.Risk.Core;
using Wire = RebalanceMesh.Contracts.Risk.V1;

namespace RebalanceMesh.Risk;

/// <summary>Risk reports on the wire: AssessPortfolioResponse, also each side of a CompareRiskResponse.</summary>
internal static class RiskWire
{
    /// <summary>The report, with positions per holding (mapped from their risk factors) and greeks per underlying.</summary>
    public static Wire.AssessPortfolioResponse ToWire(RiskReport report, RiskBook book)
    {
        var response = ToWire(report);
        var byFactor = report.Positions.ToDictionary(p => p.InstrumentId, StringComparer.Ordinal);
        response.Positions.Clear();
        foreach (var position in book.Positions)
        {
            var factor = byFactor[position.Factor];
            response.Positions.Add(new Wire.PositionRisk
            {
                InstrumentId = position.InstrumentId,
                MarketValue = position.MarketValue,
                Weight = report.NetValue != 0 ? position.MarketValue / report.NetValue : 0,
                AnnualVolatility = factor.AnnualVolatility,
                ComponentVar = position.Exposure * factor.MarginalVar,
                MarginalVar = factor.MarginalVar,
                RiskFactor = position.Factor,
                Exposure = position.Exposure,
                Venue = position.Venue,
            });
        }

        response.Greeks.AddRange(book.Greeks);
        return response;
    }

    public static Wire.AssessPortfolioResponse ToWire(RiskReport report)
    {
        var response = new Wire.AssessPortfolioResponse
        {
            NetValue = report.NetValue,
            AnnualVolatility = report.AnnualVolatility,
            HorizonVolatility = report.HorizonVolatility,
            Observations = report.Observations,
            GrossLeverage = report.GrossLeverage,
            DiversificationRatio = report.DiversificationRatio,
            SharpeRatio = report.SharpeRatio,
            SortinoRatio = report.SortinoRatio,
            Skewness = report.PnlMoments.Skewness,
            ExcessKurtosis = report.PnlMoments.ExcessKurtosis,
        };
        foreach (var figure in report.Figures)
        {
            response.Estimates.Add(new Wire.VarEstimate
            {
                Method = figure.Method switch
                {
                    VarMethod.Historical => Wire.VarMethod.Historical,
                    VarMethod.CornishFisher => Wire.VarMethod.CornishFisher,
                    VarMethod.MonteCarlo => Wire.VarMethod.MonteCarlo,
                    _ => Wire.VarMethod.Parametric,
                },
                Confidence = figure.Confidence,
                Var = figure.ValueAtRisk,
                Cvar = figure.ConditionalValueAtRisk,
            });
        }

        foreach (var position in report.Positions)
        {
            response.Positions.Add(new Wire.PositionRisk
            {
                InstrumentId = position.InstrumentId,
                MarketValue = position.MarketValue,
                Weight = position.Weight,
                AnnualVolatility = position.AnnualVolatility,
                ComponentVar = position.ComponentVar,
                MarginalVar = position.MarginalVar,
            });
        }

        return response;
    }
}
