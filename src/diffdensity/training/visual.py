"""Sample grids written during training: an image grid for image data, a scatter plot for 2-D data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write

__all__ = ["save_samples_png", "image_grid"]


def image_grid(images: torch.Tensor, levels: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) data units 0..levels-1 -> (rows·(H+pad), cols·(W+pad), C) uint8 grid (C = 1 or 3)."""
    n, c, h, w = images.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    x = (images.float().clamp(0, levels - 1) / (levels - 1) * 255).round().to(torch.uint8).numpy()
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = x[i].transpose(1, 2, 0)
    return grid


def save_samples_png(ds, z: torch.Tensor, path) -> bool:
    """Write model-space samples ``z`` of dataset ``ds`` as a PNG at ``path``; False if the shape has no picture."""
    path = Path(path)
    shape = tuple(ds.model_shape)
    if ds.levels is not None and len(shape) == 3 and shape[0] in (1, 3):
        from PIL import Image

        x = ds.transform.inverse(z, round=True).reshape(z.shape[0], *shape)
        grid = image_grid(x, ds.levels)
        scale = max(1, 256 // grid.shape[0])
        im = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
        if scale > 1:
            im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
        atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))
        return True
    if ds.levels is None and shape == (2,):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = ds.transform.inverse(z).reshape(-1, 2).numpy()
        ref = ds.test[:2000].reshape(-1, 2).numpy()
        fig, ax = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
        ax[0].scatter(ref[:, 0], ref[:, 1], s=2, alpha=0.5)
        ax[0].set_title("data (test)")
        ax[1].scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, color="C1")
        ax[1].set_title(f"samples ({len(x)})")
        for a in ax:
            a.set_aspect("equal")
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=80))
        plt.close(fig)
        return True
    return False
