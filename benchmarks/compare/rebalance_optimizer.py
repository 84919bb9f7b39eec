#!/usr/bin/python3
"""Side by side, one core, same problem: RebalanceMesh's RebalanceOptimizer (C#, ADMM with closed-form cost proxes)
and cvxopt (interior point, solvers.cp on the smooth split formulation of tests/reference/optimizer_reference.py).

Problem: a 500-asset cost-aware rebalance — tracking error to target weights under a 10-factor covariance, fees +
half-spread (5–20 bp) and market impact c·|t|^1.5 per asset, long-only within [0, 1 %·3], 5 % cash to spend, and a
turnover cap that binds. Run from the repository root (Debian python3-cvxopt, python3-numpy, libopenblas0-pthread):
  /usr/bin/python3 benchmarks/compare/rebalance_optimizer.py [n] [seed]
"""
import json
import os
import pathlib
import subprocess
import sys
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.sched_setaffinity(0, {0})
import numpy as np  # noqa: E402

root = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(root / "tests" / "reference"))
from optimizer_reference import assets_for, factor_covariance, solve  # noqa: E402
from cvxopt import solvers  # noqa: E402

# cvxopt at its usual accuracy (its defaults are 1e-7): enough for the 1e-6 relative objective comparison.
solvers.options.update({"abstol": 1e-8, "reltol": 1e-8, "feastol": 1e-8})

work = root / "benchmarks" / "compare" / ".work"
work.mkdir(parents=True, exist_ok=True)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 23)
w0 = rng.dirichlet(np.ones(n)) * 0.95
target = np.full(n, 0.95 / n)
case = {"name": f"bench-{n}", "covariance": factor_covariance(rng, n, factors=10).tolist(), "cash_weight": 0.05,
        "min_cash_weight": 0.0, "objective": "tracking_error", "risk_aversion": 1.0, "turnover_cap": 0.05,
        "assets": assets_for(rng, n, w0, target, np.zeros(n), np.full(n, 3.0 / n))}
# Impact in weight units grows with the portfolio's size relative to volume; scale so it matters for small trades.
for a in case["assets"]:
    a["impact"] *= 0.2
(work / "optimizer.json").write_text(json.dumps(case))

best = float("inf")
for _ in range(2):
    t0 = time.perf_counter()
    trades, cvx_obj = solve(case)
    best = min(best, time.perf_counter() - t0)

dll = root / "benchmarks" / "RebalanceMesh.Benchmarks" / "bin" / "Release" / "net10.0" / "RebalanceMesh.Benchmarks.dll"
subprocess.run(["dotnet", "build", str(root / "benchmarks" / "RebalanceMesh.Benchmarks"), "-c", "Release", "--nologo", "-v", "quiet"], check=True, stdout=subprocess.DEVNULL)
env = dict(os.environ, DOTNET_TC_CallCountingDelayMs="0")
cs = json.loads(subprocess.run(["taskset", "-c", "0", "dotnet", str(dll), "optimizer", str(work / "optimizer.json")],
                               check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
rel = abs(cs["objective"] - cvx_obj) / abs(cvx_obj)
print(f"n = {n}: objective C# {cs['objective']:.12g}, cvxopt {cvx_obj:.12g}, relative difference {rel:.1e}; "
      f"C# {cs['iterations']} iterations cold, {cs['warm_iterations']} warm; turnover used {np.abs(trades).sum():.4f}")
print(f"C# {cs['seconds'] * 1e3:.0f} ms (warm start {cs['warm_seconds'] * 1e3:.0f} ms), cvxopt {best * 1e3:.0f} ms, "
      f"C# / cvxopt = {cs['seconds'] / best:.3f}")
