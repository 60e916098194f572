"""Score alignment of a model over latents (Karczewski et al. 2025b, math.md §2): Eq 12 (with the target score)
beside Eq 13 (without: Hutchinson), their correlation and the fraction of latents with SA > 0."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._io_utils import write_json, write_npz
from ..alignment import alignment_fraction, score_alignment

__all__ = ["alignment_study"]


def alignment_study(model, x_T: Tensor, lambda_target: float = 1.0, steps: int = 1024, n_probes: int = 1,
                    generator: torch.Generator | None = None, out=None, meta: dict | None = None) -> dict:
    """Both estimators on ``x_T`` -> summary; with ``out``: alignment.npz, alignment.png and summary.json (``meta``,
    e.g. the model name and seed, recorded first)."""
    from ..plots import alignment_scatter

    with_score = score_alignment(model, x_T, lambda_target, "score", steps=steps)
    without = score_alignment(model, x_T, lambda_target, "no_score", steps=steps, generator=generator,
                              n_probes=n_probes)
    corr = float(np.corrcoef(with_score.cpu().numpy(), without.cpu().numpy())[0, 1])
    fr, fr13 = alignment_fraction(with_score), alignment_fraction(without)
    summary = {**(meta or {}), "n": int(x_T.shape[0]), "lambda_target": lambda_target, "steps": steps, "n_probes": n_probes,
               "correlation": corr, "fraction_aligned": fr, "fraction_aligned_eq13": fr13,
               "mean_sa": float(with_score.mean())}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_npz(out / "alignment.npz", score=with_score.cpu().numpy(), no_score=without.cpu().numpy())
        summary["plot"] = str(alignment_scatter(with_score, without, corr, fr, out / "alignment.png"))
        write_json(out / "summary.json", summary)
    return summary
