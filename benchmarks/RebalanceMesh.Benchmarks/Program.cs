using BenchmarkDotNet.Running;
using RebalanceMesh.Benchmarks;

// `bs-throughput <inputs.bin> <outputs.bin>`: the side-by-side mode used by benchmarks/compare/black_scholes.py.
// Anything else goes to BenchmarkDotNet (e.g. `--filter '*'`).
if (args.Length == 3 && args[0] == "bs-throughput")
{
    return BlackScholesThroughput.Run(args[1], args[2]);
}

if (args.Length == 5 && args[0] == "risk-hist")
{
    return RiskThroughput.Historical(args[1], int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture), int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture), args[4]);
}

if (args.Length == 5 && args[0] == "risk-mc")
{
    return RiskThroughput.MonteCarlo(args[1], int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture), args[3], int.Parse(args[4], System.Globalization.CultureInfo.InvariantCulture));
}

if (args.Length == 4 && args[0] == "qp")
{
    return QpThroughput.Run(args[1], int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture), int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
}

if (args.Length == 2 && args[0] == "optimizer")
{
    return OptimizerThroughput.Run(args[1]);
}

BenchmarkSwitcher.FromAssembly(typeof(RiskBenchmarks).Assembly).Run(args);
return 0;
