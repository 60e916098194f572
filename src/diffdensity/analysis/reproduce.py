"""The reference repository's three experiments (sampling.py, guidance.py and score_alignment.py of
rafalkarczewski/diffusion-density) on one score model, printing the same kind of summary lines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._io_utils import write_json
from ..alignment import alignment_fraction, score_alignment
from ..likelihood import ode_sde_gap
from ..sampling import sample_hd, sample_sde
from .common import evaluate_log_prob
from .guidance import guidance_sweep

__all__ = ["reproduce", "EXPERIMENTS", "REPRODUCE_LOGP"]

EXPERIMENTS = ("sampling", "guidance", "alignment")
# log p of finished samples in these experiments: Heun on 64 steps, Hutchinson with 4 probes
REPRODUCE_LOGP = {"divergence": "hutchinson", "n_probes": 4, "solver": "heun", "steps": 64}


def _sampling(m, x_T: Tensor, steps: int, g, echo) -> dict:
    """sampling.py: Theorem-1 tracking against the ODE, then high-density sampling per threshold."""
    smp = sample_sde(m, x_T, steps=steps, generator=g(1))
    gap = ode_sde_gap(m, smp, generator=g(2), **REPRODUCE_LOGP)
    assert smp.logp is not None  # sample_sde tracks log p
    res: dict = {"sde_tracked_logp": float(smp.logp.mean()), "ode_logp": float((smp.logp - gap).mean()),
           "gap": float(gap.mean()), "nfe": smp.nfe, "hd": {}}
    echo(f"SDE sampling: average tracked logp {res['sde_tracked_logp']:.2f}, "
         f"ODE estimate of the same samples {res['ode_logp']:.2f} (difference {res['gap']:+.2f})")
    for thr in (8.0, 6.0, 4.0, 2.0):
        x = sample_hd(m, x_T, thr, steps=steps, progress=False).x
        res["hd"][f"{thr:g}"] = float(evaluate_log_prob(m, x, REPRODUCE_LOGP, generator=g(3)).mean())
        echo(f"HD sampling with threshold {thr:g}: average logp {res['hd'][f'{thr:g}']:.2f}")
    return res


def _guidance(m, x_T: Tensor, steps: int, g, echo) -> dict:
    """guidance.py: prior, density and stochastic density guidance."""
    res = guidance_sweep(m, x_T, (0.3, 0.5, 0.6), steps=64, noise="late", log_prob_kw=REPRODUCE_LOGP, generator=g(4))
    for kind, rows in res["results"].items():
        for r in rows:
            tail = f"average logp: {r['mean']:.2f}" if "mean" in r else \
                f"infeasible (feasible q ≤ {r['feasible_q']:.3g})"
            echo(f"{kind.capitalize()} guidance with q={r['q']:g}; {tail}")
    return res


def _alignment(m, x_T: Tensor, steps: int, g, echo) -> dict:
    """score_alignment.py: Eq 12 against Eq 13 at λ = 1."""
    a = score_alignment(m, x_T, 1.0, "score", steps=steps)
    b = score_alignment(m, x_T, 1.0, "no_score", steps=steps, generator=g(5))
    corr = float(np.corrcoef(a.cpu().numpy(), b.cpu().numpy())[0, 1])
    echo(f"Correlation of score alignment with and without score: {corr:.4f}")
    echo(f"Score alignment holds for {alignment_fraction(a):.1%} of latents (Eq 12), "
         f"{alignment_fraction(b):.1%} (Eq 13)")
    return {"correlation": corr, "eq12": a.tolist(), "eq13": b.tolist(), "fraction_eq12": alignment_fraction(a)}


def reproduce(model, x_T: Tensor, experiments=EXPERIMENTS, steps: int = 256, seed: int = 0, out=None,
              echo=print) -> dict:
    """Run ``experiments`` (of :data:`EXPERIMENTS`) from the latents ``x_T``, ``echo`` their summary lines and, with
    ``out``, write one JSON per experiment; returns experiment -> results."""
    run = {"sampling": _sampling, "guidance": _guidance, "alignment": _alignment}
    unknown = [e for e in experiments if e not in run]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {', '.join(EXPERIMENTS)}.")
    g = lambda k: torch.Generator(device=x_T.device).manual_seed(seed + k)  # noqa: E731
    results = {}
    for name in experiments:
        results[name] = run[name](model, x_T, steps, g, echo)
        if out is not None:
            write_json(Path(out) / f"{name}.json", results[name])
    return results
