"""Euler's method (order 1), with the log-density integral by the trapezoid rule at no extra evaluation."""
from __future__ import annotations

import torch

from .._checks import check_choice
from .base import FixedStepSolver, Problem, axpy

__all__ = ["Euler"]


class Euler(FixedStepSolver):
    """Euler: y₁ = y₀ + h f(t₀, y₀). ``quadrature="trapezoid"`` (default) accumulates the trailing integral components
    (a tracked log p) by the trapezoid rule in the problem's quadrature variable u, borrowing each next step's
    evaluation, so the NFE is unchanged (README "Step grids"); ``"rectangle"`` is plain Euler for them too."""

    name, order = "euler", 1

    def __init__(self, quadrature: str = "trapezoid", time: str | None = None):
        check_choice(quadrature, "quadrature", ("trapezoid", "rectangle"))
        super().__init__(time)
        self.quadrature = quadrature

    def step(self, f, y, t0, t1):
        return axpy(y, t1 - t0, f(t0, y))

    def stepper(self, problem: Problem):
        if self.quadrature == "trapezoid" and problem.n_integrals and problem.u is not None:
            return _EulerTrapezoid(problem)
        return super().stepper(problem)


class _EulerTrapezoid:
    """Euler for the state, the trapezoid rule in u for the last k (integral) components; first same as last.
    The right end's rate is the next step's first evaluation; the last step, which has no next one, keeps the
    rectangle rule (an extrapolated right end was measured worse on grids whose last step is long in u)."""

    def __init__(self, p: Problem):
        self.k, self.nodes = int(p.n_integrals), p.nodes
        self.u, self.w = torch.as_tensor(p.u).tolist(), torch.as_tensor(p.dtau_du).tolist()
        self.rate = None  # the evaluation at the current step's start, made by the previous step

    def __call__(self, f, y, i):
        t = self.nodes
        k1 = self.rate if self.rate is not None else f(t[i], y)
        y1 = axpy(y, t[i + 1] - t[i], k1)
        self.rate = None
        if i + 2 == len(t):
            return y1
        k2 = self.rate = f(t[i + 1], y1)  # the next step's first evaluation, at (t_{i+1}, y1)
        k, du, w0, w1 = self.k, self.u[i + 1] - self.u[i], self.w[i], self.w[i + 1]
        return (*y1[:-k], *(a + 0.5 * du * (b * w0 + c * w1) for a, b, c in zip(y[-k:], k1[-k:], k2[-k:])))
