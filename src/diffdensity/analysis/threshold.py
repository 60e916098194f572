"""Threshold sweep: log p of high-density samples (Algorithm 1) per threshold λ, beside PF-ODE and reverse-SDE
samples from the same latents (math.md §1.6, §1.8 item 7)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..sampling import sample_hd, sample_ode, sample_sde
from .common import error_bars, evaluate_log_prob, figure, save_figure, save_image_rows, settings, summary, \
    to_uint8_images, write_json

__all__ = ["threshold_sweep"]


def threshold_sweep(model, x_T: Tensor, thresholds=(8.0, 6.0, 4.0, 2.0, 0.0), steps: int = 256, first: str = "ode",
                    solver: str = "euler", sde_steps: int | None = None, log_prob_kw: dict | None = None,
                    generator: torch.Generator | None = None, out=None, n_images: int = 16, progress=None) -> dict:
    """Sample x_T by sample_hd for each threshold (``steps`` split per Algorithm 1, ``first`` leg, ``solver``), by the
    PF-ODE (``steps``) and by the reverse SDE (``sde_steps``, default ``steps``), all from the same latents; log p of
    every result by the PF-ODE encoder (``log_prob_kw``). Returns {"thresholds", "hd": {λ: summary + per-sample},
    "pf_ode", "sde", "settings"}; with ``out``: threshold_sweep.json, threshold_sweep.png (mean ± std per threshold,
    baselines as lines) and threshold_grid.png (rows of samples per threshold)."""
    thresholds = [float(t) for t in thresholds]
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    sets = {}
    for thr in thresholds:
        sets[f"hd {thr:g}"] = sample_hd(model, x_T, thr, steps=steps, first=first, solver=solver, generator=g,
                                        progress=progress).x
    sets["pf_ode"] = sample_ode(model, x_T, steps=steps, solver=solver, progress=progress).x
    sets["sde"] = sample_sde(model, x_T, steps=sde_steps or steps, track_logp=False, generator=g,
                             progress=progress).x
    runs = {k: evaluate_log_prob(model, x, log_prob_kw, generator=g, progress=progress, return_stderr=True)
            for k, x in sets.items()}

    def entry(k):
        lp, se = runs[k]
        return {**summary(lp), **error_bars(lp, se), "logp": lp.tolist(), "stderr": None if se is None else se.tolist()}
    res = {
        "thresholds": thresholds,
        "hd": {f"{t:g}": entry(f"hd {t:g}") for t in thresholds},
        "pf_ode": entry("pf_ode"),
        "sde": entry("sde"),
        "settings": {"steps": steps, "first": first, "solver": solver, "sde_steps": sde_steps or steps,
                     "n": int(x_T.shape[0]), "log_prob": settings(log_prob_kw)},
    }
    if out is not None:
        write_json(out, "threshold_sweep.json", res)
        fig, ax = figure(figsize=(5, 3.4))
        mean = [res["hd"][f"{t:g}"]["mean"] for t in thresholds]
        std = [res["hd"][f"{t:g}"]["std"] for t in thresholds]
        ax.errorbar(thresholds, mean, yerr=std, fmt="o-", capsize=3, label="high-density sampler")
        for name, c in (("pf_ode", "C1"), ("sde", "C2")):
            ax.axhline(res[name]["mean"], color=c, ls="--", label=f"{name.replace('_', '-').upper()} samples")
        ax.set_xlabel("threshold λ (switch to the HD-ODE)")
        ax.set_ylabel("log p (nats), mean ± std")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
        save_figure(fig, out, "threshold_sweep.png")
        rows = {("thr " + k[3:] if k.startswith("hd ") else k): to_uint8_images(model, x[:n_images])
                for k, x in sets.items()}
        save_image_rows(rows, out, "threshold_grid.png")
    res["samples"] = sets
    return res
