"""Sampler dynamics in λ (increasing from noise to data): a drift ũ(λ, x, s) and an isotropic noise scale.

Each process is one small class; the tracker (tracking.py) turns any of them into a log-density rule and a
solver integrates the result. The PF-ODE drift u = f x + ½ g2 s is the reference every tracker compares to.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Dynamics", "PFODE", "ReverseSDE", "HDODE", "coef"]


def coef(fn, lam, x: Tensor) -> Tensor:
    """A schedule function of λ evaluated in x's dtype/device (λ a float, 0-d or (batch,) tensor), broadcastable to x."""
    lam_t = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    v = fn(lam_t)
    return v.reshape(v.shape[0], *([1] * (x.ndim - 1))) if v.ndim == 1 else v


class Dynamics:
    """dx = ũ(λ, x) dλ + c(λ) dW; ``noise_var`` returns c(λ)², or None for an ODE."""

    stochastic = False

    def __init__(self, schedule):
        self.schedule = schedule

    def drift(self, lam, x: Tensor, s: Tensor) -> Tensor:
        raise NotImplementedError

    def noise_var(self, lam, x: Tensor):
        return None

    def pf_drift(self, lam, x: Tensor, s: Tensor) -> Tensor:
        """u = f x + ½ g2 s: the PF-ODE drift whose continuity equation generates p_λ (math.md §0.1)."""
        sch = self.schedule
        return coef(sch.f, lam, x) * x + 0.5 * coef(sch.g2, lam, x) * s


class PFODE(Dynamics):
    """Probability-flow ODE dx/dλ = f x + ½ g2 s (math.md §0.1)."""

    def drift(self, lam, x, s):
        return self.pf_drift(lam, x, s)


class ReverseSDE(Dynamics):
    """Reverse SDE dx = (f x + g2 s) dλ + √g2 dW (math.md §0.1)."""

    stochastic = True

    def drift(self, lam, x, s):
        sch = self.schedule
        return coef(sch.f, lam, x) * x + coef(sch.g2, lam, x) * s

    def noise_var(self, lam, x):
        return coef(self.schedule.g2, lam, x)


class HDODE(Dynamics):
    """High-density ODE dx/dλ = f x + g2 s: the reverse-SDE drift without noise (Eq. 18 of Karczewski et al. 2025a)."""

    def drift(self, lam, x, s):
        return ReverseSDE.drift(self, lam, x, s)
