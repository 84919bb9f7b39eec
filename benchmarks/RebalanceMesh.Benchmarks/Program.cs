using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(RebalanceMesh.Benchmarks.RiskBenchmarks).Assembly).Run(args);
