"""Score alignment (math.md §2.1–2.2; Eq 11–13 of Karczewski et al. 2025b) and the prior-guidance identity.

SA(x_T) = ⟨∇log p_t(Φ(x_T)), DΦ(x_T) v₀⟩ with Φ the PF-ODE flow from λ_min to λ_target and v₀ the prior score.
Two estimators integrate the tangent v = DΦ v₀ alongside x by forward-mode JVPs of the PF-ODE drift u:
  Eq 12 ("score"):    dx/dλ = u, dv/dλ = J_u v;                SA = ⟨s_{λ_target}(x), v⟩ at the end.
  Eq 13 ("no_score"): also dω/dλ = −⟨∇div u, v⟩, ω₀ = ⟨∇log p_T, v₀⟩; SA = ω at the end (needs the score only
                      through u). ⟨∇div u, v⟩ = div_y(J_u(y) v): Hutchinson (one JVP of y ↦ J_u(y)v per probe,
                      fresh probes per step, as the reference) or exact (∇ of the exact div u by reverse mode, small D).
Written by hand: a tangent (sensitivity) solve with a Hutchinson-estimated second-order term is not something
torchdiffeq's adjoint offers; the solvers are the library's own (solvers/).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jvp

from ._checks import check_choice, check_count, check_state, flat_dot, flat_sq
from ._rng import as_generator
from .evaluation import make_probes
from .integrate import prepare
from .solvers import Problem, Solver, odeint, resolve

__all__ = ["SA_METHODS", "score_alignment", "alignment_fraction", "prior_guidance_identity"]

SA_METHODS = ("score", "no_score")
_PRIORS = ("model", "gaussian")


def _pf_drift_fn(model, lam, x: Tensor):
    """y ↦ u(y) = f y + ½ g2 s(y) at λ: the dynamics' PF-ODE drift (math.md §0.1) as a function for the JVPs."""
    from .dynamics import PFODE
    from .evaluation import Eval

    pf = PFODE(model.schedule)
    return lambda y: pf.pf_drift(Eval(lam, y, model.score(y, lam)))


class _TangentField:
    """λ ↦ (u, J_u v[, −⟨∇div u, v⟩]) for the solvers; ``div`` is None (Eq 12), "exact" or "hutchinson"."""

    def __init__(self, model, div: str | None, n_probes: int, generator):
        self.model, self.div, self.n_probes, self.generator = model, div, n_probes, generator
        self.nfe = 0

    def __call__(self, lam, y):
        out = self._field(lam, y)
        check_state("score_alignment", lam, *out)
        return out

    def _field(self, lam, y):
        x, v = y[0], y[1]
        u_fn = _pf_drift_fn(self.model, lam, x)
        self.nfe += 1
        if self.div is None:
            u, jv = jvp(u_fn, (x,), (v,))
            return u.detach(), jv.detach()

        if self.div == "exact":
            u, jv = jvp(u_fn, (x,), (v,))
            return u.detach(), jv.detach(), -_grad_div_dot(u_fn, x, v).detach()

        def tangent(z):
            return jvp(u_fn, (z,), (v,))  # (u(z), J_u(z) v)

        gdiv = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        probes = make_probes(x, self.n_probes, "rademacher", self.generator)
        for z in probes:  # div_y(J_u(y) v) = ⟨∇div u, v⟩, one probe at a time (the reference's estimator)
            (u, jv), (_, djv) = jvp(tangent, (x,), (z,))
            gdiv = gdiv + flat_dot(djv, z)
        gdiv = gdiv / probes.shape[0]
        return u.detach(), jv.detach(), -gdiv.detach()


