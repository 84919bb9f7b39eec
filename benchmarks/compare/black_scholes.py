#!/usr/bin/python3
"""Side by side, one core, same inputs, same run: Black–Scholes–Merton price + delta, gamma, vega, theta, rho.

  RebalanceMesh  Pricing.Core BlackScholesBatch (C#, Vector256)       all N options
  numpy          vectorised formulas with scipy.special.ndtr           all N options
  QuantLib       AnalyticEuropeanEngine via quantlib-python            the first M options (it is slow)

Run from the repository root (Debian python3-numpy, python3-scipy, quantlib-python; libopenblas0-pthread):
  /usr/bin/python3 benchmarks/compare/black_scholes.py [N] [M]
Every process is pinned to CPU 0 (taskset) so all three run on one core. Results are checked against each other
before any time is reported. Ratios are what to quote; absolute times on a shared machine are noisy.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
from scipy.special import ndtr
import QuantLib as ql

os.sched_setaffinity(0, {0})
root = pathlib.Path(__file__).resolve().parents[2]
work = root / "benchmarks" / "compare" / ".work"
work.mkdir(parents=True, exist_ok=True)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
m = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000

rng = np.random.default_rng(7)
S = rng.uniform(50, 150, n); K = rng.uniform(50, 150, n); T = rng.uniform(0.02, 3, n)
r = rng.uniform(0, 0.05, n); q = rng.uniform(0, 0.03, n); v = rng.uniform(0.1, 0.8, n)
w = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
np.concatenate([S, K, T, r, q, v, w]).astype("<f8").tofile(work / "bs_inputs.bin")


def numpy_bs(S, K, T, r, q, v, w):
    sqrt_t = np.sqrt(T); sd = v * sqrt_t
    df_r = np.exp(-r * T); df_q = np.exp(-q * T)
    d1 = (np.log(S / K) + (r - q) * T) / sd + 0.5 * sd
    d2 = d1 - sd
    nd1 = ndtr(w * d1); nd2 = ndtr(w * d2)
    pdf = np.exp(-0.5 * d1 * d1) * 0.3989422804014327
    sq = S * df_q; kr = K * df_r
    price = w * (sq * nd1 - kr * nd2)
    delta = w * df_q * nd1
    gamma = df_q * pdf / (S * sd)
    vega = sq * pdf * sqrt_t
    theta = -sq * pdf * v / (2 * sqrt_t) + w * q * sq * nd1 - w * r * kr * nd2
    rho = w * K * T * df_r * nd2
    return price, delta, gamma, vega, theta, rho


def best_of(fn, repeats):
    best = float("inf"); out = None
    for _ in range(repeats):
        t0 = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t0)
    return best, out


numpy_seconds, numpy_out = best_of(lambda: numpy_bs(S, K, T, r, q, v, w), 5)

# QuantLib: the efficient path — quotes and curves built once, values updated per option, one engine.
today = ql.Date(2, ql.January, 2026); ql.Settings.instance().evaluationDate = today
dc = ql.Actual365Fixed()
spot, rate, div, vol = ql.SimpleQuote(100), ql.SimpleQuote(0.01), ql.SimpleQuote(0.0), ql.SimpleQuote(0.2)
process = ql.BlackScholesMertonProcess(
    ql.QuoteHandle(spot),
    ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(div), dc, ql.Continuous)),
    ql.YieldTermStructureHandle(ql.FlatForward(today, ql.QuoteHandle(rate), dc, ql.Continuous)),
    ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), ql.QuoteHandle(vol), dc)))
engine = ql.AnalyticEuropeanEngine(process)
days = np.maximum(np.rint(T[:m] * 365), 1).astype(int)


def quantlib_run():
    prices = np.empty(m)
    for i in range(m):
        spot.setValue(S[i]); rate.setValue(r[i]); div.setValue(q[i]); vol.setValue(v[i])
        option = ql.EuropeanOption(ql.PlainVanillaPayoff(ql.Option.Call if w[i] > 0 else ql.Option.Put, K[i]), ql.EuropeanExercise(today + int(days[i])))
        option.setPricingEngine(engine)
        prices[i] = option.NPV(); option.delta(); option.gamma(); option.vega(); option.theta(); option.rho()
    return prices


quantlib_seconds, quantlib_prices = best_of(quantlib_run, 2)
ql_check = numpy_bs(S[:m], K[:m], days / 365.0, r[:m], q[:m], v[:m], w[:m])[0]
assert np.max(np.abs(quantlib_prices - ql_check)) < 1e-9, "QuantLib and numpy disagree"

dll = root / "benchmarks" / "RebalanceMesh.Benchmarks" / "bin" / "Release" / "net10.0" / "RebalanceMesh.Benchmarks.dll"
subprocess.run(["dotnet", "build", str(root / "benchmarks" / "RebalanceMesh.Benchmarks"), "-c", "Release", "--nologo", "-v", "quiet"], check=True, stdout=subprocess.DEVNULL)
# Pinned to one core, the JIT's call-counting delay keeps hot methods in unoptimised code far longer than the
# warm-up; with the delay at zero the process reaches the steady state a multi-core service reaches by itself.
cs_env = dict(os.environ, DOTNET_TC_CallCountingDelayMs="0")
cs = json.loads(subprocess.run(["taskset", "-c", "0", "dotnet", str(dll), "bs-throughput", str(work / "bs_inputs.bin"), str(work / "bs_outputs.bin")],
                               check=True, capture_output=True, text=True, env=cs_env).stdout.strip().splitlines()[-1])
cs_out = np.fromfile(work / "bs_outputs.bin", dtype="<f8").reshape(6, n)
worst = max(float(np.max(np.abs(cs_out[i] - numpy_out[i]))) for i in range(6))
assert worst < 1e-9, f"C# and numpy disagree by {worst}"

per = {
    "RebalanceMesh (C# batch)": cs["seconds"] / n,
    "numpy + scipy.ndtr": numpy_seconds / n,
    "QuantLib-Python": quantlib_seconds / m,
}
print(f"options: {n:,} (QuantLib: first {m:,}); outputs agree to {worst:.1e}; Vector256 accelerated: {cs['vector256']}")
print(f"{'implementation':<26}{'ns / option':>14}{'options / s':>16}{'C# speed-up':>14}")
for name, seconds in per.items():
    print(f"{name:<26}{seconds * 1e9:>14.1f}{1 / seconds:>16,.0f}{seconds / per['RebalanceMesh (C# batch)']:>13.1f}x")
