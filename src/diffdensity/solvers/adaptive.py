"""Adaptive ODE solves through torchdiffeq (dopri5 and friends), with an NFE count."""
from __future__ import annotations

import torch
import torchdiffeq

from .fixed import Solution, as_tuple


def odeint_adaptive(func, y0, lam0: float, lam1: float, rtol: float = 1e-5, atol: float = 1e-5,
                    method: str = "dopri5", **options) -> Solution:
    """Integrate dy/dλ = func(λ, y) from lam0 to lam1 with torchdiffeq's adaptive ``method``."""
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol={rtol}, atol={atol}: tolerances must be positive.")
    y0 = as_tuple(y0)
    count = [0]

    def f(t, y):
        count[0] += 1
        return as_tuple(func(t, y))

    t = torch.tensor([float(lam0), float(lam1)], dtype=y0[0].dtype, device=y0[0].device)
    ys = torchdiffeq.odeint(f, y0, t, rtol=rtol, atol=atol, method=method, options=options or None)
    return Solution(tuple(v[-1] for v in ys), count[0], [], 0)