def _grad_div_dot(u_fn, x: Tensor, v: Tensor) -> Tensor:
    """Exact ⟨∇div u, v⟩ per sample: div u by D reverse-mode rows (kept in the graph), then one more gradient
    (small D only; reverse mode here is much faster than D nested forward-mode JVPs)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        u = u_fn(xg)
        D = x[0].numel()
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(D):
            e = torch.zeros_like(x).reshape(x.shape[0], D)
            e[:, i] = 1
            e = e.reshape(x.shape)
            (row,) = torch.autograd.grad(u, xg, e, create_graph=True)
            div = div + flat_dot(row, e)
        (g,) = torch.autograd.grad(div.sum(), xg)
    return flat_dot(g, v)


def _solve(field, y0, lam0, lam1, solver, steps, schedule):
    if solver.adaptive:
        return solver.solve(field, y0, lam0, lam1).y
    grid = torch.linspace(lam0, lam1, int(steps) + 1, dtype=torch.float64)
    return odeint(field, y0, grid, method=solver, problem=Problem([], schedule=schedule)).y


def score_alignment(model, x_T: Tensor, lambda_max: float, method: str = "score", steps: int = 1024,
                    generator: torch.Generator | None = None, *, solver: str | Solver = "euler", divergence: str = "hutchinson",
                    n_probes: int = 1, prior: str = "model", rtol: float = 1e-7, atol: float = 1e-9,
                    return_state: bool = False):
    """SA(x_T) per latent (math.md §2.1) from λ_min to ``lambda_max`` (the target λ): ``method="score"`` is Eq 12,
    ``"no_score"`` Eq 13 with ⟨∇div u, v⟩ by ``divergence`` ("hutchinson": ``n_probes`` fresh Rademacher probes
    per evaluation from ``generator``; "exact": D + 1 reverse-mode passes). v₀ = the model's score at λ_min (``prior="model"``, as
    the reference) or the Gaussian prior's −x/σ_T² (``"gaussian"``). ``return_state`` also returns (x, v)."""
    check_choice(method, "method", SA_METHODS)
    check_choice(prior, "prior", _PRIORS)
    solver = resolve(solver, strict=False, rtol=rtol, atol=atol)
    if method == "no_score" and divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence={divergence!r}; choose 'exact' or 'hutchinson'.")
    if not solver.adaptive:
        check_count(steps, "steps")
    check_count(n_probes, "n_probes")
    generator = as_generator(generator)
    prepare(model, x_T)
    sch = model.schedule
    lam0, lam1 = sch.lambda_min, float(lambda_max)
    sch.check_lam(lam1, "lambda_max")
    if lam1 <= lam0:
        raise ValueError(f"lambda_max={lam1:g} must be above the schedule's lambda_min={lam0:g}.")
    x_T = x_T.detach()
    with torch.no_grad():
        v0 = -x_T / sch.prior_std**2 if prior == "gaussian" else model.score(x_T, lam0)
    field = _TangentField(model, None if method == "score" else divergence, n_probes, generator)
    if method == "score":
        x, v = _solve(field, (x_T, v0), lam0, lam1, solver, steps, sch)
        with torch.no_grad():
            sa = flat_dot(model.score(x, lam1), v)
        check_state("score_alignment", lam1, sa)
    else:
        x, v, sa = _solve(field, (x_T, v0, flat_sq(v0)), lam0, lam1, solver, steps, sch)
    return (sa, x, v) if return_state else sa


def alignment_fraction(sa: Tensor) -> float:
    """The fraction of latents for which score alignment holds (SA > 0); ValueError for an empty or NaN input."""
    if not isinstance(sa, Tensor) or sa.numel() == 0 or not torch.isfinite(sa).all():
        raise ValueError("alignment_fraction needs a non-empty tensor of finite SA values (NaN/inf means the "
                         "alignment solve failed: check the model and the steps).")
    return float((sa > 0).to(torch.float64).mean())


def prior_guidance_identity(model, x_T: Tensor, lambda_max: float, c: float = 1.0, eps: float = 1e-4,
                            steps: int = 1024, solver: str | Solver = "euler", rtol: float = 1e-7, atol: float = 1e-9,
                            log_prob=None) -> tuple[Tensor, Tensor]:
    """Check of math.md §2.1: d/dc log p_t(Φ(c x_T)) = −(σ_T²/c)·SA(c x_T) for the Gaussian prior.

    Returns (central finite difference in c, −(σ_T²/c)·SA by Eq 13 with exact divergence and the Gaussian prior
    score). ``log_prob(x, lam)`` gives log p_t at the flow's end; by default the PF-ODE's own
    log N(y; 0, σ_T²) − ∫div u (exact divergence, same solver), which makes the identity exact up to the solver."""
    from .dynamics import PFODE
    from .evaluation import Divergence
    from .integrate import integrate_ode

    sch = model.schedule
    lam0, lam1 = sch.lambda_min, float(lambda_max)
    # Euler: the rectangle rule, the discretised integral whose exact derivative Eq 13 computes
    solver = resolve(solver, strict=False, rtol=rtol, atol=atol, quadrature="rectangle")
    kw = {} if solver.adaptive else dict(steps=steps)

    def F(y):
        out = integrate_ode(model, PFODE(sch), y, lam0, lam1, track=log_prob is None,
                            logp0=sch.prior_log_prob(y) if log_prob is None else None, solver=solver,
                            divergence=Divergence("exact") if log_prob is None else None, progress=False, **kw)
        return out.logp if log_prob is None else log_prob(out.x, lam1)

    fd = (F((c + eps) * x_T) - F((c - eps) * x_T)) / (2 * eps)
    sa = score_alignment(model, c * x_T, lam1, method="no_score", steps=steps, solver=solver, divergence="exact",
                         prior="gaussian", rtol=rtol, atol=atol)
    return fd, -(sch.prior_std**2 / c) * sa
