#!/usr/bin/python3
"""Reference values for RebalanceMesh.Risk.Tests, from numpy/scipy (Debian python3-numpy, python3-scipy).

Run:  /usr/bin/python3 tests/reference/risk_reference.py
The printed numbers are recorded in tests/RebalanceMesh.Risk.Tests/RiskReferenceTests.cs.

Data: data/eustockmarkets.csv (R's EuStockMarkets), the last 251 closes of DAX, SMI, CAC, FTSE -> 250 daily
log returns. Portfolio: 100k DAX, 200k SMI, 300k CAC, 400k FTSE (currency values), 50k cash.
"""
import pathlib
import numpy as np
from scipy.stats import norm

root = pathlib.Path(__file__).resolve().parents[2]
data = np.genfromtxt(root / "data" / "eustockmarkets.csv", delimiter=",", names=True)
prices = np.column_stack([data["DAX"], data["SMI"], data["CAC"], data["FTSE"]])[-251:]
r = np.diff(np.log(prices), axis=0)
values = np.array([100_000.0, 200_000.0, 300_000.0, 400_000.0])
cash = 50_000.0

sample = np.cov(r, rowvar=False, ddof=1)
lam = 0.94
w = lam ** np.arange(r.shape[0] - 1, -1, -1)
ewma = (r * w[:, None]).T @ r / w.sum()

daily_sigma = np.sqrt(values @ sample @ values)
net = values.sum() + cash
print(f"sample_cov_annual[0,0] = {sample[0,0]*252!r}")
print(f"sample_cov_annual[1,3] = {sample[1,3]*252!r}")
print(f"ewma_cov_annual[0,0]   = {ewma[0,0]*252!r}")
print(f"ewma_cov_annual[2,3]   = {ewma[2,3]*252!r}")
print(f"annual_vol             = {daily_sigma/net*np.sqrt(252)!r}")

pnl = (np.expm1(r) * values).sum(axis=1)
losses = -pnl
for a in (0.95, 0.99):
    var = np.quantile(losses, a)  # numpy default: linear interpolation (type 7)
    cvar = losses[losses >= var].mean()
    z = norm.ppf(a)
    print(f"historical {a}: var = {var!r}, cvar = {cvar!r}")
    print(f"parametric {a}: var = {z*daily_sigma!r}, cvar = {daily_sigma*norm.pdf(z)/(1-a)!r}")

# --- Distribution shape, Cornish–Fisher, ratios (RiskReferenceTests.Cornish_Fisher_… / Ratios_…) --------------
from scipy import stats, integrate

skew = stats.skew(pnl)                      # biased, as RebalanceMesh's Moments
kurt = stats.kurtosis(pnl)                  # excess, biased
loss_skew = -skew


def cf(z):
    return z + (z * z - 1) * loss_skew / 6 + (z ** 3 - 3 * z) * kurt / 24 - (2 * z ** 3 - 5 * z) * loss_skew ** 2 / 36


print(f"pnl_skewness           = {skew!r}")
print(f"pnl_excess_kurtosis    = {kurt!r}")
for a in (0.95, 0.99):
    var_cf = daily_sigma * cf(norm.ppf(a))
    es_cf = daily_sigma * integrate.quad(lambda u: cf(norm.ppf(u)), a, 1, limit=200)[0] / (1 - a)
    print(f"cornish-fisher {a}: var = {var_cf!r}, cvar = {es_cf!r}")

vols = np.sqrt(np.diag(sample))
print(f"diversification_ratio  = {(np.abs(values) * vols).sum() / daily_sigma!r}")
ret = pnl / net
print(f"sharpe                 = {ret.mean() / ret.std(ddof=1) * np.sqrt(252)!r}")
print(f"sortino                = {ret.mean() / np.sqrt(np.mean(np.minimum(ret, 0) ** 2)) * np.sqrt(252)!r}")

# --- Ledoit–Wolf shrinkage (scikit-learn, Debian python3-sklearn) -----------------------------------------------
from sklearn.covariance import ledoit_wolf

lw, shrinkage = ledoit_wolf(r)              # centres, divides by T, shrinks toward tr(S)/p · I
print(f"ledoit_wolf_shrinkage  = {shrinkage!r}")
print(f"ledoit_wolf_annual[0,0] = {lw[0,0]*252!r}")
print(f"ledoit_wolf_annual[1,3] = {lw[1,3]*252!r}")

# --- GARCH(1,1) by maximum likelihood on the last 1,000 DAX log returns (scipy.optimize, SLSQP) ------------------
from scipy.optimize import minimize

