"""Sampler dynamics in λ (increasing from noise to data): dx = ũ dλ + G dW.

A dynamics owns its drift ũ (read from one evaluation record :class:`~diffdensity.evaluation.Eval`) and its noise
operator G (:class:`Noise`, like diffrax's ControlTerm: it applies G·dW and says what tr(GGᵀ∇²log p) needs).
It declares in ``needs`` what its drift reads beyond the score ("lap": Δ log p, "hvp": Hessian-vector products).
It knows nothing of log-densities (tracking.py) or of how it is integrated (solvers/, integrate.py).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import at, bcast, flat_dot, per_sample
from .evaluation import Eval

__all__ = ["Noise", "IsotropicNoise", "ProjectedNoise", "Dynamics", "PFODE", "ReverseSDE", "HDODE"]


class Noise:
    """A noise operator G at one λ with GGᵀ = c²(λ)·M(x). ``c2`` is a scalar or per-sample (batch,) tensor.

    tr(GGᵀ∇²log p) is split as ``lap_weight``·Δ log p + :meth:`trace_rest`, so a tracker can see where the
    Laplacian cancels (the reverse SDE) without knowing the noise's shape; ``needs`` is what trace_rest reads.
    """

    needs: frozenset = frozenset()

    def __init__(self, c2: Tensor):
        self.c2 = c2

    @property
    def lap_weight(self) -> Tensor:
        """Coefficient of Δ log p in tr(GGᵀ∇²log p)."""
        return self.c2

    def apply(self, ev: Eval, dw: Tensor) -> Tensor:
        """G dW."""
        raise NotImplementedError

    def trace_rest(self, ev: Eval) -> Tensor | None:
        """tr(GGᵀ∇²log p) − lap_weight·Δ log p per sample (None when zero)."""
        return None


class IsotropicNoise(Noise):
    """G = c I (the reverse SDE: c² = g2): tr(GGᵀ∇²log p) = c² Δ log p."""

    def apply(self, ev, dw):
        return bcast(self.c2, dw).sqrt() * dw


class ProjectedNoise(Noise):
    """G = c (I − ŝŝᵀ), ŝ = s/‖s‖ (Eq 25 of Karczewski et al. 2025b): no noise along the score, so sᵀG dW = 0;
    tr(GGᵀ∇²log p) = c² (Δ log p − ŝᵀ∇²log p ŝ) (math.md §2.6), the second term by one HVP."""

    needs = frozenset({"hvp"})

    @staticmethod
    def unit_score(ev: Eval) -> Tensor:
        s = ev.s
        return s / bcast(s.reshape(s.shape[0], -1).norm(dim=1).clamp_min(torch.finfo(s.dtype).tiny), s)

    def apply(self, ev, dw):
        sh = self.unit_score(ev)
        return bcast(self.c2, dw).sqrt() * (dw - bcast(flat_dot(sh, dw), dw) * sh)

    def trace_rest(self, ev):
        sh = self.unit_score(ev)
        return -per_sample(self.c2, ev.x) * flat_dot(sh, ev.hvp(sh))


class Dynamics:
    """dx = ũ(Eval) dλ + G dW. Subclasses give :meth:`drift` and, for an SDE, :meth:`noise`.

    ``needs``: what :meth:`drift` reads beyond the score. ``reverse_sde``: True when the drift is f x + g2 s and the
    noise √g2 I, i.e. Theorem 1 holds and the corrected tracker of math.md §1.2b applies.
    """

    needs: frozenset = frozenset()
    reverse_sde: bool = False

    def __init__(self, schedule):
        self.schedule = schedule

    def drift(self, ev: Eval) -> Tensor:
        raise NotImplementedError

    def noise(self, lam, x: Tensor) -> Noise | None:
        """The noise operator at λ (None for an ODE)."""
        return None

    @property
    def stochastic(self) -> bool:
        return type(self).noise is not Dynamics.noise

    def pf_drift(self, ev: Eval) -> Tensor:
        """u = f x + ½ g2 s: the PF-ODE drift whose continuity equation generates p_λ (math.md §0.1)."""
        sch, x = self.schedule, ev.x
        return at(sch.f, ev.lam, x) * x + 0.5 * at(sch.g2, ev.lam, x) * ev.s

    def sde_drift(self, ev: Eval) -> Tensor:
        """f x + g2 s: the reverse-SDE drift, also the high-density ODE's (math.md §0.1)."""
        sch, x = self.schedule, ev.x
        return at(sch.f, ev.lam, x) * x + at(sch.g2, ev.lam, x) * ev.s


class PFODE(Dynamics):
    """Probability-flow ODE dx/dλ = f x + ½ g2 s (math.md §0.1)."""

    def drift(self, ev):
        return self.pf_drift(ev)


class ReverseSDE(Dynamics):
    """Reverse SDE dx = (f x + g2 s) dλ + √g2 dW (math.md §0.1)."""

    reverse_sde = True

    def drift(self, ev):
        return self.sde_drift(ev)

    def noise(self, lam, x):
        return IsotropicNoise(at(self.schedule.g2, lam, x))


class HDODE(Dynamics):
    """High-density ODE dx/dλ = f x + g2 s: the reverse-SDE drift without noise (Eq. 18 of Karczewski et al. 2025a)."""

    def drift(self, ev):
        return self.sde_drift(ev)
