using BenchmarkDotNet.Attributes;
using RebalanceMesh.Planning.Core;
using RebalanceMesh.Risk.Core;

namespace RebalanceMesh.Benchmarks;

/// <summary>Risk of an n-asset linear portfolio over 500 days of seeded random returns.</summary>
[MemoryDiagnoser]
public class RiskBenchmarks
{
    private ReturnMatrix _returns = null!;
    private double[] _values = null!;

    [Params(10, 100, 500)]
    public int Assets { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        var data = new double[500, Assets];
        for (var t = 0; t < 500; t++)
        {
            var market = (random.NextDouble() - 0.5) * 0.02;
            for (var j = 0; j < Assets; j++)
            {
                data[t, j] = market + ((random.NextDouble() - 0.5) * 0.02);
            }
        }

        _returns = new ReturnMatrix(Enumerable.Range(0, Assets).Select(i => "A" + i).ToArray(), data);
        _values = Enumerable.Range(0, Assets).Select(_ => 10_000.0).ToArray();
    }

    [Benchmark]
    public RiskReport Assess() => PortfolioRiskModel.Assess(_values, 1_000, _returns, RiskSettings.Default);
}

/// <summary>Drift evaluation and trade proposal for an n-asset portfolio.</summary>
[MemoryDiagnoser]
public class PlannerBenchmarks
{
    private MarkedPortfolio _marked = null!;
    private TargetPolicy _policy = null!;

    [Params(10, 500)]
    public int Assets { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var ids = Enumerable.Range(0, Assets).Select(i => "A" + i).ToArray();
        var prices = ids.ToDictionary(i => i, _ => 100m);
        var holdings = ids.Select((id, i) => new Holding(id, 10 + (i % 7))).ToArray();
        _policy = TargetPolicy.Of(ids.ToDictionary(i => i, _ => 1.0 / Assets), TradeRules.Default with { MinTradeNotional = 10m, EstimatedCostBps = 5 }, new DriftBands(0.001, 0.1));
        _marked = PortfolioMarking.Mark(new PortfolioSnapshot("p", holdings, 1_000m, 1), _policy, prices);
    }

    [Benchmark]
    public RebalanceProposal Propose() => RebalancePlanner.Propose(_marked, _policy, force: false);
}

/// <summary>Routing decision time of a 100-leg plan over the three simulated venues (issue 7): every leg split by walking their books.</summary>
[MemoryDiagnoser]
public class RoutingBenchmarks
{
    private readonly RebalanceMesh.Execution.Core.VenueSpec[] _venues = [.. RebalanceMesh.Execution.Core.SimulatedVenues.Defaults];
    private RebalanceMesh.Execution.Core.LegOrder[] _legs = null!;
    private RebalanceMesh.Execution.Core.VenueQuote[][] _quotes = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(7);
        _legs = Enumerable.Range(0, 100).Select(i => new RebalanceMesh.Execution.Core.LegOrder("plan", "L" + i, "I" + i,
            i % 2 == 0 ? RebalanceMesh.Execution.Core.OrderSide.Buy : RebalanceMesh.Execution.Core.OrderSide.Sell, random.Next(1, 50_000))).ToArray();
        _quotes = Enumerable.Range(0, 100).Select(_ =>
        {
            var mid = (decimal)(random.NextDouble() * 1_000) + 1;
            return _venues.Select((v, k) => new RebalanceMesh.Execution.Core.VenueQuote(v.VenueId, mid * (1 - (0.0002m * (k + 1))), mid * (1 + (0.0002m * (k + 1))), 1_000 * (k + 1), 1_000 * (k + 1))).ToArray();
        }).ToArray();
    }

    [Benchmark]
    public int RouteHundredLegs()
    {
        var children = 0;
        for (var i = 0; i < _legs.Length; i++)
        {
            children += RebalanceMesh.Execution.Core.SmartOrderRouter.Route(_legs[i], _venues, _quotes[i]).Count;
        }

        return children;
    }
}
