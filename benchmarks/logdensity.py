"""Log-density benchmarks (issue: PF-ODE likelihood and Theorem-1 tracking).

1. Error versus NFE of dd.log_prob for euler / heun / dopri5 × exact / hutchinson on the exact mixture
   (D = 64 and 768), with the exact prior so only the solver and the estimator err.
2. Hutchinson by VJP versus JVP: wall time per divergence on a convolutional network.
3. The SDE tracker: mean error, mean absolute error and spread for "em" and "corrected" at D ∈ {64, 768} and
   steps ∈ {256, 1024, 4096} (math.md §1.2b's mixture).
4. Tracking overhead: wall time of dd.sample_sde with and without tracking on a convolutional network.
5. On the shipped digits model (if present): the gap between SDE-tracked and PF-ODE log p of the same samples.

Run: .venv/bin/python benchmarks/logdensity.py [--quick]; prints tables and writes benchmarks/results/logdensity.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

import diffdensity as dd
from diffdensity.tracking import make_probes, score_and_divergence

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import save, table  # noqa: E402


def mixture(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(4, D, generator=g, dtype=torch.float64)
    mu = mu / mu.norm(dim=1, keepdim=True) * 0.5 * math.sqrt(D)
    return dd.GaussianMixture(mu, torch.full((4,), 0.3, dtype=torch.float64))


def bench_log_prob(D, n, quick):
    s = dd.VP()
    m = mixture(D).diffused(s)
    x = m.sample(n, s.lambda_max, generator=torch.Generator().manual_seed(1))
    exact = m.log_prob(x, s.lambda_max)
    prior = lambda z: m.log_prob(z, s.lambda_min)
    configs = [("euler", {"steps": k}) for k in ((64, 256, 1024) if not quick else (64, 256))]
    configs += [("heun", {"steps": k}) for k in ((16, 32, 64, 128) if not quick else (16, 64))]
    configs += [("dopri5", {"rtol": t, "atol": t}) for t in ((1e-3, 1e-4, 1e-5) if not quick else (1e-3, 1e-5))]
    rows = []
    for div in ("exact", "hutchinson"):
        for solver, kw in configs:
            t0 = time.perf_counter()
            lp, nfe = dd.log_prob(
                m,
                x,
                divergence=div,
                solver=solver,
                prior=prior,
                return_nfe=True,
                generator=torch.Generator().manual_seed(2),
                **kw,
            )
            dt = time.perf_counter() - t0
            err = lp - exact
            rows.append(
                {
                    "D": D,
                    "divergence": div,
                    "solver": solver,
                    "setting": str(kw.get("steps", kw.get("rtol"))),
                    "nfe": nfe,
                    "mean_abs_err": err.abs().mean().item(),
                    "mean_err": err.mean().item(),
                    "seconds": dt,
                }
            )
            print(f"  log_prob D={D} {div} {solver} {kw}: nfe {nfe} mae {rows[-1]['mean_abs_err']:.4g}", flush=True)
    return rows


def conv_model():
    from diffdensity.nets import unet_preset

    torch.manual_seed(0)
    net = unet_preset("digits", dropout=0.0).eval()
    with torch.no_grad():  # the preset zero-inits its output; give it a non-trivial output for timing
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return dd.NetworkModel(net, dd.VP())


def bench_vjp_jvp(reps):
    m = conv_model()
    x = torch.randn(32, 1, 8, 8)
    probes = make_probes(x, 1, generator=torch.Generator().manual_seed(0))
    out = {}
    for mode in ("vjp", "jvp"):
        score_and_divergence(m, x, 0.0, "hutchinson", probes, mode=mode)
        t0 = time.perf_counter()
        for _ in range(reps):
            score_and_divergence(m, x, 0.0, "hutchinson", probes, mode=mode)
        out[mode] = (time.perf_counter() - t0) / reps
    with torch.no_grad():
        m.score(x, 0.0)
        t0 = time.perf_counter()
        for _ in range(reps):
            m.score(x, 0.0)
        out["score_only"] = (time.perf_counter() - t0) / reps
    return [{"estimator": k, "seconds_per_call": v, "ratio_to_score": v / out["score_only"]} for k, v in out.items()]


def bench_tracker(D, n, steps_list):
    s = dd.VP()
    m = mixture(D).diffused(s)
    prior = lambda z: m.log_prob(z, s.lambda_min)
    xT = s.sample_prior((n, D), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows = []
    for steps in steps_list:
        for tracker in ("em", "corrected"):
            smp = dd.sample_sde(
                m, xT, steps=steps, tracker=tracker, prior=prior, generator=torch.Generator().manual_seed(2)
            )
            e = smp.logp - m.log_prob(smp.x, s.lambda_max)
            rows.append(
                {
                    "D": D,
                    "steps": steps,
                    "tracker": tracker,
                    "n": n,
                    "mean_err": e.mean().item(),
                    "mean_abs_err": e.abs().mean().item(),
                    "std": e.std().item(),
                    "nfe": smp.nfe,
                }
            )
            print(f"  tracker D={D} steps={steps} {tracker}: mean {e.mean():.3f} mae {e.abs().mean():.3f}", flush=True)
    return rows


def bench_overhead(steps, n, reps):
    m = conv_model()
    xT = m.schedule.sample_prior((n, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    times = {"untracked": [], "em": [], "corrected": []}
    nfe = {}
    for r in range(reps):  # interleaved, side by side
        for key in times:
            t0 = time.perf_counter()
            smp = dd.sample_sde(
                m,
                xT,
                steps=steps,
                track_logp=key != "untracked",
                tracker="em" if key == "untracked" else key,
                generator=torch.Generator().manual_seed(r),
                progress=False,
            )
            times[key].append(time.perf_counter() - t0)
            nfe[key] = smp.nfe
    base = min(times["untracked"])
    return [
        {"sampler": k, "best_seconds": min(v), "overhead_vs_untracked": min(v) / base - 1, "nfe": nfe[k]}
        for k, v in times.items()
    ]


def bench_digits_gap(n, steps):
    try:
        model = dd.load("digits8")
    except Exception as e:  # noqa: BLE001 - the model may not be shipped yet
        print(f"  digits8 not available ({e}); skipping the gap", flush=True)
        return []
    xT = model.schedule.sample_prior((n, *model.transform.model_shape), generator=torch.Generator().manual_seed(0))
    smp = dd.sample_sde(model, xT, steps=steps, generator=torch.Generator().manual_seed(1), progress=False)
    # Hutchinson with 4 probes (unbiased; its variance is inside gap_se): the exact trace costs 64 VJPs per step
    gap = dd.ode_sde_gap(model, smp, divergence="hutchinson", n_probes=4, generator=torch.Generator().manual_seed(2))
    return [
        {
            "model": "digits8",
            "n": n,
            "steps": steps,
            "gap_mean": gap.mean().item(),
            "gap_std": gap.std().item(),
            "gap_se": gap.std().item() / math.sqrt(n),
            "sde_logp_mean": smp.logp.mean().item(),
        }
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer settings, for a smoke run")
    args = ap.parse_args(argv)
    q = args.quick
    out = {}
    print("== log_prob error vs NFE (exact prior; error in nats per sample)")
    out["log_prob"] = bench_log_prob(64, 16, q) + ([] if q else bench_log_prob(768, 4, q))
    print(
        table(out["log_prob"], ["D", "divergence", "solver", "setting", "nfe", "mean_abs_err", "mean_err", "seconds"])
    )
    print("\n== Hutchinson: VJP versus JVP on the digits UNet (batch 32)")
    out["vjp_vs_jvp"] = bench_vjp_jvp(3 if q else 20)
    print(table(out["vjp_vs_jvp"], ["estimator", "seconds_per_call", "ratio_to_score"]))
    print("\n== SDE tracker error (nats), math.md §1.2b mixture, VP")
    out["tracker"] = bench_tracker(64, 64 if q else 256, (256, 1024) if q else (256, 1024, 4096))
    if not q:
        out["tracker"] += bench_tracker(768, 32, (256, 1024, 4096))
    print(table(out["tracker"], ["D", "steps", "tracker", "n", "mean_err", "mean_abs_err", "std", "nfe"]))
    print("\n== sample_sde wall time with and without tracking (digits UNet, batch 64)")
    out["overhead"] = bench_overhead(64 if q else 256, 64, 2 if q else 5)
    print(table(out["overhead"], ["sampler", "best_seconds", "overhead_vs_untracked", "nfe"]))
    print("\n== digits8: SDE-tracked minus PF-ODE log p of the same samples")
    out["digits_gap"] = bench_digits_gap(16 if q else 64, 256 if q else 1024)
    if out["digits_gap"]:
        print(table(out["digits_gap"], ["model", "n", "steps", "gap_mean", "gap_se", "gap_std", "sde_logp_mean"]))
    path = save("logdensity" + ("_quick" if q else ""), out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
