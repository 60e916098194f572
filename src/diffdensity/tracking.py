"""Log-density along any sampler (math.md §2.4), written once.

For dx = ũ dλ + G dW with PF-ODE drift u = f x + ½ g2 s (so −div u = −D f − ½ g2 Δ log p):
    d log p = [ −D f + ⟨s, ũ − u⟩ − ½ g2 Δ log p + ½ tr(GGᵀ∇²log p) ] dλ + ⟨s, G dW⟩.
The rule knows neither the sampler nor the noise's shape: the noise operator splits its trace into
``lap_weight``·Δ log p + ``trace_rest``. For the reverse SDE (G = √g2 I) the Laplacian's coefficient is exactly
zero, so no divergence is computed and tracking costs no score evaluation (Theorem 1). Integrated toward
decreasing λ the Itô term enters with |dλ| (it is a time-like correction), hence ``direction``.

:class:`AugmentedODE` and :class:`AugmentedSDE` turn a dynamics (+ the rule) into the vector fields the solvers
integrate; the corrected step of math.md §1.2b is used for dynamics that declare ``reverse_sde``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import at, check_state, flat_dot, flat_sq, per_sample
from .dynamics import Dynamics, Noise
from .evaluation import Divergence, Eval, evaluate

__all__ = ["TRACKERS", "LogDensityRule", "AugmentedODE", "AugmentedSDE", "corrected_logp_increment"]

TRACKERS = ("corrected", "em")


class LogDensityRule:
    """The §2.4 rule for one dynamics integrated in the given λ ``direction`` (+1 up, −1 down)."""

    def __init__(self, dynamics: Dynamics, direction: int = 1):
        self.dyn, self.direction = dynamics, direction

    def lap_coef(self, lam, x: Tensor, noise: Noise | None) -> Tensor:
        """The coefficient of Δ log p: ½(±lap_weight − g2)."""
        g2 = at(self.dyn.schedule.g2, lam, x)
        return 0.5 * ((0.0 if noise is None else self.direction * noise.lap_weight) - g2)

    def needs(self, lam, x: Tensor, noise: Noise | None) -> frozenset:
        """What the rule reads beyond the score at this λ: Δ log p unless its coefficient vanishes."""
        lap = frozenset({"lap"}) if bool((self.lap_coef(lam, x, noise) != 0).any()) else frozenset()
        return lap | (noise.needs if noise is not None else frozenset())

    def rate(self, ev: Eval, u_tilde: Tensor, noise: Noise | None) -> Tensor:
        """The dλ part: −D f + ⟨s, ũ − u⟩ + ½(±w − g2) Δ log p ± ½ trace_rest, per sample."""
        x = ev.x
        rate = -x[0].numel() * per_sample(at(self.dyn.schedule.f, ev.lam, x), x)
        rate = rate + flat_dot(ev.s, u_tilde - self.dyn.pf_drift(ev))
        coef = self.lap_coef(ev.lam, x, noise)
        if ev.lap is not None and bool((coef != 0).any()):
            rate = rate + per_sample(coef, x) * ev.lap
        rest = noise.trace_rest(ev) if noise is not None else None
        return rate if rest is None else rate + 0.5 * self.direction * rest

    def rate_var(self, ev: Eval, noise: Noise | None) -> Tensor | None:
        """The Monte-Carlo variance of :meth:`rate` per sample: coef² Var(Δ̂ log p) (the rate is affine in it);
        0 where Δ log p is not read, None where its estimate carries no variance (one Hutchinson probe)."""
        coef = self.lap_coef(ev.lam, ev.x, noise)
        if ev.lap is None or not bool((coef != 0).any()):
            return ev.x.new_zeros(ev.x.shape[0])
        return None if ev.lap_var is None else per_sample(coef, ev.x) ** 2 * ev.lap_var

    @staticmethod
    def noise_term(ev: Eval, g_dw: Tensor) -> Tensor:
        """⟨s, G dW⟩."""
        return flat_dot(ev.s, g_dw)


def _needs(dyn: Dynamics, rule: LogDensityRule | None, lam, x, noise) -> frozenset:
    return dyn.needs | (rule.needs(lam, x, noise) if rule is not None else frozenset())


def _same_lam(a, b) -> bool:
    """λ values (floats or per-sample tensors) equal up to round-off."""
    a, b = (torch.as_tensor(v, dtype=torch.float64).detach().cpu().reshape(-1) for v in (a, b))
    return bool(((a - b).abs() <= 1e-9 * (1 + b.abs())).all())


class AugmentedODE:
    """The vector field λ ↦ (ũ, d log p/dλ) of an ODE sampler (log p only when ``track``); ``last`` is the last
    evaluation, for callbacks; ``rate_vars`` the Monte-Carlo variance of each call's log-density rate."""

    def __init__(self, model, dynamics: Dynamics, track: bool, divergence: Divergence | None = None,
                 direction: int = 1, first_eval: Eval | None = None):
        self.model, self.dyn, self.divergence = model, dynamics, divergence
        self.rule = LogDensityRule(dynamics, direction) if track else None
        self.last: Eval | None = None
        self.first = first_eval
        self.rate_vars: list[Tensor | None] = []

    def _reuse(self, lam, x, needs) -> Eval | None:
        """The previous leg's end evaluation, once, if it is at this (λ, x) and holds what is needed."""
        ev, self.first = self.first, None
        if ev is None or not _same_lam(ev.lam, lam) or not torch.equal(ev.x, x):
            return None
        if ("lap" in needs and ev.lap is None) or ("hvp" in needs and ev.hvp is None):
            return None
        return ev

    def __call__(self, lam, y):
        x = y[0]
        needs = _needs(self.dyn, self.rule, lam, x, None)
        ev = self.last = self._reuse(lam, x, needs) or evaluate(self.model, lam, x, needs, self.divergence)
        check_state(f"{type(self.dyn).__name__} (model output)", lam, ev.s, ev.lap)
        ut = self.dyn.drift(ev)
        if self.rule is None:
            return (ut,)
        self.rate_vars.append(self.rule.rate_var(ev, None))
        return ut, self.rule.rate(ev, ut, None)


