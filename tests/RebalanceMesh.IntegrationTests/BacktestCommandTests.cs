using System.Xml.Linq;
using RebalanceMesh.Cli;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.IntegrationTests;

public class BacktestCommandTests
{
    [Fact]
    public async Task The_chart_is_well_formed_SVG_with_value_lines_per_strategy_and_weight_lines_per_instrument()
    {
        var policy = TargetPolicy.Of(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.5 }, TradeRules.Default, new DriftBands(0.05));
        double[][] closes = [[100, 100], [110, 95], [120, 90], [100, 100]];
        var results = await Backtester.RunAsync(["A", "B"], closes, 10_000m,
            [new BacktestStrategy("hold", BacktestTrigger.Never, policy), new BacktestStrategy("bands <5%> & co", BacktestTrigger.Bands, policy)]);
        var svg = XDocument.Parse(BacktestCommand.Chart(results, ["A", "B"], "title & <escaped>"));
        XNamespace ns = "http://www.w3.org/2000/svg";
        var lines = svg.Descendants(ns + "polyline").ToArray();
        Assert.Equal(2 + 2, lines.Length); // a value line per strategy, a weight line per instrument
        Assert.All(lines, l => Assert.Equal(4, l.Attribute("points")!.Value.Split(' ').Length));
        Assert.Contains(svg.Descendants(ns + "text"), t => t.Value == "bands <5%> & co");
        Assert.Contains(svg.Descendants(ns + "text"), t => t.Value == "title & <escaped>");
    }
}
