#!/usr/bin/python3
"""Reference solutions of cost-aware rebalancing problems from cvxopt (Debian python3-cvxopt), for
RebalanceMesh.Planning.Tests (RebalanceOptimizerTests).

Run:  /usr/bin/python3 tests/reference/optimizer_reference.py > tests/RebalanceMesh.Planning.Tests/Reference/optimizer_cases.json

Problem (the form of RebalanceMesh's RebalanceOptimizer), trades t in weights of net value, w = w0 + t:
  minimise  risk(w) + sum_i k_i |t_i| + sum_i c_i |t_i|^1.5
     risk = gamma (w - w*)' S (w - w*)          (tracking error)   or   gamma w' S w - mu' w   (mean-variance)
  subject to lower <= w <= upper, sum_i cash_i t_i <= cash - min_cash, sum |t| <= turnover cap,
             sum |w| + fixed_gross <= leverage cap, and per underlying: target - tol <= fixed + sum delta_i w_i <= target + tol.
cvxopt has no power cone, so it gets the smooth split t = u - v with u, v >= 0 and solves the nonlinear convex program
with solvers.cp (|t|^1.5 = u^1.5 + v^1.5 at the optimum); a gross-leverage cap adds g >= |w|.
"""
import json
import pathlib
import numpy as np
from cvxopt import matrix, solvers, sparse

solvers.options.update({"show_progress": False, "abstol": 1e-11, "reltol": 1e-11, "feastol": 1e-11, "maxiters": 300})
root = pathlib.Path(__file__).resolve().parents[2]


