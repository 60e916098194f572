"""log p versus information content: PNG size (fixed compression level) and zlib size, with Pearson and Spearman
correlations (Karczewski et al. 2025a, Fig. 6 of the poster: "log-density correlates with .png size")."""
from __future__ import annotations

import io
import zlib

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from .common import error_bars, evaluate_log_prob, figure, save_figure, settings, summary, to_uint8_images, write_json

__all__ = ["png_size", "zlib_size", "correlations", "compression_vs_logp"]


def png_size(images: np.ndarray, level: int = 9) -> np.ndarray:
    """Bytes of each uint8 image (B, H, W[, C]) written as PNG by Pillow at ``compress_level`` (no optimiser)."""
    from PIL import Image

    out = []
    for im in np.asarray(images, dtype=np.uint8):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG", compress_level=int(level), optimize=False)
        out.append(buf.tell())
    return np.asarray(out)


def zlib_size(images: np.ndarray, level: int = 9) -> np.ndarray:
    """Bytes of zlib.compress(raw pixels, ``level``) of each uint8 image."""
    return np.asarray([len(zlib.compress(np.ascontiguousarray(im, dtype=np.uint8).tobytes(), int(level)))
                       for im in np.asarray(images, dtype=np.uint8)])


def correlations(a, b, ci: bool = False, resamples: int = 1000, seed: int = 0) -> dict:
    """Pearson and Spearman correlation of two sequences (with their p-values, scipy.stats); with ``ci`` also their
    95% bootstrap intervals over the items (``resamples`` seeded resamples, percentile method)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size < 3:
        raise ValueError(f"need two sequences of equal length ≥ 3; got {a.shape} and {b.shape}.")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"pearson": float("nan"), "pearson_p": float("nan"), "spearman": float("nan"),
                "spearman_p": float("nan"), "n": int(a.size)}
    p = stats.pearsonr(a, b)
    s = stats.spearmanr(a, b)
    out: dict = {"pearson": float(p[0]), "pearson_p": float(p[1]), "spearman": float(s[0]), "spearman_p": float(s[1]),
           "n": int(a.size)}
    if ci:
        idx = np.random.default_rng(seed).integers(0, a.size, (int(resamples), a.size))
        boot = [(np.corrcoef(a[i], b[i])[0, 1], stats.spearmanr(a[i], b[i])[0]) for i in idx
                if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0]
        lo, hi = np.nanpercentile(np.asarray(boot), [2.5, 97.5], axis=0)
        out.update(pearson_ci=[float(lo[0]), float(hi[0])], spearman_ci=[float(lo[1]), float(hi[1])])
    return out


def compression_vs_logp(model, sets: dict[str, Tensor], logp: dict[str, Tensor] | None = None, level: int = 9,
                        log_prob_kw: dict | None = None, generator=None, out=None, progress=None) -> dict:
    """For each named set of model-space images (e.g. "samples", "held-out"): log p (computed by the PF-ODE encoder
    unless given in ``logp``), PNG size at ``level`` and zlib size of the images in data units; correlations of
    log p with both sizes per set and pooled. With ``out``: compression.json and compression.png (scatter)."""
    if not sets:
        raise ValueError("sets is empty; pass e.g. {'samples': x, 'held-out': y} in model space.")
    given = sorted(logp or {})
    res: dict = {"analysis": "png", "level": int(level), "sets": {}, "log_prob": settings(log_prob_kw), "logp_given_for": given}
    pooled: dict[str, list[float]] = {"logp": [], "png": [], "zlib": []}
    for name, x in sets.items():
        lp, se = (logp or {}).get(name), None
        if lp is None:
            lp, se = evaluate_log_prob(model, x, log_prob_kw, generator, progress=progress, return_stderr=True)
        lp = torch.as_tensor(lp).double()
        imgs = to_uint8_images(model, x)
        png, zl = png_size(imgs, level), zlib_size(imgs, level)
        res["sets"][name] = {"logp": summary(lp), "png_bytes": summary(torch.as_tensor(png)),
                             "zlib_bytes": summary(torch.as_tensor(zl)), **error_bars(lp, se),
                             "logp_vs_png": correlations(lp.numpy(), png, ci=True),
                             "logp_vs_zlib": correlations(lp.numpy(), zl, ci=True),
                             "per_sample": {"logp": lp.tolist(), "stderr": None if se is None else se.tolist(),
                                            "png": png.tolist(), "zlib": zl.tolist()}}
        pooled["logp"] += lp.tolist()
        pooled["png"] += png.tolist()
        pooled["zlib"] += zl.tolist()
    res["pooled"] = {"logp_vs_png": correlations(pooled["logp"], pooled["png"]),
                     "logp_vs_zlib": correlations(pooled["logp"], pooled["zlib"])}
    if out is not None:
        write_json(out, "compression.json", res)
        fig, axes = figure(1, 2, figsize=(8, 3.4))
        for ax, key, label in ((axes[0], "png", f"PNG size (bytes, level {level})"),
                               (axes[1], "zlib", f"zlib size (bytes, level {level})")):
            for i, (name, r) in enumerate(res["sets"].items()):
                ax.scatter(r["per_sample"][key], r["per_sample"]["logp"], s=10, alpha=0.7, color=f"C{i}",
                           label=f"{name} (ρ_s={r['logp_vs_' + key]['spearman']:.2f})")
            c = res["pooled"]["logp_vs_" + key]
            ax.set_title(f"pooled: Pearson {c['pearson']:.2f}, Spearman {c['spearman']:.2f}", fontsize=9)
            ax.set_xlabel(label)
            ax.set_ylabel("log p (nats)")
            ax.legend(fontsize=7)
        save_figure(fig, out, "compression.png")
    return res
