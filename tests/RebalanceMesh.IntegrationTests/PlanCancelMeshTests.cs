using Grpc.Core;
using RebalanceMesh.Contracts.Planning.V1;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>The whole mesh: one plan executes at a time per portfolio, and a trader cancels it mid-flight.</summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class PlanCancelMeshTests(ITestOutputHelper output) : MeshTest(output)
{
    [Fact]
    public async Task A_second_submission_waits_for_the_first_plan_and_a_cancel_stops_it_with_what_filled_booked()
    {
        var planning = PlanningClient();
        await CashPortfolioAsync(planning, "slow", 1_000_000m);
        var policy = new Policy
        {
            PortfolioId = "slow",
            AbsoluteBand = 0.02,
            ExecutionStyle = new ExecutionStyle { TwapSlices = 10, TwapDurationSeconds = 60 }, // a slice every 6 s
        };
        policy.Targets.AddRange(new[] { "DAX", "SMI", "CAC", "FTSE" }.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.24 }));
        await planning.SetPolicyAsync(new SetPolicyRequest { Policy = policy });
        await PreviewWhenPricedAsync(planning, new PreviewRebalanceRequest { PortfolioId = "slow" });

        var submitted = (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "slow", IdempotencyKey = "first" })).Plan;
        Assert.Equal(PlanStatus.Approved, submitted.Status);

        // While it executes another plan would be computed from positions it is still changing: refused, naming it.
        var refused = await Assert.ThrowsAsync<RpcException>(() => planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "slow", IdempotencyKey = "second" }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains(submitted.PlanId, refused.Status.Detail, StringComparison.Ordinal);

        // Cancelled during its first slice: it ends CANCELLED within a slice, and planning books exactly what filled.
        await Task.Delay(500);
        var requested = (await planning.CancelPlanAsync(new CancelPlanRequest { PlanId = submitted.PlanId, Reason = "integration test" })).Plan;
        Assert.EndsWith(": integration test", requested.StatusMessage, StringComparison.Ordinal);
        var ended = await WaitForPlanEndAsync(planning, submitted, seconds: 20);
        Output.WriteLine($"{ended.Status}: {ended.StatusMessage}");
        Assert.Equal(PlanStatus.Cancelled, ended.Status);
        Assert.True(ended.Legs.Sum(l => Or0(l.FilledQuantity)) < ended.Legs.Sum(l => l.Quantity.ToDecimal()), "the cancel stopped the plan before it filled");
        var portfolio = (await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "slow", SkipValuation = true })).Portfolio;
        foreach (var leg in ended.Legs)
        {
            Assert.Equal(Or0(leg.FilledQuantity), portfolio.Positions.Where(p => p.InstrumentId == leg.InstrumentId).Sum(p => p.Quantity.ToDecimal()));
        }

        static decimal Or0(RebalanceMesh.Contracts.Common.V1.DecimalValue? value) => RebalanceMesh.Contracts.Common.V1.DecimalValue.TryParse(value, out var d) ? d : 0m;
        var spent = ended.Legs.Sum(l => (Or0(l.FilledQuantity) * Or0(l.AverageFillPrice)) + Or0(l.Fees));
        Assert.InRange(portfolio.Cash.ToDecimal() - (1_000_000m - spent), -0.000001m, 0.000001m); // averages are rounded quotients

        // Ended, the portfolio takes the next plan.
        var next = (await planning.SubmitRebalanceAsync(new SubmitRebalanceRequest { PortfolioId = "slow", IdempotencyKey = "third" })).Plan;
        Assert.Equal(PlanStatus.Approved, next.Status);
        await planning.CancelPlanAsync(new CancelPlanRequest { PlanId = next.PlanId });
    }
}