all_prices = data["DAX"]
g = np.diff(np.log(all_prices))[-1000:]
e = g - g.mean()
s2 = np.mean(e * e)


def negloglik(params):
    omega_scaled, alpha, beta = params      # ω / sample variance keeps the three unknowns on one scale
    omega = omega_scaled * s2
    var = s2; ll = 0.0
    for x in e:
        ll -= 0.5 * (np.log(2 * np.pi) + np.log(var) + x * x / var)
        var = omega + alpha * x * x + beta * var
    return -ll


best = None
for p0 in ([0.05, 0.08, 0.87], [0.1, 0.15, 0.75], [0.02, 0.05, 0.93]):
    res = minimize(negloglik, p0, method="SLSQP",
                   bounds=[(1e-12, None), (0.0, 1.0), (0.0, 1.0)],
                   constraints=[{"type": "ineq", "fun": lambda p: 0.999999 - p[1] - p[2]}],
                   options={"ftol": 1e-14, "maxiter": 1000})
    if best is None or res.fun < best.fun:
        best = res
omega, alpha, beta = best.x[0] * s2, best.x[1], best.x[2]
print(f"garch_dax omega = {omega!r}, alpha = {alpha!r}, beta = {beta!r}, loglik = {-best.fun!r}")

# --- Risk parity (equal risk contribution) on the 4 indices, scipy.optimize on Spinu's convex problem -----------
from scipy.optimize import minimize as _minimize

_obj = lambda x: 0.5 * x @ sample @ x - np.log(x).sum()
_res = _minimize(_obj, np.ones(4) / np.sqrt(np.diag(sample)), jac=lambda x: sample @ x - 1 / x,
                 method="L-BFGS-B", bounds=[(1e-12, None)] * 4, options={"ftol": 1e-15, "gtol": 1e-13, "maxiter": 10_000})
erc = _res.x / _res.x.sum()
print(f"risk_parity_weights    = {erc.tolist()!r}")

# --- Historical VaR with options revalued in full, and portfolio margin (OptionRevaluationTests) -----------------
# Book: 50 DAX at 1000 (account SIM-A), 10 calls K=1000 (SIM-A), -8 puts K=950 (SIM-B); European, T = 0.25 years
# (Actual/365), sigma 0.20, r 0.03, no carry, underlying 1000. Scenario t moves DAX by exp(r_t) - 1 with the last 250
# DAX log returns; P&L = full repricing minus today's price. Portfolio margin: worst loss over the grid of underlying
# moves -15 %..+15 % in 5 % steps and volatility -30 %, 0, +30 % (relative).
def bs(right, s, k, t, sigma, rate):
    d1 = (np.log(s / k) + (rate + 0.5 * sigma * sigma) * t) / (sigma * np.sqrt(t))
    d2 = d1 - sigma * np.sqrt(t)
    if right == "call":
        return s * norm.cdf(d1) - k * np.exp(-rate * t) * norm.cdf(d2)
    return k * np.exp(-rate * t) * norm.cdf(-d2) - s * norm.cdf(-d1)


S0, T, SIG, RATE = 1000.0, 0.25, 0.20, 0.03
book = [("spot", None, 50.0, "SIM-A"), ("call", 1000.0, 10.0, "SIM-A"), ("put", 950.0, -8.0, "SIM-B")]


def position_pnl(kind, k, q, move, vol_shock):
    s = S0 * (1 + move)
    if kind == "spot":
        return q * S0 * move
    return q * (bs(kind, s, k, T, SIG * (1 + vol_shock), RATE) - bs(kind, S0, k, T, SIG, RATE))


dax_r = r[:, 0]
opt_pnl = np.array([sum(position_pnl(kind, k, q, np.expm1(x), 0.0) for kind, k, q, _ in book) for x in dax_r])
opt_losses = -opt_pnl
for a in (0.95, 0.99):
    var = np.quantile(opt_losses, a)
    print(f"option book historical {a}: var = {var!r}, cvar = {opt_losses[opt_losses >= var].mean()!r}")
print(f"option book call price = {bs('call', S0, 1000.0, T, SIG, RATE)!r}, put price = {bs('put', S0, 950.0, T, SIG, RATE)!r}")
grid = [(m, v) for m in (-0.15, -0.10, -0.05, 0.0, 0.05, 0.10, 0.15) for v in (-0.30, 0.0, 0.30)]
for venue in ("all", "SIM-A", "SIM-B"):
    members = [p for p in book if venue == "all" or p[3] == venue]
    worst = min(sum(position_pnl(kind, k, q, m, v) for kind, k, q, _ in members) for m, v in grid)
    print(f"portfolio margin {venue}: maintenance = {max(0.0, -worst)!r}")
