"""Samplers: a dynamics, the log-density rule if asked, one integration leg (integrate.py) per segment.

Generation integrates λ upward from ``schedule.lambda_min`` (noise) to ``schedule.lambda_max`` (data).
Each sampler returns :class:`Samples` (x, logp, nfe); nfe counts score evaluations.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .adapters import warn_if_guided
from .dynamics import PFODE, ReverseSDE
from .evaluation import Divergence
from .integrate import Samples, integrate_ode, integrate_sde, prepare
from .tracking import TRACKERS

__all__ = ["Samples", "sample_ode", "sample_sde"]


def _prior_logp(sch, x_T: Tensor, track: bool, prior):
    return (prior or sch.prior_log_prob)(x_T) if track else None


def sample_ode(model, x_T: Tensor, steps: int = 256, solver: str = "euler", track_logp: bool = False,
               divergence: str = "hutchinson", generator: torch.Generator | None = None, *, rtol: float = 1e-5,
               atol: float = 1e-5, n_probes: int = 1, prior=None, grid=None, callback=None,
               progress=None, time: str | None = "natural") -> Samples:
    """PF-ODE from noise to data; with ``track_logp`` the instantaneous change of variables (Eq. 3 of
    Karczewski et al. 2025a, math.md §1.1) from ``prior(x_T)`` (default: the schedule's Gaussian prior).
    ``steps`` is for the fixed-step solvers on ``grid`` (λ values, or a kind: "lambda", "t", "sigma", "edm",
    "natural"; default the schedule's ``default_grid``); "dopri5" chooses its own. ``time``: integration variable."""
    prepare(model, x_T)
    sch = model.schedule
    div = Divergence(divergence, n_probes=n_probes, generator=generator) if track_logp else None
    fixed = solver != "dopri5"
    return integrate_ode(model, PFODE(sch), x_T, sch.lambda_min, sch.lambda_max, track=track_logp,
                         logp0=_prior_logp(sch, x_T, track_logp, prior), solver=solver,
                         steps=steps if fixed and (grid is None or isinstance(grid, str)) else None,
                         grid=grid, divergence=div, rtol=rtol, atol=atol, callback=callback,
                         progress=progress, desc="sample_ode", time=time)


def sample_sde(model, x_T: Tensor, steps: int = 1024, track_logp: bool = True, tracker: str = "corrected",
               generator: torch.Generator | None = None, *, dw: Tensor | None = None, prior=None, grid=None,
               callback=None, progress=None) -> Samples:
    """Reverse SDE from noise to data by Euler–Maruyama, with log p tracked at no extra score evaluation
    (Theorem 1 of Karczewski et al. 2025a). ``tracker="corrected"`` (default) is math.md §1.2b; ``"em"`` is
    the reference code's plain Euler–Maruyama on the augmented SDE. ``dw`` fixes the Brownian increments.
    ``grid``: λ values (e.g. a model's own discrete timesteps) or a kind ("lambda" default, "t", "sigma", "edm")."""
    if tracker not in TRACKERS:
        raise ValueError(f"tracker={tracker!r}; choose one of {TRACKERS}.")
    prepare(model, x_T)
    if track_logp:
        warn_if_guided(model)
    sch = model.schedule
    return integrate_sde(model, ReverseSDE(sch), x_T, sch.lambda_min, sch.lambda_max, track=track_logp,
                         logp0=_prior_logp(sch, x_T, track_logp, prior),
                         steps=steps if grid is None or isinstance(grid, str) else None,
                         grid=grid, tracker=tracker, generator=generator, dw=dw, callback=callback,
                         progress=progress, desc="sample_sde")
