"""The second paper's q sweep as an analysis: density guidance beside prior guidance (and optionally stochastic
density guidance) on the same latents, log p of the results, sample rows per q (Karczewski et al. 2025b)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..guidance import InfeasibleGuidance
from ..registry import GUIDANCE
from ..sampling import sample
from .common import evaluate_log_prob, figure, save_figure, save_image_rows, settings, summary, to_uint8_images, \
    write_json

__all__ = ["guidance_sweep"]

CONVENTION = ("higher q = higher log-density; prior guidance uses the latent norm sigma_T * chi_D^-1(1 - q) "
              "(the reference's norm quantile is 1 - q)")


def _samplers(model, x_T: Tensor, steps: int, noise, seed: int, progress) -> dict:
    """kind -> (q -> Samples) for every registered guidance rule (stochastic ones only with ``noise``, 2× steps)."""
    runs = {}
    for rule in GUIDANCE:
        if not GUIDANCE.get(rule).meta.get("stochastic"):
            runs[rule] = lambda q, r=rule: sample(model, x_T, f"{r}-guided", steps, q=q, progress=progress)
        elif noise:
            runs[f"stochastic-{noise}"] = lambda q, r=rule: sample(
                model, x_T, f"{r}-guided", 2 * steps, torch.Generator().manual_seed(seed), q=q, noise=noise,
                progress=progress)
    return runs


def guidance_sweep(model, x_T: Tensor, qs=(0.3, 0.4, 0.5, 0.6, 0.7), steps: int = 64, noise: str | None = None,
                   log_prob_kw: dict | None = None, generator: torch.Generator | None = None, out=None,
                   n_images: int = 12, progress=None) -> dict:
    """For each q and each sampler (density, prior, and stochastic density guidance with ``noise`` if given):
    samples from the same latents and their log p by the PF-ODE encoder (``log_prob_kw``). An infeasible q is
    recorded with the λ reached and the feasible q found, not raised. With ``out``: guidance.json, logp_vs_q.png
    and one image-row grid per sampler."""
    qs = [float(q) for q in qs]
    if not qs or any(not 0 < q < 1 for q in qs):
        raise ValueError(f"q={qs}: every q must lie strictly between 0 and 1.")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    samplers = _samplers(model, x_T, steps, noise, seed, progress)
    res = {"analysis": "guidance", "qs": qs, "steps": steps, "n": int(x_T.shape[0]), "convention": CONVENTION,
           "log_prob": settings(log_prob_kw), "results": {}}
    images: dict = {}
    for kind, run in samplers.items():
        rows, images[kind] = [], {}
        for q in qs:
            try:
                x = run(q).x
            except InfeasibleGuidance as e:
                rows.append({"q": q, "infeasible": str(e), "lam": e.lam, "feasible_q": e.feasible_q})
                continue
            lp = evaluate_log_prob(model, x, log_prob_kw, generator=torch.Generator().manual_seed(seed + 1),
                                   progress=progress)
            rows.append({"q": q, **summary(lp)})
            images[kind][f"q={q:g}"] = to_uint8_images(model, x[:n_images])
        res["results"][kind] = rows
    if out is not None:
        write_json(out, "guidance.json", res)
        fig, ax = figure(figsize=(5, 3.4))
        for kind, rows in res["results"].items():
            ok = [r for r in rows if "mean" in r]
            if ok:
                ax.errorbar([r["q"] for r in ok], [r["mean"] for r in ok], yerr=[r["sem"] for r in ok], marker="o",
                            capsize=3, label=kind)
        ax.set_xlabel("q (higher = higher log-density)")
        ax.set_ylabel("mean log p (nats)")
        ax.legend(fontsize=8)
        save_figure(fig, out, "logp_vs_q.png")
        for kind, rows in images.items():
            if rows:
                save_image_rows(rows, out, f"{kind}_grid.png")
    return res
