using RebalanceMesh.Cli;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// `rmesh bench-book` at a smoke size, on its own mesh: after a warm-up run of 8 accounts on a model of their own, a
/// model change over 30 linked accounts and 4 instruments ends with every plan complete and their trades sent to the venues as far fewer block child orders than the plans' legs.
/// (How much crosses internally depends on which plans' sales and purchases meet in one block — every plan sells
/// first — so it is reported, not asserted; the crash test asserts crosses on a book that has them.)
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class BookBenchmarkTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_model_change_completes_every_plan_through_block_orders()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var log = new StringWriter();
        var result = await BookBenchmark.RunAsync(RebalanceMesh.Testing.RepoPaths.Root, portfolios: 30, instrumentCount: 4, blocks: true, BuildConfiguration.Name, log, cancel.Token, warmUp: 8);
        output.WriteLine(log.ToString());
        output.WriteLine(result.Describe());

        Assert.Equal(30, result.Plans); // the warm-up's plans and blocks are not the measured run's
        Assert.Contains("warm-up: 8 accounts", log.ToString());
        Assert.Equal(result.Plans, result.Completed);
        Assert.True(result.BlockCount > 0);
        Assert.True(result.ChildOrders < result.Legs / 3, $"{result.ChildOrders} child orders for {result.Legs} legs");
    }
}
