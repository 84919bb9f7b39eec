#!/usr/bin/python3
"""Reference figures for the backtest's market data and first-day targets, from numpy (Debian python3-numpy), for
RebalanceMesh.Planning.Tests (BacktesterTests).

Run:  /usr/bin/python3 tests/reference/backtest_reference.py

Data: data/eustockmarkets.csv (DAX, SMI, CAC, FTSE). On day 250 with a 250-day lookback the backtest sees the
closes of days 0..250: the annualised sample covariance (x252, divides by T - 1) and mean (x252) of their daily
log returns. The inverse-volatility model invests 0.96 in proportion to 1/sigma_i of that covariance.
"""
import pathlib
import numpy as np

root = pathlib.Path(__file__).resolve().parents[2]
data = np.genfromtxt(root / "data" / "eustockmarkets.csv", delimiter=",", names=True)
prices = np.column_stack([data["DAX"], data["SMI"], data["CAC"], data["FTSE"]])[0:251]
r = np.diff(np.log(prices), axis=0)
S = np.cov(r, rowvar=False) * 252
print(f"covariance_day250 = {S.ravel().tolist()!r}")
print(f"means_day250      = {(r.mean(axis=0) * 252).tolist()!r}")
inv = 1 / np.sqrt(np.diag(S))
print(f"inverse_vol_0_96  = {(0.96 * inv / inv.sum()).tolist()!r}")
