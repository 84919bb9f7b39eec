#!/usr/bin/python3
"""Side by side, one core, same inputs, same run: portfolio VaR in RebalanceMesh (C#) and numpy.

  historical + parametric VaR (99 %): 500 assets × 2,000 days of returns
  Monte Carlo VaR (99 %): 10,000 scenarios × 500 assets from a given daily covariance

numpy runs single-threaded (OPENBLAS_NUM_THREADS=1, pinned to CPU 0 like the C# process) and in its best form: for
Monte Carlo both sides exploit linearity (P&L = zᵀ·LᵀV), and the naive numpy form (Z·Lᵀ then ·V) is timed too.
Run from the repository root with Debian's python3-numpy and libopenblas0-pthread:
  /usr/bin/python3 benchmarks/compare/risk_var.py
"""
import json
import os
import pathlib
import subprocess
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.sched_setaffinity(0, {0})
import numpy as np  # noqa: E402  (after the thread settings)

root = pathlib.Path(__file__).resolve().parents[2]
work = root / "benchmarks" / "compare" / ".work"
work.mkdir(parents=True, exist_ok=True)
days, assets, scenarios = 2000, 500, 10_000
rng = np.random.default_rng(5)

# A factor model gives realistic correlation: 5 factors plus idiosyncratic noise.
loadings = rng.normal(0, 0.006, (assets, 5))
returns = rng.normal(0, 1, (days, 5)) @ loadings.T + rng.normal(0, 0.01, (days, assets))
values = rng.uniform(1_000, 100_000, assets)
covariance = loadings @ loadings.T + np.eye(assets) * 1e-4
returns.astype("<f8").tofile(work / "risk_returns.bin")           # row-major: days × assets
values.astype("<f8").tofile(work / "risk_values.bin")
np.asfortranarray(covariance).T.astype("<f8").tofile(work / "risk_cov.bin")  # column-major


def best_of(fn, repeats=5):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t0)
    return best, out


def hist_param():
    pnl = np.expm1(returns) @ values
    hist = np.quantile(-pnl, 0.99)
    centred = returns - returns.mean(axis=0)
    sigma = np.sqrt(values @ (centred.T @ (centred @ values)) / (days - 1))
    return hist, 2.3263478740408408 * sigma


def mc_smart():
    chol = np.linalg.cholesky(covariance)
    z = np.random.default_rng(1).standard_normal((scenarios, assets))
    return np.quantile(-(z @ (chol.T @ values)), 0.99)


def mc_naive():
    chol = np.linalg.cholesky(covariance)
    z = np.random.default_rng(1).standard_normal((scenarios, assets))
    return np.quantile(-((z @ chol.T) @ values), 0.99)


np_hist_s, (np_hist, np_param) = best_of(hist_param)
np_mc_s, np_mc = best_of(mc_smart)
np_mc_naive_s, _ = best_of(mc_naive, 3)

dll = root / "benchmarks" / "RebalanceMesh.Benchmarks" / "bin" / "Release" / "net10.0" / "RebalanceMesh.Benchmarks.dll"
subprocess.run(["dotnet", "build", str(root / "benchmarks" / "RebalanceMesh.Benchmarks"), "-c", "Release", "--nologo", "-v", "quiet"], check=True, stdout=subprocess.DEVNULL)


# Pinned to one core, the JIT's call-counting delay keeps hot methods in unoptimised code far longer than the
# warm-up; with the delay at zero the process reaches the steady state a multi-core service reaches by itself.
CS_ENV = dict(os.environ, DOTNET_TC_CallCountingDelayMs="0")


def run(*args):
    out = subprocess.run(["taskset", "-c", "0", "dotnet", str(dll), *map(str, args)], check=True, capture_output=True, text=True, env=CS_ENV).stdout
    return json.loads(out.strip().splitlines()[-1])


cs_hist = run("risk-hist", work / "risk_returns.bin", days, assets, work / "risk_values.bin")
cs_mc = run("risk-mc", work / "risk_cov.bin", assets, work / "risk_values.bin", scenarios)

assert abs(cs_hist["historical_var"] - np_hist) < 1e-6 * np_hist, (cs_hist, np_hist)
assert abs(cs_hist["parametric_var"] - np_param) < 1e-9 * np_param, (cs_hist, np_param)
sigma = np_param / 2.3263478740408408
se = np.sqrt(0.99 * 0.01 / scenarios) / (np.exp(-0.5 * 2.3263478740408408 ** 2) / np.sqrt(2 * np.pi) / sigma)
assert abs(cs_mc["mc_var"] - np_param) < 4 * se and abs(np_mc - np_param) < 4 * se, (cs_mc, np_mc, np_param, se)

print(f"historical VaR {np_hist:,.0f}, parametric {np_param:,.0f}, Monte Carlo C# {cs_mc['mc_var']:,.0f} / numpy {np_mc:,.0f} (SE {se:,.0f})")
print(f"{'task':<48}{'C# ms':>10}{'numpy ms':>11}{'numpy / C#':>12}")
for task, c, n in [
    (f"historical + parametric VaR, {assets} × {days}", cs_hist["seconds"], np_hist_s),
    (f"Monte Carlo VaR, {scenarios:,} × {assets} (numpy LᵀV)", cs_mc["seconds"], np_mc_s),
    (f"Monte Carlo VaR, {scenarios:,} × {assets} (numpy Z·Lᵀ)", cs_mc["seconds"], np_mc_naive_s),
]:
    print(f"{task:<48}{c * 1e3:>10.1f}{n * 1e3:>11.1f}{n / c:>11.2f}x")
