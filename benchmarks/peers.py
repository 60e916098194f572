"""diffdensity against its peers on the same exact mixture, in one run (issue 15).

Same ODE, same exact score (the Gaussian-mixture oracle, D = 64, 256 points, float32), NFE counted the same way for
every system (calls of the score/denoiser/velocity on the batch), one thread:
- k-diffusion's ``sampling.log_likelihood`` (VE, dopri5 in σ, Hutchinson with one held Rademacher probe);
- flow_matching's ``ODESolver.compute_likelihood`` (flow matching, t' = 1 − t from 1 to 0, exact or Hutchinson,
  dopri5 or Euler), given the oracle's exact velocity on all of t' ∈ [0, 1] (E[x₀|x] − E[ε|x] from the exact
  posterior, the data end x itself): its best honest setting, with nothing clamped to diffdensity's λ range;
- diffdensity's ``log_prob`` (default integration variable, dopri5 with per-example or batch-shared control, Euler on
  its default grid), exact and Hutchinson, for VP, VE and flow matching.
Errors are against the oracle's log p at the data end (λ_max), with every system's own default prior; a second
flow-matching block ("FlowMatching, data") takes points of the data distribution itself and measures against its own
log-density, where flow_matching integrates to t = 0 and diffdensity runs ``log_prob(..., density="data")`` (math.md
§1.1b: the two ends beyond λ ∈ [−10, 10] closed by their limits).

Peers are used when installed (``pip install --no-deps -e ".[bench]"`` never replaces torch); nothing is installed
at run time. k-diffusion's package ``__init__`` imports torchvision, kornia, wandb, clip...; when those are missing
its ``sampling.py`` file is loaded on its own with ``utils.append_dims`` (the only helper ``log_likelihood`` uses).

Run: .venv/bin/python benchmarks/peers.py [--quick]; prints the table and writes benchmarks/results/peers.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
import types

import torch

import diffdensity as dd

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import save, table  # noqa: E402

TOLS = (1e-3, 1e-4, 1e-5)
EULER = (64, 256, 1024)


def k_diffusion_sampling():
    """k-diffusion's sampling module, or None when k-diffusion is not installed."""
    try:
        import k_diffusion.sampling as ks

        return ks
    except ImportError:
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None or not spec.submodule_search_locations:
            return None
    root = list(spec.submodule_search_locations)[0]
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = [root]
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]  # k-diffusion's utils.append_dims
    pkg.utils = utils
    sys.modules.setdefault("k_diffusion", pkg)
    sys.modules.setdefault("k_diffusion.utils", utils)
    s = importlib.util.spec_from_file_location("k_diffusion.sampling", f"{root}/sampling.py")
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod


def flow_matching_solver():
    try:
        from flow_matching.solver import ODESolver

        return ODESolver
    except ImportError:
        return None


