"""Figures shared by the CLI, the analyses and the demo: sample grids labelled with each sample's log-density."""
from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["sample_grid"]


def sample_grid(model, x: torch.Tensor, logp: torch.Tensor | None, path, max_n: int = 64, title: str = "") -> bool:
    """Write model-space samples as a PNG grid, highest log p first, each titled with its log p (nats); images
    through the model's data transform, 2-D points as a scatter coloured by log p. False if x has no picture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = x.detach().cpu()
    lp = None if logp is None else logp.detach().cpu()
    if lp is not None:
        order = torch.argsort(lp, descending=True)
        x, lp = x[order], lp[order]
    t = getattr(model, "transform", None)
    if x.ndim == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        sc = ax.scatter(x[:, 0], x[:, 1], s=4, **({} if lp is None else {"c": lp.numpy(), "cmap": "viridis"}))  # type: ignore[arg-type]  # one kwargs dict of mixed values vs matplotlib's per-argument stubs
        if lp is not None:
            fig.colorbar(sc, ax=ax, label="log p (nats)")
        ax.set_title(title or f"{x.shape[0]} samples")
    elif x.ndim == 4 and x.shape[1] in (1, 3) and t is not None and getattr(t, "levels", None):
        x, lp = x[:max_n], None if lp is None else lp[:max_n]
        img = t.inverse(x, round=True).reshape(x.shape[0], *t.model_shape).float() / (t.levels - 1)
        cols = int(math.ceil(math.sqrt(x.shape[0])))
        rows = int(math.ceil(x.shape[0] / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < x.shape[0]:
                im = img[i].permute(1, 2, 0).numpy()
                ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
                if lp is not None:
                    ax.set_title(f"{lp[i]:.1f}", fontsize=7)
        if title:
            fig.suptitle(title, fontsize=9)
    else:
        return False
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def alignment_scatter(with_score, without, corr: float, fraction: float, path) -> Path:
    """Score alignment by Eq 12 against Eq 13, one point per latent, with the diagonal; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = with_score.detach().cpu().numpy(), without.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(a, b, s=8)
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("SA, Eq 12 (score at target)")
    ax.set_ylabel("SA, Eq 13 (Hutchinson)")
    ax.set_title(f"corr {corr:.3f}, aligned {fraction:.0%}")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
