"""Log-density along any sampler (math.md §2.4), written once, and the divergence estimators.

For dx = ũ dλ + c dW with PF-ODE drift u = f x + ½ g2 s:
    d log p = [ −D f + ⟨s, ũ − u⟩ + ½ (c² − g2) Δ log p ] dλ + c ⟨s, dW⟩,
because −div u = −D f − ½ g2 Δ log p and ½ tr(c² I ∇² log p) = ½ c² Δ log p. The PF-ODE (c = 0, ũ = u) gives
§1.1, the HD-ODE §1.4, and the reverse SDE (c² = g2, ũ − u = ½ g2 s) Theorem 1 — where the Laplacian's
coefficient vanishes, so no divergence is computed and tracking costs no score evaluation.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import flat_dot, flat_sq
from .dynamics import Dynamics, ReverseSDE, coef

__all__ = [
    "DIVERGENCES", "TRACKERS", "score_and_divergence", "make_probes", "logp_drift",
    "AugmentedODE", "AugmentedSDE", "corrected_logp_increment",
]

DIVERGENCES = ("exact", "hutchinson")
TRACKERS = ("corrected", "em")


def make_probes(x: Tensor, n_probes: int = 1, kind: str = "rademacher", generator=None) -> Tensor:
    """Hutchinson probes (n_probes, *x.shape): Rademacher (default) or Gaussian."""
    if int(n_probes) != n_probes or n_probes < 1:
        raise ValueError(f"n_probes={n_probes}: need a positive integer.")
    shape = (int(n_probes), *x.shape)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)
    raise ValueError(f"probe kind={kind!r}; choose 'rademacher' or 'gaussian'.")


def score_and_divergence(model, x: Tensor, lam, divergence: str | None, probes: Tensor | None = None,
                         chunk_size: int | None = 64, mode: str = "vjp"):
    """One score evaluation s(x, λ) and, if asked, div s = Δ log p: "exact" (trace of the Jacobian by batched
    VJPs over basis vectors, ``chunk_size`` at a time) or "hutchinson" (E vᵀ J v with the given probes)."""
    if divergence is None:
        with torch.no_grad():
            return model.score(x, lam), None
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence={divergence!r}; choose one of {DIVERGENCES}.")
    if divergence == "hutchinson" and probes is None:
        raise ValueError("Hutchinson divergence needs probes (make_probes).")
    if divergence == "hutchinson" and mode == "jvp":
        return _hutchinson_jvp(model, x, lam, probes)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        s = model.score(xg, lam)
        if divergence == "hutchinson":
            n = probes.shape[0]
            if n == 1:
                vj = torch.autograd.grad(s, xg, probes[0])[0][None]
            else:
                (vj,) = torch.autograd.grad(s, xg, probes, is_grads_batched=True)
            div = (vj * probes).reshape(n, x.shape[0], -1).sum(-1).mean(0)
        else:
            div = _exact_trace(s, xg, chunk_size)
    return s.detach(), div.detach()


def _exact_trace(s: Tensor, xg: Tensor, chunk_size: int | None) -> Tensor:
    B = xg.shape[0]
    D = xg[0].numel()
    chunk = D if not chunk_size else min(int(chunk_size), D)
    eye = torch.eye(D, dtype=xg.dtype, device=xg.device)
    div = torch.zeros(B, dtype=xg.dtype, device=xg.device)
    for start in range(0, D, chunk):
        idx = slice(start, min(start + chunk, D))
        basis = eye[idx]  # (c, D): the same basis vector for every sample (samples are independent)
        gouts = basis[:, None, :].expand(-1, B, -1).reshape(-1, *xg.shape)
        last = start + chunk >= D
        (rows,) = torch.autograd.grad(s, xg, gouts, is_grads_batched=True, retain_graph=not last)
        rows = rows.reshape(basis.shape[0], B, D)
        div = div + (rows * basis[:, None, :]).sum((0, 2))
    return div


def _hutchinson_jvp(model, x, lam, probes):
    from torch.func import jvp

    divs = []
    s = None
    for v in probes:
        s, jv = jvp(lambda y: model.score(y, lam), (x.detach(),), (v,))
        divs.append(flat_dot(jv, v))
    return s.detach(), torch.stack(divs).mean(0).detach()


def logp_drift(dyn: Dynamics, lam, x: Tensor, s: Tensor, u_tilde: Tensor, lap: Tensor | None, c2) -> Tensor:
    """The dλ part of d log p (math.md §2.4) for noise G = c I: −D f + ⟨s, ũ − u⟩ + ½ (c² − g2) Δ log p."""
    sch = dyn.schedule
    D = x[0].numel()
    f = coef(sch.f, lam, x).reshape(-1)
    rate = -D * f + flat_dot(s, u_tilde - dyn.pf_drift(lam, x, s))
    if lap is not None:
        rate = rate + _lap_coef(sch, lam, x, c2).reshape(-1) * lap
    return rate.expand(x.shape[0]) if rate.ndim == 0 or rate.shape[0] == 1 else rate


def _lap_coef(sch, lam, x, c2) -> Tensor:
    g2 = coef(sch.g2, lam, x)
    return 0.5 * ((0 if c2 is None else c2) - g2)


class AugmentedODE:
    """The vector field λ ↦ (ũ, d log p/dλ) of an ODE sampler, with the divergence estimated as configured."""

    def __init__(self, model, dynamics: Dynamics, track: bool, divergence: str = "hutchinson",
                 probes: Tensor | None = None, chunk_size: int | None = 64, mode: str = "vjp"):
        self.model, self.dyn, self.track = model, dynamics, track
        self.divergence, self.probes, self.chunk_size, self.mode = divergence, probes, chunk_size, mode

    def __call__(self, lam, y):
        x = y[0]
        s, lap = score_and_divergence(
            self.model, x, lam, self.divergence if self.track else None, self.probes, self.chunk_size, self.mode
        )
        ut = self.dyn.drift(lam, x, s)
        if not self.track:
            return (ut,)
        return ut, logp_drift(self.dyn, lam, x, s, ut, lap, None)


class AugmentedSDE:
    """An SDE sampler with an optional log-density tracker, for :func:`solvers.sdeint`.

    ``tracker="em"``: Euler–Maruyama on the §2.4 rule (the reference code's scheme for Theorem 1).
    ``tracker="corrected"``: the same x-update and score evaluations, log p updated by
    :func:`corrected_logp_increment` (math.md §1.2b), reverse SDE only.
    """

    def __init__(self, model, dynamics: Dynamics, track: bool, tracker: str = "corrected",
                 divergence: str = "hutchinson", probes: Tensor | None = None, chunk_size: int | None = 64):
        if tracker not in TRACKERS:
            raise ValueError(f"tracker={tracker!r}; choose one of {TRACKERS}.")
        if track and tracker == "corrected" and not isinstance(dynamics, ReverseSDE):
            raise ValueError("tracker='corrected' is derived for the reverse SDE only; use tracker='em'.")
        self.model, self.dyn, self.track, self.tracker = model, dynamics, track, tracker
        self.divergence, self.probes, self.chunk_size = divergence, probes, chunk_size
        self.uses_end_evaluation = track and tracker == "corrected"

    def evaluate(self, lam, y):
        x = y[0]
        c2 = self.dyn.noise_var(lam, x)
        need_lap = self.track and self.tracker == "em" and bool((_lap_coef(self.dyn.schedule, lam, x, c2) != 0).any())
        s, lap = score_and_divergence(self.model, x, lam, self.divergence if need_lap else None,
                                      self.probes, self.chunk_size)
        return {"lam": lam, "x": x, "s": s, "lap": lap, "c2": c2, "c": c2.sqrt()}

    def drift(self, ev):
        ut = self.dyn.drift(ev["lam"], ev["x"], ev["s"])
        if not self.track:
            return (ut,)
        if self.tracker == "corrected":
            return ut, ev["x"].new_zeros(ev["x"].shape[0])
        return ut, logp_drift(self.dyn, ev["lam"], ev["x"], ev["s"], ut, ev["lap"], ev["c2"])

    def diffusion(self, ev, dw):
        noise = ev["c"] * dw
        if not self.track:
            return (noise,)
        if self.tracker == "corrected":
            return noise, dw.new_zeros(dw.shape[0])
        return noise, flat_dot(ev["s"], noise)

    def correction(self, ev0, ev1, dl, dw):
        b0 = self.dyn.drift(ev0["lam"], ev0["x"], ev0["s"])
        b1 = self.dyn.drift(ev1["lam"], ev1["x"], ev1["s"])
        inc = corrected_logp_increment(self.dyn.schedule, ev0["lam"], ev1["lam"], ev0["x"], ev0["s"], b0,
                                       ev1["s"], b1, ev0["c"] * dw)
        return torch.zeros_like(ev1["x"]), inc


def corrected_logp_increment(sch, lam0, lam1, x0, s0, b0, s1, b1, xi) -> Tensor:
    """One step of the corrected Theorem-1 tracker (math.md §1.2b): the EM x-step from x0 with noise ξ; scores s0,
    s1 and reverse-SDE drifts b0, b1 at both ends. Terms: exact ∫−D f, trapezoid ½g2‖s‖², Itô noise with the linear-noise fix (F), the
    Laplacian-free Itô–Stratonovich/Milstein term (SN), and the EM-transition-law correction (CEM)."""
    D = x0[0].numel()
    dl = float(lam1) - float(lam0)
    l0 = torch.as_tensor(lam0, dtype=x0.dtype, device=x0.device)
    l1 = torch.as_tensor(lam1, dtype=x0.dtype, device=x0.device)
    f0 = sch.f(l0)
    g20, g21, g2p0 = sch.g2(l0), sch.g2(l1), sch.g2_prime(l0)
    V = g20 * dl
    ds = s1 - s0
    xi_sq = flat_sq(xi)
    ds_xi = flat_dot(ds, xi)
    return (
        -D * (sch.log_alpha(l1) - sch.log_alpha(l0))
        + 0.25 * dl * (g20 * flat_sq(s0) + g21 * flat_sq(s1))
        + (1 - 0.5 * f0 * dl) * flat_dot(s0, xi)
        + 0.5 * ds_xi * (1 - D * V / xi_sq)
        - 0.5 * dl * flat_dot(b1 - b0, s1)
        - 0.25 * dl * (g2p0 / g20) * ds_xi
    )


