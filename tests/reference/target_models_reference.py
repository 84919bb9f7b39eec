#!/usr/bin/python3
"""Reference weights of the return-aware target models, from cvxopt (Debian python3-cvxopt), for
RebalanceMesh.Planning.Tests (TargetModelTests).

Run:  /usr/bin/python3 tests/reference/target_models_reference.py

Data: the annualised sample covariance (×252) of the last 250 daily log returns of DAX, SMI, CAC, FTSE
(data/eustockmarkets.csv); expected returns mu = [0.08, 0.05, 0.07, 0.04]; long-only, fully invested.
  max Sharpe (rf 0.01):       min y'Sy  s.t. (mu - rf)'y = 1, y >= 0;  w = y / sum(y)
  mean-variance (gamma 4):    min gamma/2 w'Sw - mu'w  s.t. sum(w) = 1, w >= 0
  efficient return (6.5 %):   min w'Sw  s.t. mu'w = 0.065, sum(w) = 1, w >= 0
  efficient risk (18 %):      max mu'w  s.t. ||L'w|| <= 0.18 (S = LL'), sum(w) = 1, w >= 0   (second-order cone)
"""
import pathlib
import numpy as np
from cvxopt import matrix, solvers

solvers.options.update({"show_progress": False, "abstol": 1e-12, "reltol": 1e-12, "feastol": 1e-12, "maxiters": 200})
root = pathlib.Path(__file__).resolve().parents[2]
data = np.genfromtxt(root / "data" / "eustockmarkets.csv", delimiter=",", names=True)
prices = np.column_stack([data["DAX"], data["SMI"], data["CAC"], data["FTSE"]])[-251:]
S = np.cov(np.diff(np.log(prices), axis=0), rowvar=False) * 252
mu = np.array([0.08, 0.05, 0.07, 0.04])
n = 4
G = matrix(-np.eye(n)); h = matrix(np.zeros(n))
ones = matrix(np.ones((1, n)))

y = np.array(solvers.qp(matrix(2 * S), matrix(np.zeros(n)), G, h, matrix((mu - 0.01).reshape(1, -1)), matrix([1.0]))["x"]).ravel()
print(f"max_sharpe      = {(y / y.sum()).tolist()!r}")

w = np.array(solvers.qp(matrix(4 * S), matrix(-mu), G, h, ones, matrix([1.0]))["x"]).ravel()
print(f"mean_variance   = {w.tolist()!r}")

w = np.array(solvers.qp(matrix(2 * S), matrix(np.zeros(n)), G, h, matrix(np.vstack([np.ones(n), mu])), matrix([1.0, 0.065]))["x"]).ravel()
print(f"efficient_return = {w.tolist()!r}")

L = np.linalg.cholesky(S)
Gq = [matrix(np.vstack([np.zeros((1, n)), -L.T]))]
hq = [matrix(np.concatenate([[0.18], np.zeros(n)]))]
solvers.options.update({"abstol": 1e-10, "reltol": 1e-10, "feastol": 1e-10})  # tighter trips the cone's scaling
sol = solvers.socp(matrix(-mu), Gl=G, hl=h, Gq=Gq, hq=hq, A=ones, b=matrix([1.0]))
w = np.array(sol["x"]).ravel()
print(f"efficient_risk  = {w.tolist()!r}  (volatility {np.sqrt(w @ S @ w)!r})")
