"""The fixed-grid driver: any :class:`~diffdensity.solvers.base.FixedStepSolver` on tuple states, any grid,
increasing or decreasing."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, cast

import torch
from torch import Tensor

from .base import FixedStepSolver, Problem, as_tuple, axpy

__all__ = ["Solution", "odeint", "check_grid", "integral_weights", "as_tuple", "axpy"]


@dataclass
class Solution:
    """Final state ``y`` (tuple), number of vector-field evaluations ``nfe``, optional ``path`` (list of states)."""

    y: tuple
    nfe: int
    path: list = field(default_factory=list)
    steps: int = 0


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


def odeint(func, y0, grid, method="euler", return_path: bool = False, progress=None, callback=None,
           quadrature=None, problem: Problem | None = None) -> Solution:
    """Integrate dy/dτ = func(τ, y) over ``grid`` with a fixed-step ``method`` (a registered name or a
    :class:`~diffdensity.solvers.base.FixedStepSolver`). ``callback(i, tau, y)`` runs after step i with the state at
    the step's end. ``quadrature=(k, u, dtau_du)``: the last k components of y are integrals accumulated by the
    solver's quadrature in the variable u (Euler's trapezoid rule); ``problem`` gives the full
    :class:`~diffdensity.solvers.base.Problem` instead (the grid's nodes are filled in)."""
    from ..registry import SOLVERS
    from . import resolve

    if isinstance(method, str) and method not in SOLVERS:
        raise ValueError(f"method={method!r} is not a registered solver; choose one of {', '.join(SOLVERS)}.")
    solver = resolve(method)
    if solver.adaptive:
        raise ValueError(f"method={solver.name!r} is adaptive; odeint takes fixed-step solvers.")
    grid = check_grid(grid)
    if quadrature is not None and not hasattr(solver, "quadrature"):
        raise ValueError(f"quadrature= is an option of method='euler' (got {solver.name!r}).")
    lams = grid.tolist()
    problem = problem or Problem(lams)
    problem.nodes = lams
    if quadrature is not None:
        problem.n_integrals, problem.u, problem.dtau_du = quadrature
    step = cast(FixedStepSolver, solver).stepper(problem)  # not adaptive, so fixed-step
    f = _Counted(func)
    y = as_tuple(y0)
    path = [y] if return_path else []
    it = range(len(lams) - 1)
    for i in (progress(it) if progress is not None else it):
        y = step(f, y, i)
        if callback is not None:
            callback(i, lams[i + 1], y)
        if return_path:
            path.append(y)
    return Solution(y, f.n, path, len(lams) - 1)


def integral_weights(solver: FixedStepSolver, problem: Problem, scale: Callable[[float], float] | None = None) -> list:
    """The weight with which each evaluation's rate enters an integral component at the end of a fixed-step solve of
    ``problem`` — the solver's quadrature on this grid, whatever the method (multistep and λ-written ones included) —
    from one autograd pass over a replay on a zero state. ``scale(τ)`` multiplies the rate of the evaluation at τ
    (e.g. dλ/dτ, so that the weights apply to rates in λ). An integral I = Σ_e w_e r_e of rates with independent
    errors of variances v_e then has variance Σ_e w_e² v_e."""
    marks: list[Tensor] = []

    def f(tau, y):
        d = torch.zeros((), dtype=torch.float64, requires_grad=True)
        marks.append(d)
        return torch.zeros(1, dtype=torch.float64), (d * (1.0 if scale is None else scale(tau))).reshape(1)
    prob = dataclasses.replace(problem, n_integrals=1)
    step = solver.stepper(prob)
    y: tuple = (torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    with torch.enable_grad():
        for i in range(len(prob.nodes) - 1):
            y = step(f, y, i)
        grads = torch.autograd.grad(y[-1].sum(), marks, allow_unused=True)
    return [0.0 if g is None else float(g) for g in grads]
