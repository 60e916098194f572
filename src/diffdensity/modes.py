"""The exact mode-tracking ODE of Karczewski et al. 2025a (math.md §1.5) and a Newton-continuation reference.

For x_t at λ_t, y_λ = a local mode of p(x_λ | x_t) ∝ p_λ(y) N(x_t; α_{t|λ} y, σ²_{t|λ} I) follows (λ from λ_t up)
    dy/dλ = f y + g2 s + ½ g2 [∇²log p_λ(y) − k I]⁻¹ ∇Δ log p_λ(y),   k = 1 / (σ_λ² (e^{λ−λ_t} − 1)).
Dropping the last term (H) gives the high-density ODE. H needs the Hessian and the gradient of the Laplacian
(third derivatives of log p): D Hessian rows by batched VJPs with ``create_graph`` and one more backward through
their trace, then one D×D solve per sample — hence small D only (:data:`MAX_DIM`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._checks import at, check_count
from .dynamics import Dynamics
from .evaluation import Eval
from .integrate import integrate_ode, prepare
from .solvers import Solver, resolve

__all__ = ["MAX_DIM", "ModeTrackingODE", "mode_tracking", "score_derivatives", "posterior_mode_continuation",
           "transition_coefficients"]

MAX_DIM = 512  # D Hessian-row VJPs and a (B, D, D) solve per evaluation: beyond a few hundred dimensions this is
               # minutes per step for a network (benchmarks/mode_tracking.py); raise ``max_dim`` deliberately.


def _check_dim(x: Tensor, max_dim: int) -> int:
    D = x[0].numel()
    if D > max_dim:
        raise ValueError(f"mode tracking needs a D×D Hessian and D third-derivative VJPs per step; D={D} exceeds "
                         f"max_dim={max_dim}. Use the high-density ODE (dd.sample_hd) for large data, or pass "
                         f"max_dim={D} if you accept the cost (see benchmarks/mode_tracking.py).")
    return D


def score_derivatives(model, x: Tensor, lam) -> tuple[Tensor, Tensor, Tensor]:
    """(s, J, ∇Δ log p) at (λ, x) by autograd through ``model.score``: the score (B, *shape), its Jacobian
    J[b, i, j] = ∂s_i/∂x_j (B, D, D; the Hessian of log p for an exact score) and the gradient of its trace
    Δ log p = tr J (B, *shape), by D batched VJPs with create_graph plus one backward (one score evaluation)."""
    B, D = x.shape[0], x[0].numel()
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        s = model.score(xg, lam)
        eye = torch.eye(D, dtype=x.dtype, device=x.device)
        gouts = eye[:, None, :].expand(D, B, D).reshape(D, *x.shape)
        try:
            (rows,) = torch.autograd.grad(s, xg, gouts, is_grads_batched=True, create_graph=True)
        except RuntimeError:  # a network op without a batching rule: one VJP per row
            rows = torch.stack([torch.autograd.grad(s, xg, g, create_graph=True, retain_graph=True)[0] for g in gouts])
        J = rows.reshape(D, B, D).transpose(0, 1)  # J[b, i, :] = e_iᵀ J
        lap = J.diagonal(dim1=1, dim2=2).sum(-1)
        (glap,) = torch.autograd.grad(lap.sum(), xg)
    return s.detach(), J.detach(), glap.detach()


class ModeTrackingODE(Dynamics):
    """dy/dλ = f y + g2 s + ½ g2 [∇²log p − k I]⁻¹ ∇Δ log p (math.md §1.5), started at (λ_t, x_t).

    At λ = λ_t, k = ∞ and the last term is exactly 0 (its limit; it is O(λ − λ_t), so the field is continuous and
    a Runge–Kutta solver may start there). The derivatives are taken from ``model`` inside :meth:`drift` (the
    evaluation record carries no third derivatives); ``nfe`` counts those extra score evaluations."""

    def __init__(self, schedule, model, lam_t: float):
        super().__init__(schedule)
        self.model, self.lam_t, self.nfe = model, float(lam_t), 0

    def k(self, lam: float) -> float:
        """k = α²_{t|λ}/σ²_{t|λ} = 1/(σ_λ² (e^{λ−λ_t} − 1)) (math.md §1.5); inf at λ = λ_t."""
        d = float(lam) - self.lam_t
        if d <= 0:
            return float("inf")
        g2 = float(self.schedule.g2(torch.tensor(float(lam), dtype=torch.float64)))
        return 1.0 / (g2 * torch.expm1(torch.tensor(d, dtype=torch.float64)).item())

    def h_term(self, lam, x: Tensor) -> Tensor:
        """½ g2 [∇²log p − k I]⁻¹ ∇Δ log p (the "expensive" H, λ-form)."""
        k = self.k(lam)
        if k == float("inf"):
            return torch.zeros_like(x)
        self.nfe += 1
        _, J, glap = score_derivatives(self.model, x, lam)
        D = J.shape[-1]
        A = J - k * torch.eye(D, dtype=J.dtype, device=J.device)
        sol = torch.linalg.solve(A, glap.reshape(x.shape[0], D, 1)).reshape(x.shape)
        return 0.5 * at(self.schedule.g2, lam, x) * sol

    def drift(self, ev: Eval) -> Tensor:
        return self.sde_drift(ev) + self.h_term(float(ev.lam), ev.x)


def mode_tracking(model, x_t: Tensor, lam, steps: int = 256, solver: str | Solver = "heun", *, lam_end=None,
                  max_dim: int = MAX_DIM, return_nfe: bool = False, callback=None, progress=None):
    """The exact mode-tracking ODE (math.md §1.5) from x_t at λ = ``lam`` to ``lam_end`` (default λ_max):
    a local mode of p(x_{λ_end} | x_t), followed continuously. Small D only (≤ ``max_dim``); ``steps`` for the
    fixed-step solvers ("euler", "heun"). ``return_nfe=True`` returns (y, nfe), nfe = all score evaluations
    (the drift's plain one plus the one with third derivatives per stage)."""
    m = prepare(model, x_t, "x_t")
    _check_dim(x_t, max_dim)
    solver = resolve(solver)
    sch = model.schedule
    lam0 = float(lam)
    lam1 = sch.lambda_max if lam_end is None else float(lam_end)
    sch.check_lam(lam0, "lam")
    sch.check_lam(lam1, "lam_end")
    if lam1 <= lam0:
        raise ValueError(f"lam_end={lam1:g} must be above lam={lam0:g}: the mode is tracked toward the data.")
    if not solver.adaptive:
        check_count(steps, "steps")
    dyn = ModeTrackingODE(sch, m, lam0)
    out = integrate_ode(m, dyn, x_t, lam0, lam1, solver=solver, steps=None if solver.adaptive else steps,
                        callback=callback, progress=progress, desc="mode_tracking")
    return (out.x, m.nfe) if return_nfe else out.x


def transition_coefficients(schedule, lam_t: float, lam) -> tuple[float, float]:
    """(α_{t|λ}, σ²_{t|λ}) of p(x_t | x_λ) = N(α_{t|λ} x_λ, σ²_{t|λ} I) for λ ≥ λ_t (math.md §1.5)."""
    a_t, s_t = schedule.alpha_sigma(torch.tensor(float(lam_t), dtype=torch.float64))
    a_s, s_s = schedule.alpha_sigma(torch.tensor(float(lam), dtype=torch.float64))
    a = float(a_t / a_s)
    return a, float(s_t**2 - a**2 * s_s**2)


def posterior_mode_continuation(model, x_t: Tensor, lam, lam_end=None, steps: int = 400, newton_iters: int = 30,
                                tol: float = 1e-12, max_dim: int = MAX_DIM) -> Tensor:
    """Reference for :func:`mode_tracking`: Newton's method on ∇log p_λ(y) + (α_{t|λ}/σ²_{t|λ})(x_t − α_{t|λ} y) = 0
    (the first-order condition of math.md §1.5), continued from y = x_t at λ_t over ``steps`` λ values (uniform
    in log σ²_{t|λ} near λ_t, where the mode moves fastest), each solve started from the previous mode."""
    prepare(model, x_t, "x_t")
    _check_dim(x_t, max_dim)
    sch = model.schedule
    lam0 = float(lam)
    lam1 = sch.lambda_max if lam_end is None else float(lam_end)
    B, D = x_t.shape[0], x_t[0].numel()
    # λ values: log-spaced in (λ − λ_t) so the first steps are short (k is huge there and the mode starts at x_t)
    d = torch.logspace(-8, 0, steps, dtype=torch.float64) * (lam1 - lam0)
    y = x_t.detach().clone()
    xt = x_t.reshape(B, D)
    eye = torch.eye(D, dtype=x_t.dtype, device=x_t.device)
    for dl in d.tolist():
        lam_s = lam0 + dl
        a, v = transition_coefficients(sch, lam0, lam_s)
        k = a * a / v
        for _ in range(newton_iters):
            s, J, _ = score_derivatives(model, y, lam_s)
            grad = s.reshape(B, D) + (a / v) * (xt - a * y.reshape(B, D))
            step = torch.linalg.solve(J - k * eye, grad[..., None])[..., 0]
            y = (y.reshape(B, D) - step).reshape(x_t.shape)
            if step.abs().max() < tol:
                break
    return y
