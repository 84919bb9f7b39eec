using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;

namespace RebalanceMesh.Planning.Tests;

/// <summary>
/// Models: a policy many portfolios follow, each with overrides of its own; a model change reaches every linked
/// portfolio's policy (in the call, or in a background round for what the call left); roles and bad input as elsewhere.
/// </summary>
public sealed class ModelTests : IClassFixture<RedisServer>, IAsyncLifetime
{
    private readonly RedisServer _redis;
    private readonly GrpcTestServer<Program> _server;

    public ModelTests(RedisServer redis)
    {
        _redis = redis;
        _server = new GrpcTestServer<Program>(redis, new Dictionary<string, string?>
        {
            ["Services:pricing:Grpc"] = "http://127.0.0.1:1",
            ["Services:risk:Grpc"] = "http://127.0.0.1:1",
        });
    }

    public Task InitializeAsync() => _redis.FlushAsync();

    public Task DisposeAsync() => _server.DisposeAsync().AsTask();

    private PlanningService.PlanningServiceClient Client(string role) => new(_server.CreateInvoker(TestAuth.Token(role, subject: "alice")));

    private static Model Model(string id, double a, double b) => new()
    {
        ModelId = id,
        Name = "Balanced " + id,
        Policy = new Policy
        {
            Targets = { new TargetWeight { InstrumentId = "DAX", Weight = a }, new TargetWeight { InstrumentId = "SMI", Weight = b } },
            AbsoluteBand = 0.05,
        },
    };

    private async Task PortfoliosAsync(params string[] ids)
    {
        foreach (var id in ids)
        {
            await Client(MeshAuth.Admin).UpsertPortfolioAsync(new UpsertPortfolioRequest
            {
                Portfolio = new Portfolio { PortfolioId = id, BaseCurrency = "EUR", Cash = 1_000m },
                ExpectedVersion = -1,
            });
        }
    }

