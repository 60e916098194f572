"""What the exact mode-tracking ODE costs (math.md §1.5; the reviewers' question on Karczewski et al. 2025a).

For D ∈ {2, 8, 32, 64, 256} and two models — the exact mixture oracle (float64) and a small residual MLP score
network (float32, hidden 256, depth 3, random weights: the cost does not depend on training) — it runs
dd.mode_tracking (Heun) for a few steps on a batch and reports per step: score forward passes, VJPs (the D Hessian
rows with create_graph + one backward through their trace), seconds, and the peak resident memory above the
process's baseline. Each configuration runs in a fresh process so the peak RSS is its own. One torch thread. The
high-density ODE (H = 0) is timed alongside for comparison (2 score evaluations per Heun step, no derivatives).

Run: .venv/bin/python benchmarks/mode_tracking.py [--quick]; prints a table, writes results/mode_tracking.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import machine, save, table  # noqa: E402

DIMS = (2, 8, 32, 64, 256)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def one(kind: str, D: int, batch: int, steps: int) -> dict:
    import diffdensity as dd
    from diffdensity.dynamics import HDODE
    from diffdensity.integrate import integrate_ode
    from diffdensity.nets.mlp import MLP

    torch.set_num_threads(1)
    s = dd.VP()
    g = torch.Generator().manual_seed(0)
    if kind == "oracle":
        mu = torch.randn(4, D, generator=g, dtype=torch.float64)
        model = dd.GaussianMixture(mu, torch.full((4,), 0.5, dtype=torch.float64)).diffused(s)
        dtype = torch.float64
    else:
        torch.manual_seed(0)
        model = dd.NetworkModel(MLP(D, hidden=256, depth=3), s, "eps").eval()
        dtype = torch.float32
    x = torch.randn(batch, D, generator=g, dtype=dtype)
    lam_t, lam_end = -1.0, -1.0 + 0.01 * steps  # a short stretch: cost per step does not depend on where
    dd.mode_tracking(model, x, lam_t, steps=1, lam_end=lam_t + 0.01, progress=False)  # warm-up
    base = _rss_mb()
    t = time.perf_counter()
    _, nfe = dd.mode_tracking(model, x, lam_t, steps=steps, lam_end=lam_end, return_nfe=True, progress=False)
    sec = (time.perf_counter() - t) / steps
    peak = _rss_mb()
    t = time.perf_counter()
    integrate_ode(model, HDODE(s), x, lam_t, lam_end, solver="heun", steps=steps, progress=False)
    hd_sec = (time.perf_counter() - t) / steps
    return {
        "model": kind,
        "D": D,
        "batch": batch,
        "steps": steps,
        "score_evals_per_step": nfe / steps,
        "vjps_per_step": (D + 1) * (nfe - 2 * steps) / steps,
        "s_per_step": sec,
        "hd_ode_s_per_step": hd_sec,
        "slowdown": sec / hd_sec,
        "peak_rss_above_baseline_mb": max(0.0, peak - base),
        "baseline_rss_mb": base,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", nargs=4, metavar=("KIND", "D", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), int(a.one[2]), int(a.one[3]))))
        return
    batch, steps = (4, 2) if a.quick else (8, 4)
    rows = []
    for kind in ("oracle", "mlp"):
        for D in DIMS:
            out = subprocess.run(
                [sys.executable, __file__, "--one", kind, str(D), str(batch), str(steps)],
                check=True,
                capture_output=True,
                text=True,
                env={"OMP_NUM_THREADS": "1", **__import__("os").environ},
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(table(rows[-1:], list(rows[-1])), flush=True)
    cols = [
        "model",
        "D",
        "batch",
        "score_evals_per_step",
        "vjps_per_step",
        "s_per_step",
        "hd_ode_s_per_step",
        "slowdown",
        "peak_rss_above_baseline_mb",
    ]
    print(table(rows, cols))
    save(
        "mode_tracking",
        {
            "rows": rows,
            "solver": "heun",
            "note": "per Heun step (2 stages); VJPs = (D + 1) per stage with H; one D×D solve per sample per stage",
            "machine_run": machine(),
        },
    )


if __name__ == "__main__":
    main()
