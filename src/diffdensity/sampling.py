"""Samplers: build the dynamics, attach the log-density tracker if asked, hand both to a solver.

Generation integrates λ upward from ``schedule.lambda_min`` (noise) to ``schedule.lambda_max`` (data).
Each sampler returns :class:`Samples` (x, logp, nfe); nfe counts score evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import check_batch
from .dynamics import Dynamics, PFODE, ReverseSDE
from .models import CountingModel
from .solvers import odeint, odeint_adaptive, sdeint
from .tracking import DIVERGENCES, TRACKERS, AugmentedODE, AugmentedSDE, make_probes

__all__ = ["Samples", "sample_ode", "sample_sde", "integrate_ode"]

ODE_SOLVERS = ("euler", "heun", "dopri5")


@dataclass
class Samples:
    """Samples ``x``, their tracked log-density ``logp`` (nats, None when not tracked) and the score NFE."""

    x: Tensor
    logp: Tensor | None
    nfe: int

    def __iter__(self):
        return iter((self.x, self.logp, self.nfe))


def _progress(progress, total, desc):
    if progress is False:
        return None
    return lambda it: tqdm(it, total=total, desc=desc, leave=False, disable=None if progress is None else False)


def _prepare(model, x: Tensor, name: str = "x_T") -> CountingModel:
    check_batch(x, name)
    return CountingModel(model)


def integrate_ode(model, dynamics: Dynamics, x: Tensor, lam0: float, lam1: float, *, track: bool, logp0=None,
                  solver: str = "euler", steps: int | None = 256, divergence: str = "hutchinson",
                  rtol: float = 1e-5, atol: float = 1e-5, n_probes: int = 1, probe: str = "rademacher",
                  generator=None, chunk_size: int | None = 64, progress=None, desc: str = "ode"):
    """Integrate an ODE sampler from λ₀ to λ₁ (either direction), tracking log p if asked (math.md §2.4).
    Returns (x, logp or None); the Hutchinson probe is drawn once and held fixed for the whole solve."""
    if solver not in ODE_SOLVERS:
        raise ValueError(f"solver={solver!r}; choose one of {ODE_SOLVERS}.")
    if track and divergence not in DIVERGENCES:
        raise ValueError(f"divergence={divergence!r}; choose one of {DIVERGENCES}.")
    dynamics.schedule.check_lam(lam0, "lam0")
    dynamics.schedule.check_lam(lam1, "lam1")
    probes = make_probes(x, n_probes, probe, generator) if track and divergence == "hutchinson" else None
    func = AugmentedODE(model, dynamics, track, divergence, probes, chunk_size)
    y0 = (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if logp0 is None else logp0) if track else (x,)
    with torch.no_grad():
        if solver == "dopri5":
            sol = odeint_adaptive(func, y0, lam0, lam1, rtol=rtol, atol=atol)
        else:
            if steps is None:
                raise ValueError(f"solver={solver!r} needs steps (a positive integer).")
            grid = dynamics.schedule.grid(steps, lam0, lam1, dtype=torch.float64)
            sol = odeint(func, y0, grid, method=solver, progress=_progress(progress, steps, desc))
    return sol.y[0], (sol.y[1] if track else None)


def sample_ode(model, x_T: Tensor, steps: int = 256, solver: str = "euler", track_logp: bool = False,
               divergence: str = "hutchinson", generator: torch.Generator | None = None, *, rtol: float = 1e-5,
               atol: float = 1e-5, n_probes: int = 1, prior=None, progress=None) -> Samples:
    """PF-ODE from noise to data; with ``track_logp`` the instantaneous change of variables (Eq. 3 of
    Karczewski et al. 2025a, math.md §1.1) from ``prior(x_T)`` (default: the schedule's Gaussian prior)."""
    m = _prepare(model, x_T)
    sch = m.schedule
    logp0 = (prior or sch.prior_log_prob)(x_T) if track_logp else None
    x, logp = integrate_ode(m, PFODE(sch), x_T, sch.lambda_min, sch.lambda_max, track=track_logp, logp0=logp0,
                            solver=solver, steps=steps, divergence=divergence, rtol=rtol, atol=atol,
                            n_probes=n_probes, generator=generator, progress=progress, desc="sample_ode")
    return Samples(x, logp, m.nfe)


def sample_sde(model, x_T: Tensor, steps: int = 1024, track_logp: bool = True, tracker: str = "corrected",
               generator: torch.Generator | None = None, *, dw: Tensor | None = None, prior=None,
               progress=None) -> Samples:
    """Reverse SDE from noise to data by Euler–Maruyama, with log p tracked at no extra score evaluation
    (Theorem 1 of Karczewski et al. 2025a). ``tracker="corrected"`` (default) is math.md §1.2b; ``"em"`` is
    the reference code's plain Euler–Maruyama on the augmented SDE. ``dw`` fixes the Brownian increments."""
    if tracker not in TRACKERS:
        raise ValueError(f"tracker={tracker!r}; choose one of {TRACKERS}.")
    m = _prepare(model, x_T)
    sch = m.schedule
    sde = AugmentedSDE(m, ReverseSDE(sch), track_logp, tracker)
    y0 = (x_T, (prior or sch.prior_log_prob)(x_T)) if track_logp else (x_T,)
    grid = sch.grid(steps, dtype=torch.float64)
    with torch.no_grad():
        sol = sdeint(sde, y0, grid, generator=generator, dw=dw, progress=_progress(progress, steps, "sample_sde"))
    return Samples(sol.y[0], sol.y[1] if track_logp else None, m.nfe)
