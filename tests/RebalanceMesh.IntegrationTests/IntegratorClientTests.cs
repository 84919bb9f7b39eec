using System.Diagnostics;
using System.Text.Json;
using RebalanceMesh.Cli;
using RebalanceMesh.Contracts.Planning.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;
using Xunit.Abstractions;

namespace RebalanceMesh.IntegrationTests;

/// <summary>
/// The example clients of examples/ (Python with grpcio, Node with @grpc/grpc-js), loading the contracts from
/// `rmesh protos`' descriptor set, run against a real mesh with a viewer token: planning's GetPortfolio, an
/// INVALID_ARGUMENT decoded from google.rpc.BadRequest, pricing's quotes and risk's VaR — the same answers the .NET
/// client gets.
/// </summary>
[Trait("Category", "Integration")]
[Collection(MeshProcesses.Name)]
public sealed class IntegratorClientTests(ITestOutputHelper output) : MeshTest(output)
{
    [Theory]
    [InlineData("python")]
    [InlineData("node")]
    public async Task An_example_client_reads_planning_pricing_and_risk_with_a_viewer_token_and_decodes_field_violations(string language)
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var demo = await new DemoRunner(Mesh, Path.Combine(StateDir, "spans"), new StringWriter()).RunAsync("integrator", cancel.Token);
        Assert.Equal(PlanStatus.Completed, demo.Plan.Status);
        var bundle = Path.Combine(StateDir, "bundle");
        var written = ProtoBundle.Write(RepoPaths.Root, bundle);
        Assert.Contains(Path.Combine("proto", "google", "rpc", "error_details.proto"), written);
        Assert.Contains(Path.Combine("proto", "rebalance", "planning", "v1", "planning_service.proto"), written);

        string Address(string service) => new Uri(Mesh.Service(service).GrpcUrl).Authority;
        var (program, script) = language == "python"
            ? ("/usr/bin/python3", Path.Combine(RepoPaths.Root, "examples", "python", "client.py"))
            : ("node", Path.Combine(RepoPaths.Root, "examples", "node", "client.js"));
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[]
        {
            script, "--bundle", Path.Combine(bundle, ProtoBundle.DescriptorSetName), "--planning", Address("planning"), "--pricing", Address("pricing"),
            "--risk", Address("risk"), "--token", Mesh.Credentials!.Token(MeshAuth.Viewer, "example-client"), "--portfolio", "integrator",
        })
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["NODE_PATH"] = Path.Combine(RepoPaths.Root, ".tools", "npm", "node_modules");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(cancel.Token);
        var stderr = process.StandardError.ReadToEndAsync(cancel.Token);
        await process.WaitForExitAsync(cancel.Token);
        Output.WriteLine(await stdout);
        Output.WriteLine(await stderr);
        Assert.Equal(0, process.ExitCode);

        var result = JsonDocument.Parse(await stdout).RootElement;
        var planning = PlanningClient();
        var stored = await planning.GetPortfolioAsync(new GetPortfolioRequest { PortfolioId = "integrator" });
        Assert.Equal("integrator", result.GetProperty("portfolio").GetProperty("id").GetString());
        Assert.Equal(stored.Portfolio.Version, result.GetProperty("portfolio").GetProperty("version").GetInt64());
        var netValue = decimal.Parse(result.GetProperty("portfolio").GetProperty("net_value").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(netValue / stored.Valuation.NetValue.ToDecimal(), 0.95m, 1.05m); // the feed moves between the two reads

        var refused = result.GetProperty("refused");
        Assert.Equal("INVALID_ARGUMENT", refused.GetProperty("code").GetString());
        Assert.Contains("portfolio_id", refused.GetProperty("violations").EnumerateArray().Select(v => v.GetProperty("field").GetString()));

        using var pricingChannel = ServiceChannel("pricing");
        var quotes = await new PricingService.PricingServiceClient(pricingChannel.WithDefaultDeadline()).GetQuotesAsync(new GetQuotesRequest { InstrumentIds = { "DAX" } });
        var mid = decimal.Parse(result.GetProperty("quote").GetProperty("DAX").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(mid / quotes.Prices.Single().Mid.ToDecimal(), 0.95m, 1.05m);

        var risk = result.GetProperty("risk");
        Assert.True(risk.GetProperty("estimates").GetInt32() > 0, "VaR and CVaR estimates");
        Assert.InRange(risk.GetProperty("net_value").GetDouble() / (double)netValue, 0.95, 1.05);
    }
}
