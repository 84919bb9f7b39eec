#!/usr/bin/python3
"""Reference prices and greeks of European options from QuantLib's AnalyticEuropeanEngine
(Debian quantlib-python 1.29), for RebalanceMesh.Pricing.Tests.

Run:  /usr/bin/python3 tests/reference/quantlib_european.py > tests/RebalanceMesh.Pricing.Tests/Reference/quantlib_european.csv

Conventions (the same as RebalanceMesh.Pricing.Core.BlackScholes): time T = days / 365 (Actual/365 Fixed, flat
curves), continuous rate r and carry q, vega and rho per 1.00, theta per year.
"""
import itertools
import sys
import QuantLib as ql

today = ql.Date(2, ql.January, 2026)
ql.Settings.instance().evaluationDate = today
dc = ql.Actual365Fixed()

spot = 100.0
strikes = [50.0, 80.0, 100.0, 120.0, 200.0]
vols = [0.05, 0.2, 0.8]
rates = [0.0, 0.05]
carries = [-0.02, 0.03]
days = [1, 30, 365, 3650]
rights = [("call", ql.Option.Call), ("put", ql.Option.Put)]

out = sys.stdout
out.write("right,spot,strike,days,rate,carry,vol,price,delta,gamma,vega,theta,rho\n")
for (name, right), k, vol, r, q, d in itertools.product(rights, strikes, vols, rates, carries, days):
    u = ql.SimpleQuote(spot)
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(u),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc, ql.Continuous)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc, ql.Continuous)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), vol, dc)))
    option = ql.EuropeanOption(ql.PlainVanillaPayoff(right, k), ql.EuropeanExercise(today + d))
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    values = [option.NPV(), option.delta(), option.gamma(), option.vega(), option.theta(), option.rho()]
    out.write(",".join([name, repr(spot), repr(k), str(d), repr(r), repr(q), repr(vol)] + [repr(v) for v in values]) + "\n")

# Black-76 (options on futures), printed to stderr so the CSV above stays clean:
#   /usr/bin/python3 tests/reference/quantlib_european.py 2>&1 >/dev/null
# F=100, T=0.5, r=5 %, σ=20 %: calls and puts at K=90, 100, 120 (recorded in InstrumentPricerTests).
for k in (90.0, 100.0, 120.0):
    for name, right in rights:
        std = 0.2 * 0.5 ** 0.5
        discount = __import__("math").exp(-0.05 * 0.5)
        sys.stderr.write(f"black76 {name} K={k}: {ql.blackFormula(right, k, 100.0, std, discount)!r}\n")
