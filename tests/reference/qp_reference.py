#!/usr/bin/python3
"""Reference solutions of convex QPs from cvxopt (Debian python3-cvxopt) for RebalanceMesh.Planning.Tests.

Run:  /usr/bin/python3 tests/reference/qp_reference.py > tests/RebalanceMesh.Planning.Tests/Reference/qp_cases.json

Each case: minimise ½xᵀPx + qᵀx subject to l ≤ Ax ≤ u (the form of RebalanceMesh's QpSolver), handed to cvxopt as
G x ≤ h (finite bounds) and A_eq x = b (rows with l = u), with tight tolerances.
"""
import json
import pathlib
import numpy as np
from cvxopt import matrix, solvers

solvers.options.update({"show_progress": False, "abstol": 1e-12, "reltol": 1e-12, "feastol": 1e-12, "maxiters": 200})
root = pathlib.Path(__file__).resolve().parents[2]


def solve(P, q, A, l, u):
    eq = [i for i in range(len(l)) if l[i] == u[i]]
    G, h = [], []
    for i in range(len(l)):
        if i in eq:
            continue
        if np.isfinite(u[i]):
            G.append(A[i]); h.append(u[i])
        if np.isfinite(l[i]):
            G.append(-A[i]); h.append(-l[i])
    args = [matrix(P), matrix(q)]
    args += [matrix(np.array(G)), matrix(np.array(h))] if G else [None, None]
    if eq:
        args += [matrix(A[eq]), matrix(np.array([l[i] for i in eq]))]
    sol = solvers.qp(*args)
    x = np.array(sol["x"]).ravel()
    return x, 0.5 * x @ P @ x + q @ x


cases = []

# 1. Long-only minimum variance, fully invested, on the four indices (annualised sample covariance, last 250 days).
data = np.genfromtxt(root / "data" / "eustockmarkets.csv", delimiter=",", names=True)
prices = np.column_stack([data["DAX"], data["SMI"], data["CAC"], data["FTSE"]])[-251:]
cov = np.cov(np.diff(np.log(prices), axis=0), rowvar=False) * 252
P = 2 * cov; q = np.zeros(4)
A = np.vstack([np.ones(4), np.eye(4)]); l = np.array([1.0, 0, 0, 0, 0]); u = np.array([1.0] + [np.inf] * 4)
cases.append(("min-variance-long-only", P, q, A, l, u))

# 2. A random strongly convex QP with boxes, an equality and a general inequality (seeded).
rng = np.random.default_rng(3)
n = 30
M = rng.normal(size=(n, n)); P = M.T @ M + 0.1 * np.eye(n); q = rng.normal(size=n)
A = np.vstack([np.eye(n), np.ones(n), rng.normal(size=n)])
l = np.concatenate([-np.ones(n), [0.5], [-np.inf]]); u = np.concatenate([np.ones(n), [0.5], [0.3]])
cases.append(("random-30", P, q, A, l, u))

# 3. Mean-variance with a tracking term: long/short within ±0.5, budget 1, risk aversion 3.
mu = np.array([0.06, 0.04, 0.05, 0.03])
P = 3 * cov; q = -mu
A = np.vstack([np.ones(4), np.eye(4)]); l = np.array([1.0] + [-0.5] * 4); u = np.array([1.0] + [0.5] * 4)
cases.append(("mean-variance", P, q, A, l, u))

out = []
for name, P, q, A, l, u in cases:
    x, obj = solve(P, q, A, l, u)
    fin = lambda v: [float(t) if np.isfinite(t) else ("inf" if t > 0 else "-inf") for t in v]
    out.append({"name": name, "P": P.tolist(), "q": q.tolist(), "A": A.tolist(), "l": fin(l), "u": fin(u),
                "x": x.tolist(), "objective": float(obj)})
print(json.dumps(out))
