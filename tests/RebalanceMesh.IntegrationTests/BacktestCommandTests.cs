using System.Xml.Linq;
using RebalanceMesh.Cli;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.IntegrationTests;

public class BacktestCommandTests
{
    [Fact]
    public void The_chart_is_well_formed_SVG_with_a_line_and_a_legend_entry_per_strategy()
    {
        var policy = new TargetPolicy(new Dictionary<string, double> { ["A"] = 0.5, ["B"] = 0.5 }, 0.05, 0, 0, RebalanceTarget.Target, 0m, new Dictionary<string, decimal>(), 0);
        double[][] closes = [[100, 100], [110, 95], [120, 90], [100, 100]];
        var results = Backtester.Run(["A", "B"], closes, 10_000m,
            [new BacktestStrategy("hold", BacktestTrigger.Never, policy), new BacktestStrategy("bands <5%> & co", BacktestTrigger.Bands, policy)]);
        var svg = XDocument.Parse(BacktestCommand.Chart(results, "title & <escaped>"));
        XNamespace ns = "http://www.w3.org/2000/svg";
        var lines = svg.Descendants(ns + "polyline").ToArray();
        Assert.Equal(2, lines.Length);
        Assert.All(lines, l => Assert.Equal(4, l.Attribute("points")!.Value.Split(' ').Length));
        Assert.Contains(svg.Descendants(ns + "text"), t => t.Value == "bands <5%> & co");
        Assert.Contains(svg.Descendants(ns + "text"), t => t.Value == "title & <escaped>");
    }
}
