#!/usr/bin/python3
"""Side by side, one core, same problem: RebalanceMesh's QpSolver (C#, ADMM + polish) and cvxopt (interior point).

Problem: a 500-asset rebalance toward target weights — minimise (w − w*)ᵀΣ(w − w*) + κ‖w − w₀‖² (tracking error plus
a quadratic trading-cost proxy) subject to Σw = 1 and 0 ≤ w ≤ 5 %. Σ from a 5-factor model.
Run from the repository root (Debian python3-cvxopt, python3-numpy, libopenblas0-pthread):
  /usr/bin/python3 benchmarks/compare/qp_solver.py [n]
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
from cvxopt import matrix, solvers  # noqa: E402

root = pathlib.Path(__file__).resolve().parents[2]
work = root / "benchmarks" / "compare" / ".work"
work.mkdir(parents=True, exist_ok=True)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
rng = np.random.default_rng(11)
B = rng.normal(0, 0.1, (n, 5))
cov = B @ B.T + np.diag(rng.uniform(0.01, 0.05, n))
target = rng.dirichlet(np.ones(n)); target = np.minimum(target, 0.05); target /= target.sum()
w0 = rng.dirichlet(np.ones(n))
kappa = 0.01
P = 2 * (cov + kappa * np.eye(n)); q = -2 * (cov @ target + kappa * w0)
A = np.vstack([np.ones(n), np.eye(n)]); l = np.concatenate([[1.0], np.zeros(n)]); u = np.concatenate([[1.0], np.full(n, 0.05)])
np.concatenate([P.ravel(), q, A.ravel(), l, u]).astype("<f8").tofile(work / "qp.bin")

solvers.options.update({"show_progress": False, "abstol": 1e-10, "reltol": 1e-10, "feastol": 1e-10})
G = matrix(np.vstack([-np.eye(n), np.eye(n)])); h = matrix(np.concatenate([np.zeros(n), np.full(n, 0.05)]))
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    sol = solvers.qp(matrix(P), matrix(q), G, h, matrix(np.ones((1, n))), matrix([1.0]))
    best = min(best, time.perf_counter() - t0)
x = np.array(sol["x"]).ravel()
cvx_obj = 0.5 * x @ P @ x + q @ x

dll = root / "benchmarks" / "RebalanceMesh.Benchmarks" / "bin" / "Release" / "net10.0" / "RebalanceMesh.Benchmarks.dll"
subprocess.run(["dotnet", "build", str(root / "benchmarks" / "RebalanceMesh.Benchmarks"), "-c", "Release", "--nologo", "-v", "quiet"], check=True, stdout=subprocess.DEVNULL)
env = dict(os.environ, DOTNET_TC_CallCountingDelayMs="0")
cs = json.loads(subprocess.run(["taskset", "-c", "0", "dotnet", str(dll), "qp", str(work / "qp.bin"), str(n), str(n + 1)],
                               check=True, capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1])
rel = abs(cs["objective"] - cvx_obj) / max(1.0, abs(cvx_obj))
print(f"n = {n}: objective C# {cs['objective']:.12g}, cvxopt {cvx_obj:.12g}, relative difference {rel:.1e}; "
      f"C# {cs['iterations']} ADMM iterations, polished {cs['polished']}")
print(f"C# {cs['seconds'] * 1e3:.0f} ms, cvxopt {best * 1e3:.0f} ms, C# / cvxopt = {cs['seconds'] / best:.2f}")
