"""Shared pieces of the analyses: log p of finished samples, images for files and plots, JSON and figure output."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._io_utils import atomic_write, write_json as _write_json
from ..solvers import resolve
from ..likelihood import log_prob, stderr_available

__all__ = ["LOG_PROB_DEFAULTS", "evaluate_log_prob", "resolved", "error_bars", "to_uint8_images", "write_json", "figure", "save_figure",
           "save_image_rows", "summary"]

# log p of finished samples: the PF-ODE encoder (math.md §1.1) by dopri5 with the quadrature scheme (§I.4) at 64
# nodes × 4 Rademacher probes — every value with its standard error, about as cheap as Heun on 64 steps with 8 probes
# was; pass divergence="exact" (D VJPs per evaluation) where that is affordable. The settings go into every JSON.
LOG_PROB_DEFAULTS = {"divergence": "hutchinson", "nodes": 64}


def evaluate_log_prob(model, x: Tensor, log_prob_kw: dict | None = None, generator=None, batch_size: int = 64,
                      progress=None, return_stderr: bool = False):
    """dd.log_prob of ``x`` in batches with ``log_prob_kw`` (default :data:`LOG_PROB_DEFAULTS`: dopri5 with the
    quadrature scheme, math.md §I.4) -> (batch,); with ``return_stderr`` also each value's standard error, or None
    where the settings give none (a fixed-step Hutchinson solve)."""
    kw = dict(LOG_PROB_DEFAULTS if log_prob_kw is None else log_prob_kw)
    if resolve(kw.get("solver", "dopri5")).adaptive:
        kw.pop("steps", None)
    se = return_stderr and stderr_available(**kw)
    out = log_prob(model, x, generator=generator, progress=progress, batch_size=batch_size, return_stderr=se, **kw)
    if not return_stderr:
        return out
    return out if se else (out, None)


def error_bars(lp: Tensor, se: Tensor | None) -> dict:
    """The per-image error bars of a set of log p values: their median standard error and the fraction of pairs of
    images whose difference is resolved beyond 2 combined standard errors (None without standard errors)."""
    if se is None:
        return {"median_stderr": None, "resolved_pairs": None}
    i, j = torch.triu_indices(lp.numel(), lp.numel(), 1)
    ok = resolved(lp[i], se[i], lp[j], se[j]) if i.numel() else torch.ones(0, dtype=torch.bool)
    return {"median_stderr": float(se.double().median()), "resolved_pairs": float(ok.double().mean()) if i.numel()
            else None}


def resolved(a: Tensor, sa: Tensor | None, b: Tensor, sb: Tensor | None, k: float = 2.0) -> Tensor:
    """Whether b − a is resolved beyond ``k`` combined standard errors (every difference is, without errors)."""
    if sa is None or sb is None:
        return torch.ones_like(a, dtype=torch.bool)
    return (b - a).abs() > k * (sa.double() ** 2 + sb.double() ** 2).sqrt()


def settings(log_prob_kw: dict | None) -> dict:
    """JSON-able log-density settings (callables such as a prior are named, not serialised)."""
    kw = dict(LOG_PROB_DEFAULTS if log_prob_kw is None else log_prob_kw)
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)) for k, v in kw.items()}


def to_uint8_images(model, x: Tensor) -> np.ndarray:
    """Model-space samples -> (B, H, W) or (B, H, W, C) uint8 images: through the model's data transform
    (rounded to its levels, scaled to 0..255) when it has one, otherwise x is read as values in [−1, 1]."""
    t = getattr(model, "transform", None)
    if callable(getattr(model, "decode", None)):  # a latent pipeline (adapters.PipelineModel): through its VAE
        d = model.decode(x).cpu().float()
    elif t is not None and getattr(t, "levels", None):
        d = t.inverse(x.detach().cpu(), round=True).float() * (255.0 / (t.levels - 1))
    else:
        d = (x.detach().cpu().float().clamp(-1, 1) + 1) * 127.5
    d = d.round().clamp(0, 255).to(torch.uint8)
    if d.ndim == 4 and d.shape[1] in (1, 3) and d.shape[-1] not in (1, 3):  # (B, C, H, W) -> (B, H, W, C)
        d = d.permute(0, 2, 3, 1)
    if d.ndim == 4 and d.shape[-1] == 1:
        d = d[..., 0]
    if d.ndim == 2:  # flat data: one row per sample
        d = d[:, None, :]
    return d.numpy()


def summary(v: Tensor) -> dict:
    """mean, std, standard error, min, max of a (batch,) tensor."""
    v = v.detach().double()
    n = v.numel()
    std = float(v.std()) if n > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "sem": std / math.sqrt(n) if n else float("nan"),
            "min": float(v.min()), "max": float(v.max()), "n": n}


def write_json(out, name: str, payload: dict) -> Path | None:
    """``payload`` as OUT/name (atomic; nothing without ``out``)."""
    if out is None:
        return None
    return _write_json(Path(out) / name, payload)


def figure(*args, **kw):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kw)


def save_figure(fig, out, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path


def save_image_rows(rows: dict[str, np.ndarray], out, name: str, scale: int = 4) -> Path | None:
    """One row of uint8 images per label (a grid PNG, labels on the left); None unless the images are 2-D."""
    from PIL import Image, ImageDraw

    first = next(iter(rows.values()))
    if first.ndim < 3 or first.shape[1] < 2:
        return None
    h, w = first.shape[1:3]
    pad, label_w = 1, 64
    n = max(r.shape[0] for r in rows.values())
    color = first.ndim == 4
    grid = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, imgs in enumerate(rows.values()):
        for j, im in enumerate(imgs):
            grid[pad + i * (h + pad): pad + i * (h + pad) + h, pad + j * (w + pad): pad + j * (w + pad) + w] = \
                im if color else im[..., None]
    img = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (img.width + label_w, img.height), "white")
    canvas.paste(img, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    for i, label in enumerate(rows):
        draw.text((2, i * (h + pad) * scale + (h * scale) // 2 - 5), str(label), fill="black")
    path = Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
    return path
