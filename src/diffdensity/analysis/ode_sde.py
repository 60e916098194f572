"""SDE-tracked versus PF-ODE log p of the same samples (Karczewski et al. 2025a, Fig. 4; math.md §1.3): with an
approximate score the tracked value estimates log p^SDE + X with E X ≥ 0, the PF-ODE gives log p^ODE."""
from __future__ import annotations

import torch
from torch import Tensor

from ..sampling import sample_sde
from .common import evaluate_log_prob, figure, save_figure, settings, summary, write_json

__all__ = ["ode_vs_sde"]


def ode_vs_sde(models: dict, x_T: Tensor, steps: int = 1024, tracker: str = "corrected",
               log_prob_kw: dict | None = None, generator: torch.Generator | None = None, out=None,
               progress=None) -> dict:
    """For each named model: reverse-SDE samples from the same latents ``x_T`` with log p tracked at no extra cost
    (``tracker``; the same Brownian increments for every model), and the PF-ODE log p of those samples. Returns per model the two (batch,) lists, their gap
    (tracked − ODE) summarised, and the correlation; with ``out``: ode_sde.json and ode_sde.png (scatter per model,
    the diagonal drawn); ``res["samples"]`` (not in the JSON) holds the samples."""
    if not models:
        raise ValueError("models is empty; pass e.g. {'digits8': dd.load('digits8')}.")
    from .compression import correlations

    samples = {}
    res: dict = {"steps": steps, "tracker": tracker, "log_prob": settings(log_prob_kw), "models": {}}
    seed = int(torch.randint(0, 2**31, (1,), generator=generator)) if generator is not None else 0
    for name, model in models.items():
        g = torch.Generator().manual_seed(seed)  # the same Brownian path for every model
        smp = sample_sde(model, x_T, steps=steps, tracker=tracker, generator=g, progress=progress)
        ode = evaluate_log_prob(model, smp.x, log_prob_kw, generator=g, progress=progress).double()
        assert smp.logp is not None  # sample_sde tracks log p
        sde = smp.logp.double()
        samples[name] = smp.x
        gap = sde - ode
        res["models"][name] = {"sde_tracked": summary(sde), "pf_ode": summary(ode), "gap": summary(gap),
                               "correlation": correlations(sde.numpy(), ode.numpy()) if sde.numel() >= 3 else None,
                               "per_sample": {"sde_tracked": sde.tolist(), "pf_ode": ode.tolist()}, "nfe": smp.nfe}
    if out is not None:
        write_json(out, "ode_sde.json", res)
        k = len(res["models"])
        fig, axes = figure(1, k, figsize=(3.8 * k, 3.6), squeeze=False)
        for ax, (name, r) in zip(axes[0], res["models"].items()):
            a, b = r["per_sample"]["pf_ode"], r["per_sample"]["sde_tracked"]
            ax.scatter(a, b, s=10, alpha=0.7)
            lo, hi = min(a + b), max(a + b)
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
            ax.set_xlabel("log p^ODE (PF-ODE encoder)")
            ax.set_ylabel("log p^SDE (tracked, Theorem 1)")
            ax.set_title(f"{name}: gap {r['gap']['mean']:.1f} ± {r['gap']['sem']:.1f} nats", fontsize=9)
        save_figure(fig, out, "ode_sde.png")
    res["samples"] = samples
    return res
