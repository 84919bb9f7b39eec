using BenchmarkDotNet.Running;
using RebalanceMesh.Benchmarks;

// `bs-throughput <inputs.bin> <outputs.bin>`: the side-by-side mode used by benchmarks/compare/black_scholes.py.
// Anything else goes to BenchmarkDotNet (e.g. `--filter '*'`).
if (args.Length == 3 && args[0] == "bs-throughput")
{
    return BlackScholesThroughput.Run(args[1], args[2]);
}

BenchmarkSwitcher.FromAssembly(typeof(RiskBenchmarks).Assembly).Run(args);
return 0;