def solve(case, scale=1000.0):
    """cvxopt's solution of one case. The objective is handed over multiplied by `scale`: rebalancing objectives are
    small numbers (1e-4 of net value), and on large cases cp's steps stall unless the objective is of order one."""
    a = case["assets"]
    n = len(a)
    S = np.array(case["covariance"])
    w0 = np.array([x["weight"] for x in a]); wt = np.array([x["target"] for x in a])
    k = np.array([x["linear_cost"] for x in a]); c = np.array([x["impact"] for x in a])
    mu = np.array([x.get("expected_return", 0.0) for x in a])
    gamma = case["risk_aversion"]; te = case["objective"] == "tracking_error"
    lev = case.get("max_gross_leverage")
    long_short = lev is not None and any(x["lower"] < 0 for x in a)
    nv = 3 * n if long_short else 2 * n

    def risk_grad(w):
        if te:
            return gamma * (w - wt) @ S @ (w - wt), 2 * gamma * S @ (w - wt)
        return gamma * w @ S @ w - mu @ w, 2 * gamma * S @ w - mu

    def F(x=None, z=None):
        if x is None:
            x0 = np.full(nv, 1e-3)
            if long_short:
                x0[2 * n:] = np.abs(w0) + 0.01
            return 0, matrix(x0)
        x = np.array(x).ravel()
        # |u|^1.5 extends u^1.5 convexly to all of R (cp's infeasible-start iterates may leave u >= 0 for a while);
        # the constraints u, v >= 0 hold at the solution, where it is the same function.
        u, v = x[:n], x[n:2 * n]
        w = w0 + u - v
        r, gw = risk_grad(w)
        f = r + k @ (u + v) + c @ (np.abs(u) ** 1.5 + np.abs(v) ** 1.5)
        grad = np.zeros(nv)
        grad[:n] = gw + k + 1.5 * c * np.sign(u) * np.sqrt(np.abs(u))
        grad[n:2 * n] = -gw + k + 1.5 * c * np.sign(v) * np.sqrt(np.abs(v))
        f, grad = scale * f, scale * grad
        if z is None:
            return f, matrix(grad.reshape(1, -1))
        H = np.zeros((nv, nv))
        Q = 2 * gamma * S
        H[:n, :n] = Q + np.diag(0.75 * c / np.sqrt(np.maximum(np.abs(u), 1e-300)))
        H[n:2 * n, n:2 * n] = Q + np.diag(0.75 * c / np.sqrt(np.maximum(np.abs(v), 1e-300)))
        H[:n, n:2 * n] = -Q
        H[n:2 * n, :n] = -Q
        return f, matrix(grad.reshape(1, -1)), matrix(scale * z[0] * H)

    G, h = [], []

    def row(du, dv, dg=None):
        r = np.zeros(nv); r[:n] = du; r[n:2 * n] = dv
        if dg is not None:
            r[2 * n:] = dg
        return r

    I = np.eye(n)
    for i in range(n):
        G.append(row(-I[i], 0 * I[i])); h.append(0.0)
        G.append(row(0 * I[i], -I[i])); h.append(0.0)
        G.append(row(I[i], -I[i])); h.append(a[i]["upper"] - w0[i])
        G.append(row(-I[i], I[i])); h.append(w0[i] - a[i]["lower"])
    cash = np.array([x["cash_per_unit"] for x in a])
    G.append(row(cash, -cash)); h.append(case["cash_weight"] - case["min_cash_weight"])
    if case.get("turnover_cap") is not None:
        G.append(row(np.ones(n), np.ones(n))); h.append(case["turnover_cap"])
    if lev is not None:
        room = lev - case.get("fixed_gross", 0.0)
        if long_short:
            for i in range(n):
                G.append(row(I[i], -I[i], -I[i])); h.append(-w0[i])
                G.append(row(-I[i], I[i], -I[i])); h.append(w0[i])
            G.append(row(0 * w0, 0 * w0, np.ones(n))); h.append(room)
        else:
            G.append(row(np.ones(n), -np.ones(n))); h.append(room - w0.sum())
    for d in case.get("delta_targets", []):
        dr = np.array([x.get("delta_per_unit", 1.0) if x.get("underlying") == d["underlying"] else 0.0 for x in a])
        now = d["fixed_delta"] + dr @ w0
        G.append(row(dr, -dr)); h.append(d["target"] + d["tolerance"] - now)
        G.append(row(-dr, dr)); h.append(now - d["target"] + d["tolerance"])
    sol = solvers.cp(F, G=sparse(matrix(np.array(G))), h=matrix(np.array(h)))  # G is mostly zeros: sparse is cvxopt at its best
    assert sol["status"] == "optimal" or (sol["status"] == "unknown" and sol["relative gap"] is not None and sol["relative gap"] < 1e-9 and sol["primal infeasibility"] < 1e-9), (case["name"], sol["status"], sol["relative gap"], sol["primal infeasibility"], sol["dual infeasibility"])
    x = np.array(sol["x"]).ravel()
    t = x[:n] - x[n:2 * n]
    w = w0 + t
    r, _ = risk_grad(w)
    objective = r + k @ np.abs(t) + c @ np.abs(t) ** 1.5
    return t, objective


def factor_covariance(rng, n, factors=3):
    B = rng.normal(0, 0.12, (n, factors))
    return B @ B.T + np.diag(rng.uniform(0.01, 0.04, n))


def assets_for(rng, n, w0, target, lower, upper, cash=None, underlyings=None, mu=None):
    out = []
    for i in range(n):
        x = {"id": f"A{i}", "weight": float(w0[i]), "target": float(target[i]),
             "cash_per_unit": 1.0 if cash is None else float(cash[i]),
             "linear_cost": float(rng.uniform(0.0005, 0.002)), "impact": float(rng.uniform(0.001, 0.02)),
             "lower": float(lower[i]), "upper": float(upper[i])}
        if underlyings is not None:
            x["underlying"] = underlyings[i]
        if mu is not None:
            x["expected_return"] = float(mu[i])
        out.append(x)
    return out


