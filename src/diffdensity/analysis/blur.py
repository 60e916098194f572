"""log p of images under growing Gaussian blur (Karczewski et al. 2025a, poster Fig. 5: "adding blur to an image
monotonically increases its estimated density")."""
from __future__ import annotations

import torch
from torch import Tensor

from .common import evaluate_log_prob, figure, resolved, save_figure, settings, write_json

__all__ = ["gaussian_blur", "blur_curve"]


def gaussian_blur(x: Tensor, sigma: float, truncate: float = 4.0) -> Tensor:
    """Separable Gaussian blur of (B, C, H, W) (or (B, H, W)) images with std ``sigma`` pixels, kernel radius
    int(truncate·σ + ½), mirror padding (scipy.ndimage.gaussian_filter mode="mirror"). σ = 0 returns x.
    Written by hand (a 1-D conv per axis) so it works on any float tensor, including model-space values."""
    if sigma < 0:
        raise ValueError(f"sigma={sigma}: need a blur std ≥ 0 (pixels).")
    if sigma == 0:
        return x.clone()
    squeeze = x.ndim == 3
    if squeeze:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"x has shape {tuple(x.shape)}; need (B, C, H, W) or (B, H, W) images.")
    B, C, H, W = x.shape
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = x.reshape(B * C, 1, H, W)
    for dim in (2, 3):
        n = y.shape[dim]
        if r >= n:  # mirror padding needs r < size: reflect the index sequence by hand
            idx = torch.arange(-r, n + r, device=x.device)
            period = 2 * (n - 1) if n > 1 else 1
            idx = torch.remainder(idx, period)
            idx = torch.where(idx >= n, period - idx, idx)
            y = y.index_select(dim, idx)
        else:
            pad = (0, 0, r, r) if dim == 2 else (r, r, 0, 0)
            y = torch.nn.functional.pad(y, pad, mode="reflect")
        kern = k.reshape(1, 1, -1, 1) if dim == 2 else k.reshape(1, 1, 1, -1)
        y = torch.nn.functional.conv2d(y, kern)
    y = y.reshape(B, C, H, W)
    return y[:, 0] if squeeze else y


def blur_curve(model, x: Tensor, sigmas=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0), log_prob_kw: dict | None = None,
               generator=None, out=None, progress=None) -> dict:
    """log p of every image of ``x`` (model space, (B, C, H, W)) blurred with each σ in ``sigmas`` (pixels; blur
    commutes with the affine data transform, so it is applied in model space). Returns {"sigmas", "logp" (S×B),
    "stderr" (S×B, when the settings give standard errors), "mean", "std", "monotone_fraction" (images whose curve
    never falls by a step resolved beyond 2 standard errors), "falling_fraction" (never rises so), "resolved_steps"
    (share of steps resolved), "settings"}; with ``out``: blur.json and blur.png (one thin curve per image with its
    error bars, the mean thick)."""
    sigmas = [float(s) for s in sigmas]
    if not sigmas:
        raise ValueError("sigmas is empty; pass blur strengths in pixels, e.g. (0, 0.5, 1).")
    runs = [evaluate_log_prob(model, gaussian_blur(x, s), log_prob_kw, generator, progress=progress,
                              return_stderr=True) for s in sigmas]
    lp = torch.stack([r[0] for r in runs]).double()
    se = None if runs[0][1] is None else torch.stack([r[1] for r in runs]).double()
    res = {"sigmas": sigmas, "logp": lp.tolist(), "stderr": None if se is None else se.tolist(),
           "median_stderr": None if se is None else float(se.median()), "mean": lp.mean(1).tolist(),
           "std": (lp.std(1) if lp.shape[1] > 1 else torch.zeros(len(sigmas))).tolist(),
           "mean_gain_per_sigma": (lp[-1] - lp[0]).mean().item() / (sigmas[-1] - sigmas[0]) if len(sigmas) > 1 else 0.0,
           **_monotone(lp, se), "n": int(x.shape[0]), "settings": {"log_prob": settings(log_prob_kw)}}
    if out is not None:
        write_json(out, "blur.json", res)
        fig, ax = figure(figsize=(5, 3.4))
        for i in range(lp.shape[1]):
            ax.errorbar(sigmas, lp[:, i].numpy(), yerr=None if se is None else 2 * se[:, i].numpy(), color="C0",
                        alpha=0.25, lw=0.8)
        ax.plot(sigmas, lp.mean(1).numpy(), color="C3", lw=2.5, label="mean")
        ax.set_xlabel("Gaussian blur σ (pixels)")
        ax.set_ylabel("log p (nats)")
        ax.set_title(f"of {lp.shape[1]} curves (±2 s.e.): {res['monotone_fraction']:.0%} never fall, "
                     f"{res['falling_fraction']:.0%} never rise; {res['resolved_steps']:.0%} of steps resolved",
                     fontsize=8)
        ax.legend(fontsize=8)
        save_figure(fig, out, "blur.png")
    return res



def _monotone(lp: Tensor, se: Tensor | None) -> dict:
    """Per image (columns of the S×B ``lp``): whether no step falls (rises) by more than 2 standard errors, and the
    share of steps resolved beyond them."""
    if lp.shape[0] < 2:
        return {"monotone_fraction": 1.0, "falling_fraction": 1.0, "resolved_steps": 0.0}
    a, b = lp[:-1], lp[1:]
    ok = resolved(a, None if se is None else se[:-1], b, None if se is None else se[1:])
    rises, falls = ~((b < a) & ok).any(0), ~((b > a) & ok).any(0)
    return {"monotone_fraction": float(rises.double().mean()), "falling_fraction": float(falls.double().mean()),
            "resolved_steps": float(ok.double().mean())}
