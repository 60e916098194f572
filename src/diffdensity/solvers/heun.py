"""Heun's method (explicit trapezoid, order 2, two evaluations per step)."""
from __future__ import annotations

from .base import FixedStepSolver, axpy

__all__ = ["Heun"]


class Heun(FixedStepSolver):
    """Heun: k₁ = f(t₀, y₀), k₂ = f(t₁, y₀ + h k₁), y₁ = y₀ + h(k₁ + k₂)/2 (Karras et al. 2022's 2nd-order step)."""

    name, order, evals_per_step = "heun", 2, 2

    def step(self, f, y, t0, t1):
        h = t1 - t0
        k1 = f(t0, y)
        k2 = f(t1, axpy(y, h, k1))
        return tuple(a + 0.5 * h * (b + c) for a, b, c in zip(y, k1, k2))
