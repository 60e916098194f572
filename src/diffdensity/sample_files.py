"""The files of a sampling run: samples.npz, a labelled grid (samples.png) and summary.json."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._io_utils import write_json, write_npz

__all__ = ["write_sample_files"]


def _arrays(model, x, logp, nfe, stderr=None) -> dict:
    """x (model space), nfe, logp if tracked (with logp_stderr where known) and x_data (integers in data units) for
    data with levels."""
    arrays = {"x": x.numpy(), "nfe": np.array(nfe)}
    if logp is not None:
        arrays["logp"] = logp.numpy()
    if logp is not None and stderr is not None:
        arrays["logp_stderr"] = stderr.numpy()
    t = getattr(model, "transform", None)
    if t is not None and getattr(t, "levels", None):
        arrays["x_data"] = t.inverse(x, round=True).numpy().astype(np.uint8 if t.levels <= 256 else np.int32)
    return arrays


def write_sample_files(model, samples, out, summary: dict) -> dict:
    """OUT/samples.npz, OUT/samples.png (highest log p first) and OUT/summary.json (``summary`` with the NFE,
    log p statistics and the picture) -> the summary written."""
    from .plots import sample_grid

    out = Path(out)
    x = samples.x.detach().cpu()
    logp = None if samples.logp is None else samples.logp.detach().cpu()
    se = None if samples.stderr is None else samples.stderr.detach().cpu()
    write_npz(out / "samples.npz", **_arrays(model, x, logp, samples.nfe, se))
    summary = dict(summary)
    if logp is not None:
        summary.update(logp_mean=float(logp.mean()), logp_min=float(logp.min()), logp_max=float(logp.max()))
    if logp is not None and se is not None:
        summary["logp_stderr_median"] = float(se.double().quantile(0.5))
    if sample_grid(model, x, logp, out / "samples.png"):
        summary["png"] = str(out / "samples.png")
    write_json(out / "summary.json", summary)
    return summary