    private async Task<Policy> PolicyOf(string portfolioId) =>
        (await Client(MeshAuth.Viewer).GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = portfolioId, SkipValuation = true })).Policy;

    private static (string, double)[] Targets(Policy policy) => [.. policy.Targets.Select(t => (t.InstrumentId, Math.Round(t.Weight, 12)))];

    [Fact]
    public async Task Linked_portfolios_follow_the_model_with_their_overrides_and_a_new_version_reaches_them()
    {
        await PortfoliosAsync("p1", "p2");
        var admin = Client(MeshAuth.Admin);
        var created = (await admin.CreateModelAsync(new CreateModelRequest { Model = Model("balanced", 0.6, 0.4) })).Model;
        Assert.Equal((1L, "alice"), (created.Version, created.UpdatedBy));

        // p1 follows it as it is; p2 keeps 20 % cash (0.6 × 0.8 = 0.48, 0.4 × 0.8 = 0.32), does not trade SMI, and is automatic.
        await admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p1", ModelId = "balanced" });
        var overrides = new ModelOverrides { CashTarget = 0.2, NoTradeInstruments = { "SMI" }, ExecutionMode = ExecutionMode.Auto };
        var linked = (await admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p2", ModelId = "balanced", Overrides = overrides })).Policy;
        Assert.Equal([("DAX", 0.48), ("SMI", 0.32)], Targets(linked));
        Assert.Equal(["SMI"], linked.NoTradeInstruments);
        Assert.Equal((ExecutionMode.Auto, 0.05), (linked.ExecutionMode, linked.AbsoluteBand));
        Assert.Equal(("balanced", 1L), (linked.ModelLink.ModelId, linked.ModelLink.ModelVersion));
        Assert.Equal([("DAX", 0.6), ("SMI", 0.4)], Targets(await PolicyOf("p1")));
        Assert.Equal(2, (await Client(MeshAuth.Viewer).GetModelAsync(new GetModelRequest { ModelId = "balanced" })).LinkedPortfolios);

        // A new version: both portfolios' policies follow it in the call (p2 with its overrides: 0.5 × 0.8 = 0.4).
        var before = (await PolicyOf("p2")).Version;
        var updated = await admin.UpdateModelAsync(new UpdateModelRequest { Model = Model("balanced", 0.5, 0.5), ExpectedVersion = 1 });
        Assert.Equal((2L, 2L, 0L), (updated.Model.Version, updated.PortfoliosUpdated, updated.PortfoliosPending));
        var p2 = await PolicyOf("p2");
        Assert.Equal([("DAX", 0.4), ("SMI", 0.4)], Targets(p2));
        Assert.Equal((2L, before + 1), (p2.ModelLink.ModelVersion, p2.Version));
        Assert.Equal([("DAX", 0.5), ("SMI", 0.5)], Targets(await PolicyOf("p1")));
        Assert.Empty(await _server.Services.GetRequiredService<ModelStore>().RolloutsAsync());

        // A change made from an old version is refused; so is the portfolio's own policy while it follows the model.
        await RpcAssert.StatusAsync(() => admin.UpdateModelAsync(new UpdateModelRequest { Model = Model("balanced", 0.7, 0.3), ExpectedVersion = 1 }).ResponseAsync, StatusCode.Aborted);
        var own = new Policy { PortfolioId = "p1", Targets = { new TargetWeight { InstrumentId = "DAX", Weight = 1 } }, AbsoluteBand = 0.1 };
        await RpcAssert.StatusAsync(() => admin.SetPolicyAsync(new SetPolicyRequest { Policy = own }).ResponseAsync, StatusCode.FailedPrecondition);

        // Unlinked, p1 keeps the policy it had, as its own, and may change it; the model no longer counts it.
        var unlinked = (await admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p1" })).Policy;
        Assert.Equal([("DAX", 0.5), ("SMI", 0.5)], Targets(unlinked));
        Assert.Null(unlinked.ModelLink);
        Assert.Equal([("DAX", 1.0)], Targets((await admin.SetPolicyAsync(new SetPolicyRequest { Policy = own })).Policy));
        Assert.Equal(1, (await Client(MeshAuth.Viewer).GetModelAsync(new GetModelRequest { ModelId = "balanced" })).LinkedPortfolios);
        var p1Version = (await PolicyOf("p1")).Version;
        await admin.UpdateModelAsync(new UpdateModelRequest { Model = Model("balanced", 0.3, 0.3), ExpectedVersion = 2 });
        Assert.Equal(p1Version, (await PolicyOf("p1")).Version);
        Assert.Equal([("DAX", 0.4), ("SMI", 0.4)], Targets(await PolicyOf("p2"))); // 0.3 and 0.3 scaled to sum to 1 − 0.2
    }

    [Fact]
    public async Task Models_are_listed_by_id_a_page_at_a_time_and_only_an_admin_changes_them()
    {
        var admin = Client(MeshAuth.Admin);
        foreach (var id in new[] { "m-c", "m-a", "m-b" })
        {
            await admin.CreateModelAsync(new CreateModelRequest { Model = Model(id, 0.5, 0.5) });
        }

        var viewer = Client(MeshAuth.Viewer);
        var first = await viewer.ListModelsAsync(new ListModelsRequest { PageSize = 2 });
        Assert.Equal(["m-a", "m-b"], first.Models.Select(m => m.ModelId));
        Assert.Equal("m-b", first.NextPageToken);
        var second = await viewer.ListModelsAsync(new ListModelsRequest { PageSize = 2, PageToken = first.NextPageToken });
        Assert.Equal(["m-c"], second.Models.Select(m => m.ModelId));
        Assert.Equal(string.Empty, second.NextPageToken);

        await RpcAssert.StatusAsync(() => admin.CreateModelAsync(new CreateModelRequest { Model = Model("m-a", 0.1, 0.1) }).ResponseAsync, StatusCode.Aborted);
        await RpcAssert.StatusAsync(() => viewer.CreateModelAsync(new CreateModelRequest { Model = Model("m-d", 0.5, 0.5) }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => Client(MeshAuth.Trader).UpdateModelAsync(new UpdateModelRequest { Model = Model("m-a", 0.5, 0.5), ExpectedVersion = 1 }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => viewer.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p1", ModelId = "m-a" }).ResponseAsync, StatusCode.PermissionDenied);
        await RpcAssert.StatusAsync(() => viewer.GetModelAsync(new GetModelRequest { ModelId = "m-none" }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact]
    public async Task Bad_models_and_overrides_are_refused_field_by_field()
    {
        var admin = Client(MeshAuth.Admin);
        var bad = Model("has space", 0.8, 0.8);
        var fields = await RpcAssert.InvalidArgumentAsync(() => admin.CreateModelAsync(new CreateModelRequest { Model = bad }).ResponseAsync, "model.model_id");
        Assert.Contains("model.policy.targets", fields);
        await RpcAssert.InvalidArgumentAsync(() => admin.CreateModelAsync(new CreateModelRequest { Model = new Model { ModelId = "m" } }).ResponseAsync, "model.policy");
        await RpcAssert.InvalidArgumentAsync(() => admin.UpdateModelAsync(new UpdateModelRequest { Model = Model("m", 0.5, 0.5) }).ResponseAsync, "expected_version");

        await PortfoliosAsync("p1");
        await admin.CreateModelAsync(new CreateModelRequest { Model = Model("m", 0.5, 0.5) });
        var overrideFields = await RpcAssert.InvalidArgumentAsync(() => admin.LinkPortfolioAsync(new LinkPortfolioRequest
        {
            PortfolioId = "p1",
            ModelId = "m",
            Overrides = new ModelOverrides { CashTarget = 1.0, NoTradeInstruments = { "bad id!" }, ExecutionMode = (ExecutionMode)99 },
        }).ResponseAsync, "overrides.cash_target");
        Assert.Contains("overrides.no_trade_instruments[0]", overrideFields);
        Assert.Contains("overrides.execution_mode", overrideFields);
        await RpcAssert.InvalidArgumentAsync(() => admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p1", Overrides = new ModelOverrides() }).ResponseAsync, "overrides");
        await RpcAssert.StatusAsync(() => admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p-none", ModelId = "m" }).ResponseAsync, StatusCode.NotFound);
        await RpcAssert.StatusAsync(() => admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p1", ModelId = "m-none" }).ResponseAsync, StatusCode.NotFound);
    }

    [Fact]
    public async Task A_rollout_the_call_did_not_finish_is_finished_by_a_background_round()
    {
        await PortfoliosAsync("p1", "p2", "p3");
        var admin = Client(MeshAuth.Admin);
        await admin.CreateModelAsync(new CreateModelRequest { Model = Model("m", 0.6, 0.4) });
        foreach (var id in new[] { "p1", "p2", "p3" })
        {
            await admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = id, ModelId = "m" });
        }

        // Version 2 stored and marked, as a replica that stopped before rolling it out leaves it.
        var models = _server.Services.GetRequiredService<ModelStore>();
        await models.UpdateAsync(Model("m", 0.2, 0.8), expectedVersion: 1, caller: "alice");
        Assert.Equal(["m"], await models.RolloutsAsync());
        Assert.Equal([("DAX", 0.6), ("SMI", 0.4)], Targets(await PolicyOf("p3")));

        // p3's stored policy is corrupt: the round leaves it out (and off the model's list) instead of failing the rest.
        await _redis.Connection!.GetDatabase().StringSetAsync("pln:policy:p3", new byte[] { 0xFF, 0x07, 0x01 });
        await _server.Services.GetRequiredService<ModelRollout>().RoundAsync(CancellationToken.None);
        Assert.Equal(2, await models.LinkedCountAsync("m"));

        // Linking it again repairs it.
        await admin.LinkPortfolioAsync(new LinkPortfolioRequest { PortfolioId = "p3", ModelId = "m" });
        foreach (var id in new[] { "p1", "p2", "p3" })
        {
            var policy = await PolicyOf(id);
            Assert.Equal([("DAX", 0.2), ("SMI", 0.8)], Targets(policy));
            Assert.Equal(2L, policy.ModelLink.ModelVersion);
        }

        Assert.Empty(await models.RolloutsAsync());
    }
}
