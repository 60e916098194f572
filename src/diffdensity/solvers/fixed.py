"""Fixed-grid ODE solvers (Euler, Heun) on tuple states; any grid, increasing or decreasing."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Solution:
    """Final state ``y`` (tuple), number of vector-field evaluations ``nfe``, optional ``path`` (list of states)."""

    y: tuple
    nfe: int
    path: list = field(default_factory=list)
    steps: int = 0


def as_tuple(y):
    return (y,) if isinstance(y, Tensor) else tuple(y)


def axpy(y, h, k):
    """y + h * k elementwise over tuples; h a python float or 0-d tensor."""
    return tuple(a + h * b for a, b in zip(y, k))


def check_grid(grid) -> Tensor:
    grid = torch.as_tensor(grid)
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"grid must be a 1-D tensor of at least 2 λ values, got shape {tuple(grid.shape)}.")
    if not torch.isfinite(grid).all():
        raise ValueError("grid contains NaN or inf.")
    d = grid[1:] - grid[:-1]
    if not ((d > 0).all() or (d < 0).all()):
        raise ValueError("grid must be strictly monotone (all increasing or all decreasing).")
    return grid


class _Counted:
    def __init__(self, func):
        self.func, self.n = func, 0

    def __call__(self, lam, y):
        self.n += 1
        return as_tuple(self.func(lam, y))


def _euler(f, y, l0, l1):
    return axpy(y, l1 - l0, f(l0, y))


def _heun(f, y, l0, l1):
    h = l1 - l0
    k1 = f(l0, y)
    k2 = f(l1, axpy(y, h, k1))
    return tuple(a + 0.5 * h * (b + c) for a, b, c in zip(y, k1, k2))


ODE_METHODS = {"euler": _euler, "heun": _heun}


def odeint(func, y0, grid, method: str = "euler", return_path: bool = False, progress=None, callback=None) -> Solution:
    """Integrate dy/dλ = func(λ, y) over ``grid`` with a fixed-step method ("euler": order 1, "heun": order 2).
    ``callback(i, lam, y)`` runs after step i with the state y at the step's end λ."""
    if method not in ODE_METHODS:
        raise ValueError(f"method={method!r}; fixed-grid ODE methods are {sorted(ODE_METHODS)} (or 'dopri5').")
    grid = check_grid(grid)
    step = ODE_METHODS[method]
    f = _Counted(func)
    y = as_tuple(y0)
    path = [y] if return_path else []
    lams = grid.tolist()
    it = range(len(lams) - 1)
    if progress is not None:
        it = progress(it)
    for i in it:
        y = step(f, y, lams[i], lams[i + 1])
        if callback is not None:
            callback(i, lams[i + 1], y)
        if return_path:
            path.append(y)
    return Solution(y, f.n, path, len(lams) - 1)
