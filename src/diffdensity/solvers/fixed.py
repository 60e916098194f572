"""Fixed-grid ODE solvers (Euler, Heun, Adams–Bashforth 2) on tuple states; any grid, increasing or decreasing."""
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


class _AB2:
    """Adams–Bashforth 2 on any grid: y_{i+1} = y_i + h_i[(1 + r/2) f_i − (r/2) f_{i−1}], r = h_i/h_{i−1}, the first
    step Euler. Order 2 at one evaluation per step: it reuses the previous step's (the multistep idea of
    DPM-Solver++(2M), Lu et al. 2022, here generic in whatever variable the grid is in)."""

    def __init__(self):
        self.prev = None  # (h_{i−1}, f_{i−1})

    def __call__(self, f, y, l0, l1):
        h, k = l1 - l0, f(l0, y)
        if self.prev is None:
            out = axpy(y, h, k)
        else:
            r = h / self.prev[0]
            out = tuple(a + h * ((1 + 0.5 * r) * b - 0.5 * r * c) for a, b, c in zip(y, k, self.prev[1]))
        self.prev = (h, k)
        return out


ODE_METHODS = {"euler": _euler, "heun": _heun, "ab2": _AB2}


def odeint(func, y0, grid, method: str = "euler", return_path: bool = False, progress=None, callback=None,
           quadrature=None) -> Solution:
    """Integrate dy/dλ = func(λ, y) over ``grid`` with a fixed-step method ("euler": order 1; "heun": order 2, two
    evaluations per step; "ab2": order 2, one evaluation per step, Adams–Bashforth).
    ``callback(i, lam, y)`` runs after step i with the state y at the step's end λ.

    ``quadrature=(k, u, dtau_du)`` (Euler only): the last k components of y are integrals whose rate does not depend
    on them; they are accumulated by the trapezoid rule in the variable u (its values ``u`` and dτ/du at the grid
    nodes) instead of Euler's rectangle rule. The right end's rate is the next step's first evaluation, so the
    cost stays one evaluation per step; the last step, which has no next one, keeps the rectangle rule (an
    extrapolated right end was measured worse on grids whose last step is long in u)."""
    if method not in ODE_METHODS:
        raise ValueError(f"method={method!r}; fixed-grid ODE methods are {sorted(ODE_METHODS)} (or 'dopri5').")
    grid = check_grid(grid)
    if quadrature is not None and method != "euler":
        raise ValueError(f"quadrature= is an option of method='euler' (got {method!r}).")
    step = ODE_METHODS[method] if quadrature is None else _EulerTrapezoid(*quadrature)
    if isinstance(step, type):  # a multistep method keeps its past evaluations: a fresh one per solve
        step = step()
    f = _Counted(func)
    y = as_tuple(y0)
    path = [y] if return_path else []
    lams = grid.tolist()
    it = range(len(lams) - 1)
    if progress is not None:
        it = progress(it)
    for i in it:
        y = step(f, y, lams[i], lams[i + 1]) if quadrature is None else step(f, y, i, lams)
        if callback is not None:
            callback(i, lams[i + 1], y)
        if return_path:
            path.append(y)
    return Solution(y, f.n, path, len(lams) - 1)


class _EulerTrapezoid:
    """Euler for the state, the trapezoid rule in u for the last k (integral) components; first same as last."""

    def __init__(self, k: int, u, dtau_du):
        self.k, self.u, self.w = int(k), torch.as_tensor(u).tolist(), torch.as_tensor(dtau_du).tolist()
        self.rate = None  # the evaluation at the current step's start, made by the previous step

    def __call__(self, f, y, i, lams):
        k1 = self.rate if self.rate is not None else f(lams[i], y)
        y1 = axpy(y, lams[i + 1] - lams[i], k1)
        self.rate = None
        if i + 2 == len(lams):  # the last step: no next evaluation to borrow, Euler's rectangle rule
            return y1
        k2 = self.rate = f(lams[i + 1], y1)  # the next step's first evaluation, at (λ_{i+1}, y1)
        k, du, w0, w1 = self.k, self.u[i + 1] - self.u[i], self.w[i], self.w[i + 1]
        return (*y1[:-k], *(a + 0.5 * du * (b * w0 + c * w1) for a, b, c in zip(y[-k:], k1[-k:], k2[-k:])))
