"""Which integration variable and which fixed grid (issue 15, items 1-2), on the exact mixture and on digits8.

1. dopri5 with exact divergence, per schedule × integration variable (time=) × tolerance: NFE and the mean
   absolute error of log p against the oracle (exact prior, so only the solver errs).
2. Euler at 64 (and 256) steps, per schedule × grid kind × integration variable: the same error.
2b. Euler, AB2 and Heun at equal NFE on each schedule's defaults: sample error and log_prob error.
3. On the shipped digits8 model (VP): NFE of dopri5 per integration variable, the error taken against a tight
   solve (rtol = atol = 1e-7) in λ.

Run: .venv/bin/python benchmarks/integration.py [--quick]; writes benchmarks/results/integration.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

import diffdensity as dd
from diffdensity.dynamics import PFODE
from diffdensity.integrate import integrate_ode

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import save, table  # noqa: E402

TIMES = {"VP": ("lambda", "sigma", "log_sigma"), "VE": ("lambda", "sigma"), "FlowMatching": ("lambda", "t")}


def oracle(sch, D=64, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(4, D, generator=g, dtype=torch.float64)
    mu = mu / mu.norm(dim=1, keepdim=True) * 0.5 * math.sqrt(D)
    m = dd.GaussianMixture(mu, torch.full((4,), 0.3, dtype=torch.float64)).diffused(sch)
    x = m.sample(n, sch.lambda_max, generator=g)
    return m, x, m.log_prob(x, sch.lambda_max)


def logp(m, x, **kw):
    sch = m.schedule
    out = integrate_ode(
        m, PFODE(sch), x, sch.lambda_max, sch.lambda_min, track=True, divergence="exact", progress=False, **kw
    )
    return m.log_prob(out.x, sch.lambda_min) - out.logp, out.nfe


def adaptive_rows(quick):
    rows = []
    for name in TIMES:
        m, x, exact = oracle(getattr(dd, name)())
        for time_var in TIMES[name]:
            for tol in (1e-3, 1e-5) if quick else (1e-3, 1e-4, 1e-5):
                t0 = time.perf_counter()
                lp, nfe = logp(m, x, solver="dopri5", rtol=tol, atol=tol, time=time_var)
                rows.append(
                    {
                        "schedule": name,
                        "time": time_var,
                        "tol": tol,
                        "nfe": nfe,
                        "mean_abs_err": (lp - exact).abs().mean().item(),
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(rows[-1], flush=True)
    return rows


def grid_rows(quick):
    rows = []
    for name in TIMES:
        m, x, exact = oracle(getattr(dd, name)())
        for steps in (64,) if quick else (64, 256):
            for grid in ("lambda", "t", "sigma", "edm"):
                for time_var in TIMES[name]:
                    lp, nfe = logp(m, x, solver="euler", steps=steps, grid=grid, time=time_var)
                    rows.append(
                        {
                            "schedule": name,
                            "steps": steps,
                            "grid": grid,
                            "time": time_var,
                            "mean_abs_err": (lp - exact).abs().mean().item(),
                        }
                    )
                    print(rows[-1], flush=True)
    return rows


def solver_rows(quick):
    """Fixed-step solvers at equal NFE (Heun at half the steps), on each schedule's defaults: the samples' error against
    a tight dopri5 solve from the same x_T, and log_prob's error (exact prior, exact divergence)."""
    rows = []
    for name in TIMES:
        m, x, exact = oracle(getattr(dd, name)())
        sch = m.schedule
        xT = sch.sample_prior(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
        ref = dd.sample_ode(m, xT, solver="dopri5", rtol=1e-9, atol=1e-9, progress=False).x
        for nfe in (64,) if quick else (16, 64):
            for solver in ("euler", "ab2", "heun"):
                steps = nfe // 2 if solver == "heun" else nfe
                xs = dd.sample_ode(m, xT, steps=steps, solver=solver, progress=False).x
                lp = dd.log_prob(
                    m, x, divergence="exact", solver=solver, steps=steps, prior=lambda z: m.log_prob(z, sch.lambda_min)
                )
                rows.append(
                    {
                        "schedule": name,
                        "nfe": nfe,
                        "solver": solver,
                        "sample_err": (xs - ref).norm(dim=1).mean().item(),
                        "log_prob_err": (lp - exact).abs().mean().item(),
                    }
                )
                print(rows[-1], flush=True)
    return rows


def digits_rows(quick):
    try:
        model = dd.load("digits8")
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"digits8 not available: {e}")
        return []
    # 16 PF-ODE samples of the model (an earlier branch meant to use data never ran: `dd.data` is no attribute)
    g = torch.Generator().manual_seed(0)
    x = dd.sample_ode(model, model.schedule.sample_prior((16, 1, 8, 8), generator=g), steps=128, progress=False).x
    model, x = model.double(), x.double()  # the reference solve at rtol 1e-7 needs float64 (float32 resolves ~1e-6)
    sch = model.schedule

    def encode(tol, time_var):
        """(log p of x by the exact-divergence dopri5 encode, its NFE)."""
        out = integrate_ode(
            model,
            PFODE(sch),
            x,
            sch.lambda_max,
            sch.lambda_min,
            track=True,
            divergence="exact",
            solver="dopri5",
            rtol=tol,
            atol=tol,
            time=time_var,
            progress=False,
        )
        return sch.prior_log_prob(out.x) - out.logp, out.nfe

    ref_lp, _ = encode(1e-7, "lambda")
    rows = []
    for time_var in ("lambda", "sigma", "log_sigma", "t"):
        for tol in (1e-3, 1e-5) if quick else (1e-3, 1e-4, 1e-5):
            lp, nfe = encode(tol, time_var)
            rows.append(
                {
                    "model": "digits8",
                    "time": time_var,
                    "tol": tol,
                    "nfe": nfe,
                    "mean_abs_err": (lp - ref_lp).abs().mean().item(),
                }
            )
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("adaptive", "grid", "solvers", "digits"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    if a.only in (None, "grid"):
        out["grid"] = grid_rows(a.quick)
        print(table(out["grid"], ["schedule", "steps", "grid", "time", "mean_abs_err"]))
    if a.only in (None, "solvers"):
        out["solvers"] = solver_rows(a.quick)
        print(table(out["solvers"], ["schedule", "nfe", "solver", "sample_err", "log_prob_err"]))
    if a.only in (None, "adaptive"):
        out["adaptive"] = adaptive_rows(a.quick)
        print(table(out["adaptive"], ["schedule", "time", "tol", "nfe", "mean_abs_err", "seconds"]))
    if a.only in (None, "digits"):
        out["digits"] = digits_rows(a.quick)
        if out["digits"]:
            print(table(out["digits"], ["model", "time", "tol", "nfe", "mean_abs_err"]))
    save("integration" + (f"_{a.only}" if a.only else ""), out)