def main():
    cases = []
    rng = np.random.default_rng(17)

    # 1. Tracking error with fees, half-spread and impact, long-only within [0, 30 %], 5 % cash to spend.
    n = 8
    w0 = rng.dirichlet(np.ones(n)) * 0.95
    target = np.full(n, 0.95 / n)
    base = {"covariance": factor_covariance(rng, n).tolist(), "cash_weight": 0.05, "min_cash_weight": 0.0,
            "objective": "tracking_error", "risk_aversion": 1.0}
    assets = assets_for(rng, n, w0, target, np.zeros(n), np.full(n, 0.3))
    cases.append(dict(base, name="te-costs", assets=assets))

    # 2. The same with a binding turnover cap of 10 %.
    cases.append(dict(base, name="te-turnover-cap", assets=assets, turnover_cap=0.10))

    # 3. Mean-variance, long/short within [-30 %, 40 %], gross leverage at most 1.3 (0.1 of it held outside).
    mu = rng.uniform(0.0, 0.12, n)
    w1 = rng.uniform(-0.1, 0.25, n)
    assets3 = assets_for(rng, n, w1, np.zeros(n), np.full(n, -0.3), np.full(n, 0.4), mu=mu)
    cases.append(dict(base, name="mv-long-short-leverage", assets=assets3, objective="mean_variance", risk_aversion=3.0,
                      cash_weight=float(1 - w1.sum()), max_gross_leverage=1.3, fixed_gross=0.1))

    # 4. Delta-neutral per underlying: two spot baskets and their perpetuals (no cash per unit), an options overlay's
    #    fixed delta, tolerance 2 %; tracking error to a target that is not itself neutral.
    n4 = 6
    und = ["X", "X", "Y", "Y", "X", "Y"]
    cash4 = np.array([1, 1, 1, 1, 0, 0.0])
    w4 = np.array([0.30, 0.20, 0.25, 0.15, -0.20, -0.10])
    t4 = np.array([0.25, 0.25, 0.20, 0.20, 0.0, 0.0])
    S4 = factor_covariance(rng, 4)
    S4 = np.block([[S4, S4[:, [0, 2]]], [S4[[0, 2], :], S4[np.ix_([0, 2], [0, 2])]]])  # perps track assets 0 and 2
    assets4 = assets_for(rng, n4, w4, t4, np.array([0, 0, 0, 0, -1, -1.0]), np.array([1, 1, 1, 1, 0, 0.0]), cash=cash4, underlyings=und)
    cases.append({"name": "delta-neutral", "assets": assets4, "covariance": (S4 + 1e-4 * np.eye(n4)).tolist(), "cash_weight": 0.10,
                  "min_cash_weight": 0.02, "objective": "tracking_error", "risk_aversion": 2.0,
                  "delta_targets": [{"underlying": "X", "fixed_delta": -0.05, "tolerance": 0.02, "target": 0.0},
                                    {"underlying": "Y", "fixed_delta": 0.03, "tolerance": 0.02, "target": 0.0}]})

    # 5. Sixty assets, a binding turnover cap of 6 % and a delta band on a basket 1.5 % above where it is: many kinks, bounds and a budget
    #    at once (the face the polish has to find).
    n5 = 60
    w5 = rng.dirichlet(np.ones(n5)) * 0.97
    basket = ["B" if i % 3 == 0 else "C" for i in range(n5)]
    assets5 = assets_for(rng, n5, w5, np.full(n5, 0.97 / n5), np.zeros(n5), np.full(n5, max(0.06, w5.max())), underlyings=basket)
    basket_now = float(sum(w for w, b in zip(w5, basket) if b == "B"))
    cases.append({"name": "te-60-turnover-delta", "assets": assets5, "covariance": factor_covariance(rng, n5, factors=4).tolist(),
                  "cash_weight": 0.03, "min_cash_weight": 0.01, "objective": "tracking_error", "risk_aversion": 1.0,
                  "turnover_cap": 0.06,
                  "delta_targets": [{"underlying": "B", "fixed_delta": 0.0, "tolerance": 0.005, "target": basket_now + 0.015}]})

    out = []
    for case in cases:
        t, objective = solve(case)
        out.append(dict(case, trades=t.tolist(), expected_objective=float(objective)))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
