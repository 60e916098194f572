"""DPM-Solver++(2M) (Lu et al. 2022): the data-prediction multistep exponential integrator in log-SNR."""
from __future__ import annotations

import math

import torch

from .ab2 import ab2_update
from .base import FixedStepSolver, Problem

__all__ = ["DPMSolverPP2M"]


class DPMSolverPP2M(FixedStepSolver):
    """DPM-Solver++(2M) in λ: any ODE dx/dλ = u is split as u = (d log σ/dλ) x + ½ α D, which defines the data
    prediction D = (u − (f − ½) x)·2/α (f = d log α/dλ; for the PF-ODE D = (x + σ² s)/α exactly); the linear part is
    integrated exactly and D extrapolated linearly in λ from the last two steps (Lu et al. 2022, Alg. 2; math.md §I.3):
        x₁ = (σ₁/σ₀) x₀ + α₁(1 − e^{−h}) D̃,  h = (λ₁ − λ₀)/2,  D̃ = (1 + 1/2r) D₀ − (1/2r) D₋₁,  r = h₋₁/h,
    the first step DDIM (D̃ = D₀), and on grids of fewer than 15 steps the last one too (``lower_order_final``, as
    diffusers: a long last step in λ over-extrapolates D). Order 2 at one evaluation per step; default grid uniform
    in λ (measured best on the oracle: math.md §I.3). Other state components (a tracked log p)
    take the Adams–Bashforth 2 step in λ on the same evaluations. Steps in λ whatever ``time=`` asks (the method is
    written in λ); needs the problem's schedule."""

    name, order, variable, grid = "dpmpp2m", 2, "lambda", "lambda"

    def __init__(self, lower_order_final: bool = True):
        super().__init__(None)
        self.lower_order_final = lower_order_final

    def stepper(self, problem: Problem):
        sch, lams = problem.schedule, problem.nodes
        if sch is None:
            raise ValueError("dpmpp2m is written in λ and needs the schedule: run it through integrate_ode or a "
                             "sampler, not on a bare vector field.")
        coef = _Coefficients(sch)
        prev: list[tuple] = []  # [(h_{i−1}, D_{i−1}, rates_{i−1})]

        def step(f, y, i):
            l0, l1 = lams[i], lams[i + 1]
            k = f(l0, y)
            x = y[0]
            fl, a0, s0 = coef(l0)
            _, a1, s1 = coef(l1)
            D = (k[0] - (fl - 0.5) * x) * (2.0 / a0)
            h = 0.5 * (l1 - l0)
            Dt = D
            last_low = self.lower_order_final and i == len(lams) - 2 and len(lams) <= _LOWER_ORDER_FINAL_BELOW
            if prev and not last_low:
                r = prev[0][0] / h
                Dt = (1 + 0.5 / r) * D - (0.5 / r) * prev[0][1]
            x1 = (s1 / s0) * x + (a1 * -math.expm1(-h)) * Dt
            rest = ab2_update(y[1:], l1 - l0, k[1:], (2 * prev[0][0], prev[0][2]) if prev else None)
            prev[:] = [(h, D, k[1:])]
            return (x1, *rest)
        return step


_LOWER_ORDER_FINAL_BELOW = 16  # grids of fewer than 15 steps end with one DDIM step (as diffusers' lower_order_final)


class _Coefficients:
    """λ ↦ (f, α, σ) as python floats (float64), cached per node."""

    def __init__(self, schedule):
        self.sch, self.cache = schedule, {}

    def __call__(self, lam: float):
        if lam not in self.cache:
            t = torch.tensor(float(lam), dtype=torch.float64)
            a, s = self.sch.alpha_sigma(t)
            self.cache[lam] = (float(self.sch.f(t)), float(a), float(s))
        return self.cache[lam]
