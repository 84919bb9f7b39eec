using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Computed target models through planning's API (issue 15): parameters out of reach are refused at SetPolicy, a stored
/// policy never breaks reads, and the model's current targets are visible with what they were computed from. The
/// policy passes its covariance and expected returns, so no market data is needed (pricing and risk are unreachable).
/// </summary>
public sealed class PolicyModelTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private static readonly string[] Indices = ["DAX", "SMI", "CAC", "FTSE"];
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;
    private readonly PlanningService.PlanningServiceClient _client;

    public PolicyModelTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>(TestAuth.Settings)
        {
            ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
            ["Services:risk:Grpc"] = "http://127.0.0.1:1",
        });
        _client = new PlanningService.PlanningServiceClient(_server.CreateInvoker(TestAuth.Token(RebalanceMesh.ServiceDefaults.MeshAuth.Admin)));
    }

    public async Task InitializeAsync()
    {
        await _redis.FlushAsync();
        await _client.UpsertPortfolioAsync(new UpsertPortfolioRequest { Portfolio = new Portfolio { PortfolioId = "m1", BaseCurrency = "EUR", Cash = 1_000_000m }, ExpectedVersion = -1 });
    }

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    /// <summary>EFFICIENT_RETURN over the four indices, 90 % invested, with the reference data's annual covariance and μ.</summary>
    private static Policy EfficientReturn(double targetReturn)
    {
        var policy = new Policy
        {
            PortfolioId = "m1",
            AbsoluteBand = 0.05,
            TargetModel = TargetModel.EfficientReturn,
            ModelParameters = new ModelParameters { TargetReturn = targetReturn },
        };
        policy.Targets.AddRange(Indices.Select(id => new TargetWeight { InstrumentId = id, Weight = 0.225 }));
        double[] mu = [0.08, 0.05, 0.07, 0.04];
        for (var i = 0; i < 4; i++)
        {
            policy.ExpectedReturns[Indices[i]] = mu[i];
        }

        var covariance = TargetModelTests.AnnualCovariance();
        for (var i = 0; i < 4; i++)
        {
            for (var j = 0; j < 4; j++)
            {
                policy.ModelParameters.Covariance.Add(covariance[i, j]);
            }
        }

        return policy;
    }

    [Fact]
    public async Task A_target_no_portfolio_can_reach_is_refused_at_SetPolicy_as_the_field_it_is()
    {
        // Expected returns 4–8 %: a 50 % target return is out of reach for any long-only mix.
        var fields = await RpcAssert.InvalidArgumentAsync(() => _client.SetPolicyAsync(new SetPolicyRequest { Policy = EfficientReturn(0.5) }).ResponseAsync,
            "policy.model_parameters.target_return");
        Assert.Single(fields);
        Assert.Null((await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "m1", SkipValuation = true })).Policy);
    }

    [Fact]
    public async Task The_models_targets_are_returned_with_what_they_were_computed_from()
    {
        var set = await _client.SetPolicyAsync(new SetPolicyRequest { Policy = EfficientReturn(0.065) });

        // cvxopt on the same problem (tests/reference/target_models_reference.py), scaled to the 90 % invested.
        double[] cvxopt = [0.3303943703403636, 0.029908034240557005, 0.3828381614659961, 0.25685943395308314];
        var computed = set.ComputedTargets;
        Assert.Equal(TargetModel.EfficientReturn, computed.Model);
        Assert.Equal(Indices, computed.Targets.Select(t => t.InstrumentId));
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(0.9 * cvxopt[i], computed.Targets[i].Weight, 1e-6);
        }

        Assert.True(computed.CovarianceGiven);
        Assert.Equal((0, 0), (computed.LookbackDays, computed.Observations));
        Assert.Equal(0.08, computed.ExpectedReturns["DAX"]);
        Assert.Contains(computed.Reasons, r => r.Rule == "target_model");
        Assert.Equal(string.Empty, computed.UnavailableReason);

        // The read path shows the same targets (from the cache the monitor shares), though pricing is unreachable.
        var read = await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "m1" });
        Assert.Equal(computed.Targets, read.ComputedTargets.Targets);
        Assert.Equal(computed.ComputedAt, read.ComputedTargets.ComputedAt);
        Assert.Null(read.Valuation);
        Assert.StartsWith("pricing is unavailable", read.ValuationUnavailableReason);
    }

    [Fact]
    public async Task A_stored_policy_the_market_no_longer_allows_never_breaks_reads()
    {
        // Stored as it was accepted once; the market (here: the policy's own inputs) no longer allows it.
        var store = _server.Services.GetRequiredService<PlanningStore>();
        await store.SetPolicyAsync(EfficientReturn(0.5));

        var read = await _client.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "m1" });
        Assert.Equal("m1", read.Portfolio.PortfolioId);
        Assert.Equal(TargetModel.EfficientReturn, read.ComputedTargets.Model);
        Assert.Empty(read.ComputedTargets.Targets);
        Assert.Contains("out of reach", read.ComputedTargets.UnavailableReason);

        // Planning on it is a precondition the client can read, not a failure of the service.
        var preview = await Assert.ThrowsAsync<RpcException>(() => _client.PreviewRebalanceAsync(new PreviewRebalanceRequest { PortfolioId = "m1" }).ResponseAsync);
        Assert.Equal(StatusCode.FailedPrecondition, preview.StatusCode);
        Assert.Contains("out of reach", preview.Status.Detail);
    }
}
