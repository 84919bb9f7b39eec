using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Planning;

/// <summary>
/// A model's policy made into one portfolio's: the model's, with the portfolio's overrides (cash to keep, instruments
/// not to trade, its execution mode) and a link saying which model version it was made from. Also the validation of
/// models and overrides.
/// </summary>
public static class ModelPolicies
{
    /// <summary>Instruments an override's no-trade list holds at most.</summary>
    public const int MaxNoTrade = 500;

    /// <summary>The policy <paramref name="portfolioId"/> follows under <paramref name="model"/> with <paramref name="overrides"/>.</summary>
    public static Policy For(Model model, string portfolioId, ModelOverrides? overrides)
    {
        var policy = model.Policy.Clone();
        policy.PortfolioId = portfolioId;
        policy.Version = 0;
        overrides ??= new ModelOverrides();
        if (overrides.HasCashTarget)
        {
            // The model's weights scaled to sum to 1 − cash: each keeps its share of what is invested.
            var invested = policy.Targets.Sum(t => t.Weight);
            if (invested > 0)
            {
                var scale = (1 - overrides.CashTarget) / invested;
                foreach (var target in policy.Targets)
                {
                    target.Weight *= scale;
                }
            }
        }

        foreach (var instrument in overrides.NoTradeInstruments.Where(i => !policy.NoTradeInstruments.Contains(i)))
        {
            policy.NoTradeInstruments.Add(instrument);
        }

        if (overrides.ExecutionMode != ExecutionMode.Unspecified)
        {
            policy.ExecutionMode = overrides.ExecutionMode;
        }

        policy.ModelLink = new ModelLink { ModelId = model.ModelId, ModelVersion = model.Version, Overrides = overrides.Clone() };
        return policy;
    }

    public static void ValidateModel(RequestValidator check, Model? model, string path)
    {
        if (!check.Require(model is not null, path, "is required"))
        {
            return;
        }

        check.RequireIdentifier(model!.ModelId, path + ".model_id");
        check.Require(model.Name.Length <= 200, path + ".name", "must be at most 200 characters");
        if (check.Require(model.Policy is not null, path + ".policy", "is required"))
        {
            // Validated as a portfolio's policy would be; the portfolio it is made for is named later.
            var policy = model.Policy!.Clone();
            policy.PortfolioId = "model";
            PlanningMapping.ValidatePolicy(check, policy, path + ".policy");
        }
    }

    public static void ValidateOverrides(RequestValidator check, ModelOverrides? overrides, string path)
    {
        if (overrides is null)
        {
            return;
        }

        if (overrides.HasCashTarget)
        {
            check.Require(double.IsFinite(overrides.CashTarget) && overrides.CashTarget is >= 0 and < 1, path + ".cash_target", "must be at least 0 and below 1");
        }

        check.RequireCount(overrides.NoTradeInstruments.Count, MaxNoTrade, path + ".no_trade_instruments");
        for (var i = 0; i < overrides.NoTradeInstruments.Count && i < MaxNoTrade; i++)
        {
            check.RequireIdentifier(overrides.NoTradeInstruments[i], $"{path}.no_trade_instruments[{i}]");
        }

        check.Require(System.Enum.IsDefined(overrides.ExecutionMode), path + ".execution_mode", "is not a known mode");
    }
}
