"""Fixed-step log-density at equal NFE (issue 25, item 7): diffdensity's fixed-step solvers against flow_matching's
midpoint solver, in one run, on anisotropic Gaussian mixtures (D = 32: three components with diagonal stds and unequal
weights) under the flow-matching, VP and VE schedules.

Every system integrates the same PF-ODE over the same λ range [λ_min, λ_max] (the schedule's), exact divergence,
and is given the oracle's exact log p at λ_min as its prior, so only the integration of x and of the divergence errs;
the error is against the exact log p at λ_max (mean absolute, nats). flow_matching gets its own best honest setting:
its time t' ∈ [0, 1] is the schedule's natural time (flow matching: t' = 1 − t; VP, VE: uniform in λ, log σ and σ,
all tried, the best reported), its velocity the exact PF-ODE field in t' (no clamping: the oracle is exact at
every λ). diffdensity: each registered fixed-step solver on each grid kind ("lambda", "t", "sigma", "edm"), the best
per NFE reported beside all rows (generic solvers step in the schedule's fixed-step variable and in its natural
time). NFE = score calls (Heun and midpoint: 2 per step).

Run: .venv/bin/python benchmarks/fixed_step_logp.py [--quick]; table + results/fixed_step_logp.json.
"""

from __future__ import annotations

import argparse
import sys

import torch

import diffdensity as dd
from diffdensity.registry import SOLVERS
from diffdensity.solvers import resolve

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import save, table  # noqa: E402

NFES = (16, 64, 256)
GRIDS = ("lambda", "t", "sigma", "edm")


def oracle(schedule, D=32, n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(3, D, generator=g, dtype=torch.float64)
    stds = 0.3 * (0.3 + 1.4 * torch.rand(3, D, generator=g, dtype=torch.float64))
    m = dd.GaussianMixture(means, stds, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)).diffused(schedule)
    x = m.sample(n, schedule.lambda_max, generator=g)
    return m, x, m.log_prob(x, schedule.lambda_max)


def ours(m, x, exact, nfe):
    sch, rows = m.schedule, []
    prior = lambda z: m.log_prob(z, sch.lambda_min)  # noqa: E731
    for name in SOLVERS.names():
        s = resolve(name)
        if s.adaptive:
            continue
        steps = nfe // s.evals_per_step
        times = [None] if s.variable else sorted({sch.fixed_time, sch.natural_time})
        for grid in GRIDS:
            for tv in times:
                try:
                    lp = dd.log_prob(
                        m, x, divergence="exact", solver=name, steps=steps, grid=grid, prior=prior, time=tv
                    )
                except (ValueError, RuntimeError) as e:  # a grid a schedule cannot make
                    print(f"  skip {name}/{grid}: {e}")
                    continue
                rows.append(
                    {
                        "system": "diffdensity",
                        "solver": name,
                        "grid": grid,
                        "time": tv or s.variable,
                        "nfe": nfe,
                        "err": float((lp - exact).abs().mean()),
                    }
                )
    return rows


def flow_matching_rows(m, x, exact, nfe):
    try:
        from flow_matching.solver import ODESolver
    except ImportError:
        return []
    sch = m.schedule
    rows = []
    for tname in ("t",) if isinstance(sch, dd.FlowMatching) else ("lambda", "log_sigma", "sigma"):
        tv = sch.time_variable(tname)
        tau0, tau1 = (float(v) for v in tv.to_tau(torch.tensor([sch.lambda_min, sch.lambda_max], dtype=torch.float64)))

        class Velocity(torch.nn.Module):  # t' ∈ [0, 1] ↦ τ = τ0 + t'(τ1 − τ0): dx/dt' = u(λ(τ), x) dλ/dτ (τ1 − τ0)
            def forward(self, x, t):
                xx = x
                tau = tau0 + torch.as_tensor(t, dtype=torch.float64) * (tau1 - tau0)
                lam = tv.to_lam(tau)
                a_f, g2 = sch.f(lam), sch.g2(lam)
                u = a_f * xx + 0.5 * g2 * m.score(xx, lam)
                return u * float(tv.dlam_dtau(tau) * (tau1 - tau0))

        lp0 = lambda z: m.log_prob(z, sch.lambda_min)  # noqa: E731
        _, lp = ODESolver(velocity_model=Velocity()).compute_likelihood(
            x,
            lp0,
            step_size=2.0 / nfe,
            method="midpoint",
            time_grid=torch.tensor([1.0, 0.0], dtype=torch.float64),
            exact_divergence=True,
        )
        rows.append(
            {
                "system": "flow_matching",
                "solver": "midpoint",
                "grid": f"uniform in {tname}",
                "nfe": nfe,
                "err": float((lp - exact).abs().mean()),
            }
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="64 points")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows, best = [], []
    for name in ("FlowMatching", "VP", "VE"):
        m, x, exact = oracle(getattr(dd, name)(), n=64 if a.quick else 128)
        for nfe in NFES:
            mine, peer = ours(m, x, exact, nfe), flow_matching_rows(m, x, exact, nfe)
            for r in mine + peer:
                rows.append({"schedule": name, **r})
            b = min(mine, key=lambda r: r["err"])
            p = min(peer, key=lambda r: r["err"]) if peer else None
            best.append(
                {
                    "schedule": name,
                    "nfe": nfe,
                    "best diffdensity": f"{b['solver']}/{b['grid']}/{b['time']}",
                    "its error": b["err"],
                    "flow_matching midpoint": None if p is None else p["err"],
                    "ratio (fm / ours)": None if p is None else p["err"] / b["err"],
                }
            )
            print(best[-1], flush=True)
    print(
        table(best, ["schedule", "nfe", "best diffdensity", "its error", "flow_matching midpoint", "ratio (fm / ours)"])
    )
    save("fixed_step_logp", {"what": __doc__.split("\n\n")[0], "rows": rows, "best": best})


if __name__ == "__main__":
    main()