class AugmentedSDE:
    """An SDE sampler with an optional log-density tracker, for :func:`solvers.sdeint`.

    ``tracker="em"``: Euler–Maruyama on the §2.4 rule (the reference code's scheme for Theorem 1), any dynamics.
    ``tracker="corrected"``: the same x-update and score evaluations, log p updated by
    :func:`corrected_logp_increment` (math.md §1.2b) — for dynamics that declare ``reverse_sde``, integrated upward.
    """

    def __init__(self, model, dynamics: Dynamics, track: bool, tracker: str = "corrected",
                 divergence: Divergence | None = None, direction: int = 1, end=(None, frozenset())):
        if tracker not in TRACKERS:
            raise ValueError(f"tracker={tracker!r}; choose one of {TRACKERS}.")
        if track and tracker == "corrected" and not (dynamics.reverse_sde and direction > 0):
            raise ValueError("tracker='corrected' is derived for the reverse SDE integrated toward increasing λ; "
                             "use tracker='em'.")
        self.model, self.dyn, self.divergence = model, dynamics, divergence
        self.corrected = track and tracker == "corrected"
        self.rule = LogDensityRule(dynamics, direction) if track and not self.corrected else None
        self.track = track
        self.uses_end_evaluation = self.corrected
        self.last: Eval | None = None
        self.end_lam, self.end_needs = end
        self.rate_vars: list[Tensor | None] = []  # the em tracker's: Monte-Carlo variance of each step's rate

    def evaluate(self, lam, y):
        x = y[0]
        noise = self.dyn.noise(lam, x)
        needs = _needs(self.dyn, self.rule, lam, x, noise)
        if self.end_lam is not None and float(lam) == float(self.end_lam):
            needs = needs | frozenset(self.end_needs)
        ev = self.last = evaluate(self.model, lam, x, needs, self.divergence)
        check_state(f"{type(self.dyn).__name__} (model output)", lam, ev.s, ev.lap)
        return ev, noise

    def drift(self, state):
        ev, noise = state
        ut = self.dyn.drift(ev)
        if not self.track:
            return (ut,)
        if self.corrected:
            return ut, ev.x.new_zeros(ev.x.shape[0])
        self.rate_vars.append(self.rule.rate_var(ev, noise))
        return ut, self.rule.rate(ev, ut, noise)

    def diffusion(self, state, dw):
        ev, noise = state
        g_dw = noise.apply(ev, dw) if noise is not None else torch.zeros_like(dw)
        if not self.track:
            return (g_dw,)
        if self.corrected:
            return g_dw, dw.new_zeros(dw.shape[0])
        return g_dw, LogDensityRule.noise_term(ev, g_dw)

    def correction(self, state0, state1, dl, dw):
        (ev0, noise0), (ev1, _) = state0, state1
        inc = corrected_logp_increment(self.dyn.schedule, ev0.lam, ev1.lam, ev0.x, ev0.s, self.dyn.drift(ev0),
                                       ev1.s, self.dyn.drift(ev1), noise0.apply(ev0, dw))
        return torch.zeros_like(ev1.x), inc


def corrected_logp_increment(sch, lam0, lam1, x0, s0, b0, s1, b1, xi) -> Tensor:
    """One step of the corrected Theorem-1 tracker (math.md §1.2b), labelled as there: the EM x-step from x0 with
    noise ξ; scores s0, s1 and reverse-SDE drifts b0, b1 at both ends of the step."""
    D = x0[0].numel()
    dl = float(lam1) - float(lam0)
    l0 = torch.as_tensor(lam0, dtype=x0.dtype, device=x0.device)
    l1 = torch.as_tensor(lam1, dtype=x0.dtype, device=x0.device)
    f0, g20, g21, g2p0 = sch.f(l0), sch.g2(l0), sch.g2(l1), sch.g2_prime(l0)
    V = g20 * dl  # per-coordinate variance of ξ
    ds = s1 - s0
    ds_xi = flat_dot(ds, xi)
    exact_f = -D * (sch.log_alpha(l1) - sch.log_alpha(l0))             # exact ∫ −D f dλ
    trapezoid = 0.25 * dl * (g20 * flat_sq(s0) + g21 * flat_sq(s1))   # ½ g2 ‖s‖² by the trapezoid rule
    ito_F = (1 - 0.5 * f0 * dl) * flat_dot(s0, xi)                     # Itô noise term with the linear-noise fix F
    xi_sq = flat_sq(xi)
    SN = torch.where(xi_sq > 0, 0.5 * ds_xi * (1 - D * V / xi_sq.clamp_min(torch.finfo(xi.dtype).tiny)),
                     torch.zeros_like(xi_sq))                         # Laplacian-free Itô–Stratonovich (Milstein)
    CEM = -0.5 * dl * flat_dot(b1 - b0, s1) - 0.25 * dl * (g2p0 / g20) * ds_xi  # EM transition-law correction
    return exact_f + trapezoid + ito_F + SN + CEM