def oracle(sch, D=64, n=256, seed=0, data=False):
    """(model, points, their exact log-density): points of p at λ_max, or with ``data`` of the data distribution."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(4, D, generator=g, dtype=torch.float64)
    mu = mu / mu.norm(dim=1, keepdim=True) * 0.5 * math.sqrt(D)
    gm = dd.GaussianMixture(mu, torch.full((4,), 0.3, dtype=torch.float64)).to(torch.float32)
    m = gm.diffused(sch)
    if data:
        x = gm.sample(n, generator=g)
        return m, x, gm.log_prob(x)
    x = m.sample(n, sch.lambda_max, generator=g)
    return m, x, m.log_prob(x, sch.lambda_max)


def row(system, schedule, div, setting, nfe, lp, exact, secs):
    e = lp.double() - exact.double()
    return {
        "system": system,
        "schedule": schedule,
        "divergence": div,
        "setting": setting,
        "nfe": int(nfe),
        "mean_abs_err": e.abs().mean().item(),
        "mean_err": e.mean().item(),
        "seconds": secs,
    }


def run_diffdensity(name, m, x, exact, quick, density="lambda_max"):
    rows = []
    for div in ("exact", "hutchinson"):
        for control in ("example", "batch"):
            for tol in TOLS:
                t0 = time.perf_counter()
                lp, nfe = dd.log_prob(
                    m,
                    x,
                    divergence=div,
                    rtol=tol,
                    atol=tol,
                    return_nfe=True,
                    control=control,
                    generator=torch.Generator().manual_seed(2),
                    progress=False,
                    density=density,
                )
                rows.append(
                    row(
                        f"diffdensity ({control})",
                        name,
                        div,
                        f"dopri5 {tol:g}",
                        nfe,
                        lp,
                        exact,
                        time.perf_counter() - t0,
                    )
                )
                print(rows[-1], flush=True)
    if not quick:
        for steps in EULER:
            t0 = time.perf_counter()
            lp, nfe = dd.log_prob(
                m, x, divergence="exact", solver="euler", steps=steps, return_nfe=True, progress=False, density=density
            )
            rows.append(row("diffdensity", name, "exact", f"euler {steps}", nfe, lp, exact, time.perf_counter() - t0))
            print(rows[-1], flush=True)
    return rows


def run_k_diffusion(ks, m, x, exact):
    sch = m.schedule
    calls = [0]

    def denoiser(xx, sigma):  # VE: x̂₀ = x + σ² ∇log p
        calls[0] += 1
        lam = sch.time_to_lam(sigma.to(torch.float64)).clamp(sch.lambda_min, sch.lambda_max).to(xx.dtype)
        return xx + sigma.reshape(-1, 1) ** 2 * m.score(xx, lam)

    smin, smax = (
        float(sch.lam_to_time(torch.tensor(v, dtype=torch.float64))) for v in (sch.lambda_max, sch.lambda_min)
    )
    rows = []
    for tol in TOLS:
        calls[0] = 0
        torch.manual_seed(2)
        t0 = time.perf_counter()
        lp, _ = ks.log_likelihood(denoiser, x, smin, smax, atol=tol, rtol=tol)
        rows.append(
            row("k-diffusion", "VE", "hutchinson", f"dopri5 {tol:g}", calls[0], lp, exact, time.perf_counter() - t0)
        )
        print(rows[-1], flush=True)
    return rows


def run_flow_matching(ODESolver, m, x, exact, quick, name="FlowMatching"):
    calls = [0]
    wide = m.mixture.diffused(dd.FlowMatching(-80.0, 80.0))  # the same process on all of t ∈ [1e-17, 1 − 1e-17]

    class Velocity(torch.nn.Module):  # t' = 1 − t (t' = 0 noise, 1 data): v = dx/dt' = E[x₀ | x] − E[ε | x]
        def forward(self, x, t):  # the exact velocity on all of t' ∈ [0, 1] (no clamping: the oracle is exact)
            calls[0] += 1
            tt = 1 - float(t)
            if tt <= 0.0:  # the data end: x = x₀, and ε is independent of it
                return x
            if tt >= 1.0:  # the noise end: x = ε, and x₀ is independent of it
                return (wide.mixture.weights[:, None] * wide.mixture.means).sum(0).to(x) - x
            lam = wide.schedule.time_to_lam(torch.tensor(tt, dtype=torch.float64))
            a, s = (float(v) for v in wide.schedule.alpha_sigma(lam))
            x0 = wide.posterior(x, float(lam)).mean()
            return x0 - (x - a * x0) / s

    solver = ODESolver(velocity_model=Velocity())
    log_p0 = lambda z: -0.5 * z.pow(2).sum(1) - z.shape[1] * 0.5 * math.log(2 * math.pi)  # N(0, I) at t' = 0
    grid = torch.tensor([1.0, 0.0])
    rows = []
    for div, exact_div in (("exact", True), ("hutchinson", False)):
        for tol in TOLS:
            calls[0] = 0
            torch.manual_seed(2)
            t0 = time.perf_counter()
            _, lp = solver.compute_likelihood(
                x,
                log_p0,
                step_size=None,
                method="dopri5",
                atol=tol,
                rtol=tol,
                time_grid=grid,
                exact_divergence=exact_div,
            )
            rows.append(
                row("flow_matching", name, div, f"dopri5 {tol:g}", calls[0], lp, exact, time.perf_counter() - t0)
            )
            print(rows[-1], flush=True)
    if not quick:
        for steps in EULER:
            calls[0] = 0
            t0 = time.perf_counter()
            _, lp = solver.compute_likelihood(
                x, log_p0, step_size=1.0 / steps, method="euler", time_grid=grid, exact_divergence=True
            )
            rows.append(
                row("flow_matching", name, "exact", f"euler {steps}", calls[0], lp, exact, time.perf_counter() - t0)
            )
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer points, no Euler rows")
    ap.add_argument("--n", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(1)
    n = 64 if a.quick else a.n
    ks, fm = k_diffusion_sampling(), flow_matching_solver()
    missing = [p for p, mod in (("k-diffusion", ks), ("flow_matching", fm)) if mod is None]
    if missing:
        print(f"not installed, rows skipped: {', '.join(missing)} (pip install --no-deps -e '.[bench]')")
    rows = []
    for name in ("VP", "VE", "FlowMatching", "FlowMatching, data"):
        data = name.endswith("data")
        m, x, exact = oracle(getattr(dd, name.split(",")[0])(), n=n, data=data)
        if name == "VE" and ks is not None:
            rows += run_k_diffusion(ks, m, x, exact)
        if name.startswith("FlowMatching") and fm is not None:
            rows += run_flow_matching(fm, m, x, exact, a.quick, name)
        rows += run_diffdensity(name, m, x, exact, a.quick, "data" if data else "lambda_max")
    print(table(rows, ["system", "schedule", "divergence", "setting", "nfe", "mean_abs_err", "seconds"]))
    save("peers", {"n": n, "D": 64, "missing": missing, "rows": rows})
