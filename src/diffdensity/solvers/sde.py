"""Euler–Maruyama for SDEs on tuple states, with optional reuse of the end-of-step evaluation.

An SDE object provides ``evaluate(lam, y) -> ev`` (the one evaluation of a stage), ``drift(ev) -> tuple`` and
``diffusion(ev, dw) -> tuple`` (the increment G(y) dW). If it sets ``uses_end_evaluation = True`` it also gives
``correction(ev0, ev1, dl, dw) -> tuple``, added after the step; the evaluation at the step's end is then
reused by the next step, so a correction costs no extra evaluation (one more at the very end). A correction may
only change components that ``evaluate`` does not read (e.g. a tracked log-density).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .._rng import draw
from .base import as_tuple
from .fixed import Solution, check_grid


def brownian_increments(dw_fine: Tensor, factor: int) -> Tensor:
    """Sum groups of ``factor`` consecutive increments: the same Brownian path on a grid ``factor`` times coarser."""
    n = dw_fine.shape[0]
    if n % factor:
        raise ValueError(f"{n} fine increments do not split into groups of {factor}.")
    return dw_fine.reshape(n // factor, factor, *dw_fine.shape[1:]).sum(1)


def sdeint(sde, y0, grid, generator: torch.Generator | None = None, dw: Tensor | None = None,
           return_path: bool = False, progress=None, callback=None) -> Solution:
    """Euler–Maruyama: y₁ = y₀ + drift·Δλ + G ΔW, ΔW ~ N(0, |Δλ| I) shaped like y[0] (or the given ``dw``).
    ``callback(i, lam, y)`` runs after step i with the state at the step's end."""
    grid = check_grid(grid)
    y = as_tuple(y0)
    lams = grid.tolist()
    n = len(lams) - 1
    if dw is not None and (dw.shape[0] != n or dw.shape[1:] != y[0].shape):
        raise ValueError(f"dw has shape {tuple(dw.shape)}; need ({n}, *{tuple(y[0].shape)}), one increment per step.")
    end_eval = bool(getattr(sde, "uses_end_evaluation", False))
    nfe = 0
    ev = None
    path = [y] if return_path else []
    it = range(n)
    if progress is not None:
        it = progress(it)
    for i in it:
        l0, l1 = lams[i], lams[i + 1]
        h = l1 - l0
        if ev is None:
            ev = sde.evaluate(l0, y)
            nfe += 1
        if dw is None:
            z = draw("normal", y[0].shape, generator, dtype=y[0].dtype, device=y[0].device)
            dwi = math.sqrt(abs(h)) * z
        else:
            dwi = dw[i].to(y[0])
        drift = as_tuple(sde.drift(ev))
        noise = as_tuple(sde.diffusion(ev, dwi))
        y1 = tuple(a + h * b + c for a, b, c in zip(y, drift, noise))
        if end_eval:
            ev1 = sde.evaluate(l1, y1)
            nfe += 1
            y1 = tuple(a + c for a, c in zip(y1, as_tuple(sde.correction(ev, ev1, h, dwi))))
            ev = ev1
        else:
            ev = None
        y = y1
        if callback is not None:
            callback(i, l1, y)
        if return_path:
            path.append(y)
    return Solution(y, nfe, path, n)
