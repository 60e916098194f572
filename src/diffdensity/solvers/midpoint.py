"""The explicit midpoint method (order 2, two evaluations per step)."""
from __future__ import annotations

from .base import FixedStepSolver, axpy

__all__ = ["Midpoint"]


class Midpoint(FixedStepSolver):
    """Midpoint: k₁ = f(t₀, y₀), y₁ = y₀ + h f(t₀ + h/2, y₀ + (h/2) k₁) (Runge 1895; flow_matching's "midpoint").
    The log-density integral takes the same midpoint stage as the state, so it never evaluates the grid's ends."""

    name, order, evals_per_step = "midpoint", 2, 2

    def step(self, f, y, t0, t1):
        h = t1 - t0
        return axpy(y, h, f(t0 + 0.5 * h, axpy(y, 0.5 * h, f(t0, y))))
