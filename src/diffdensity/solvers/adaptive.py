"""Adaptive ODE solves through torchdiffeq (dopri5 and friends), with an NFE count, a step cap and per-step hooks."""
from __future__ import annotations

import math

import torch
import torchdiffeq

from .._checks import NonFiniteError
from .fixed import Solution, as_tuple


class _Field:
    """func as torchdiffeq sees it: counts evaluations and reports each accepted step as (i, λ, y)."""

    def __init__(self, func, lo: float, hi: float):
        self.func, self.lo, self.hi, self.on_accept, self.n, self.steps = func, lo, hi, None, 0, 0

    def __call__(self, t, y):
        self.n += 1
        # Steps are made to end on the interval's end (step_t), so only the initial step-size probe can fall
        # outside it; clamping it keeps the vector field inside the model's λ range (it only sizes the first step).
        return as_tuple(self.func(t.clamp(self.lo, self.hi), y))

    def callback_accept_step(self, t0, y0, dt):
        self.steps += 1
        if self.on_accept is not None:  # y0: the state at the step's start; the step ends at t0 + dt
            self.on_accept(self.steps - 1, float(t0 + dt), as_tuple(y0), self.n)


def odeint_adaptive(func, y0, lam0: float, lam1: float, rtol: float = 1e-5, atol: float = 1e-5,
                    method: str = "dopri5", max_steps: int = 10_000, on_accept=None, **options) -> Solution:
    """Integrate dy/dλ = func(λ, y) from lam0 to lam1 with torchdiffeq's adaptive ``method``.

    ``max_steps`` caps the accepted + rejected steps (RuntimeError naming the λ reached when hit);
    ``on_accept(i, lam, y_start, nfe)`` runs after each accepted step (y_start: the state where that step began).
    """
    if not (isinstance(rtol, (int, float)) and isinstance(atol, (int, float))) or isinstance(rtol, bool) \
            or isinstance(atol, bool):
        raise TypeError(f"rtol={rtol!r}, atol={atol!r}: tolerances must be numbers.")
    if not (rtol > 0 and atol > 0 and math.isfinite(rtol) and math.isfinite(atol)):
        raise ValueError(f"rtol={rtol}, atol={atol}: tolerances must be positive.")
    if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps={max_steps!r}: need a positive integer.")
    y0 = as_tuple(y0)
    floor = 10 * torch.finfo(y0[0].dtype).eps
    if rtol < floor:
        raise ValueError(f"rtol={rtol:g} is below what {y0[0].dtype} can resolve (≥ {floor:.1e}); the solve would only "
                         "hit max_steps. Loosen it or use float64.")
    field = _Field(func, min(float(lam0), float(lam1)), max(float(lam0), float(lam1)))
    reached = [float(lam0)]

    def track(i, lam, y, nfe):
        reached[0] = lam
        if on_accept is not None:
            on_accept(i, lam, y, nfe)

    field.on_accept = track
    t = torch.tensor([float(lam0), float(lam1)], dtype=y0[0].dtype, device=y0[0].device)
    try:
        ys = torchdiffeq.odeint(field, y0, t, rtol=rtol, atol=atol, method=method,
                                options={"max_num_steps": int(max_steps), "step_t": t[1:], **options})
    except AssertionError as e:  # torchdiffeq signals its failures by assert
        msg = str(e)
        if "max_num_steps" in msg:
            raise RuntimeError(
                f"{method} hit max_steps={max_steps} at λ = {reached[0]:.6g} of [{lam0:g} → {lam1:g}] after "
                f"{field.n} evaluations: the ODE is stiff or the model diverges there; raise max_steps or the "
                "tolerances, or use a fixed-step solver."
            ) from None
        if "non-finite" in msg or "underflow" in msg:
            raise NonFiniteError(
                f"{method}: the state became NaN/inf (or the step size underflowed) near λ = {reached[0]:.6g} of "
                f"[{lam0:g} → {lam1:g}]: the model returns NaN/inf there or the ODE diverges."
            ) from None
        raise RuntimeError(f"{method} failed at λ ≈ {reached[0]:.6g} of [{lam0:g} → {lam1:g}]: {msg[:300]}") from None
    return Solution(tuple(v[-1] for v in ys), field.n, [], field.steps)
