"""Adams–Bashforth 2 on any grid: order 2 at one evaluation per step."""
from __future__ import annotations

from .base import FixedStepSolver, Problem, axpy

__all__ = ["AB2"]


class AB2(FixedStepSolver):
    """y_{i+1} = y_i + h_i[(1 + r/2) f_i − (r/2) f_{i−1}], r = h_i/h_{i−1}, the first step Euler. It reuses the
    previous step's evaluation (the multistep idea of DPM-Solver++(2M), Lu et al. 2022, here generic in whatever
    variable the grid is in)."""

    name, order = "ab2", 2

    def stepper(self, problem: Problem):
        prev: list[tuple[float, tuple]]
        nodes, prev = problem.nodes, []  # prev: [(h_{i−1}, f_{i−1})]

        def step(f, y, i):
            h, k = nodes[i + 1] - nodes[i], f(nodes[i], y)
            out = ab2_update(y, h, k, prev[0] if prev else None)
            prev[:] = [(h, k)]
            return out
        return step


def ab2_update(y, h, k, prev):
    """One AB2 update from the rate ``k`` at the step's start and ``prev`` = (h_{i−1}, f_{i−1}) (None: Euler)."""
    if prev is None:
        return axpy(y, h, k)
    r = h / prev[0]
    return tuple(a + h * ((1 + 0.5 * r) * b - 0.5 * r * c) for a, b, c in zip(y, k, prev[1]))
