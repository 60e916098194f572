"""Integrate a dynamics over any λ interval, in either direction, with the log-density tracker optional.

:func:`integrate_ode` and :func:`integrate_sde` are the legs every sampler is built from (sample_hd chains an SDE leg
into an ODE leg; log_prob runs the PF-ODE leg downward). Each returns :class:`Samples` (x, logp, nfe) for its leg;
``callback(info)`` runs after every step with ``info = {"i", "lam", "x", "logp", "eval"}`` (k-diffusion style).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import bcast, check_batch, check_count, check_state
from .dynamics import Dynamics
from .evaluation import Divergence, Eval
from .models import CountingModel
from .solvers import Problem, odeint, resolve, sdeint
from .solvers.fixed import integral_weights
from .tracking import TRACKERS, AugmentedODE, AugmentedSDE

__all__ = ["Samples", "integrate_ode", "integrate_sde", "DEFAULT_GRID", "prepare"]

DEFAULT_GRID = "default"  # steps= without grid=: the schedule's default_grid (measured: README)


@dataclass
class Samples:
    """Samples ``x``, their tracked log-density ``logp`` (nats, None when not tracked) and the score NFE.
    ``last``: a leg's evaluation at its end point when it made one (the next leg may reuse it; not iterated).
    ``stderr``: the Monte-Carlo standard error of each ``logp`` where it was estimated (not iterated)."""

    x: Tensor
    logp: Tensor | None
    nfe: int
    last: Eval | None = field(default=None, repr=False, compare=False)
    stderr: Tensor | None = field(default=None, repr=False, compare=False)

    def __iter__(self):
        return iter((self.x, self.logp, self.nfe))


def prepare(model, x: Tensor, name: str = "x_T") -> CountingModel:
    """Check a batch and wrap the model so its score evaluations are counted."""
    check_batch(x, name)
    if x.dtype in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"{name} is {x.dtype}: ODE/SDE states and log-densities need float32 or float64 (half precision quantises "
            "log p and breaks adaptive solvers). Keep the state in float32 and run the network in half precision with "
            "torch.autocast, e.g. dd.from_diffusers(..., autocast='bf16')."
        )
    return CountingModel(model)


def _bar(progress, total, desc):
    if progress is False:
        return None
    return tqdm(total=total, desc=desc, leave=False, disable=None if progress is None else False)


def _grid(schedule, lam0, lam1, steps, grid, default: str = DEFAULT_GRID) -> Tensor:
    schedule.check_lam(lam0, "lam0")
    schedule.check_lam(lam1, "lam1")
    if grid is None or isinstance(grid, str):
        if steps is None:
            raise ValueError("a fixed-step solver needs steps (a positive integer) or a grid of λ values.")
        check_count(steps, "steps")
        return schedule.grid(int(steps), lam0, lam1, dtype=torch.float64, kind=grid or default)
    grid = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
    if grid.numel() < 2 or abs(float(grid[0]) - lam0) > 1e-9 or abs(float(grid[-1]) - lam1) > 1e-9:
        raise ValueError(f"grid must run from lam0={lam0:g} to lam1={lam1:g}; got {grid.numel()} values "
                         f"from {float(grid[0]):g} to {float(grid[-1]):g}.")
    schedule.check_lam(grid, "grid")
    return grid


def _initial(x: Tensor, track: bool, logp0):
    if not track:
        return (x,)
    lp = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if logp0 is None else logp0
    return (x, torch.as_tensor(lp, dtype=x.dtype, device=x.device).expand(x.shape[0]).clone())


def _reporter(callback, bar, field, track, desc, fraction=False, lam0=0.0):
    """The solvers' (i, λ, y) hook → non-finite check, progress bar, user callback."""
    def report(i, lam, y, *_):
        check_state(desc, lam, *y)
        if bar is not None:
            if fraction:
                bar.n = round(abs(lam - lam0), 6)
                bar.set_postfix(lam=f"{lam:.4g}", nfe=field.model.nfe, refresh=False)
                bar.refresh()
            else:
                bar.update(1)
        if callback is not None:
            callback({"i": i, "lam": lam, "x": y[0], "logp": y[1] if track else None, "eval": field.last})
    return report


class _InTime:
    """The augmented field in the integration variable τ (change of variables, math.md §0.1):
    dy/dτ = F(λ(τ), y) · dλ/dτ for the state and the log-density rate alike. ``lam_at`` maps τ to λ."""

    def __init__(self, field, tv, lo: float, hi: float, lam_at=None):
        self.field, self.tv, self.lo, self.hi, self.lam_at = field, tv, lo, hi, lam_at

    def __call__(self, tau, y, rows=None):
        div = getattr(self.field, "divergence", None)
        if div is not None:
            div.rows = rows  # the batch rows being evaluated (per-example dopri5 evaluates only running ones)
        if isinstance(tau, Tensor) and tau.ndim == 1:  # per-example τ
            lam = self.tv.to_lam(tau).clamp(self.lo, self.hi).to(y[0].dtype)
            jac = self.tv.dlam_dtau(tau).to(y[0].dtype)
        else:
            tau = float(tau)
            lam = self.lam_at(tau) if self.lam_at is not None else None
            if lam is None:
                lam = float(self.tv.to_lam(torch.tensor(tau, dtype=torch.float64)).clamp(self.lo, self.hi))
            jac = float(self.tv.dlam_dtau(torch.tensor(tau, dtype=torch.float64)))
        dy = self.field(lam, y)
        if self.tv.name == "lambda":
            return dy
        return tuple(v * (bcast(jac, v) if isinstance(jac, Tensor) else jac) for v in dy)


def _ends(t0: float, t1: float, lam0: float, lam1: float, dtype):
    """τ ↦ the exact λ₀/λ₁ where the solver's τ (kept in the state's dtype) is an end up to its round-off, so that the
    first and last evaluations sit at the ends (a previous leg's evaluation there can be reused); else None."""
    eps = 4 * torch.finfo(dtype).eps

    def lam_at(tau: float):
        for t, lam in ((t0, lam0), (t1, lam1)):
            if abs(tau - t) <= eps * max(1.0, abs(t)):
                return lam
        return None
    return lam_at


def integrate_ode(model, dynamics: Dynamics, x: Tensor, lam0: float, lam1: float, *, solver="euler",
                  steps: int | None = None, grid=None, track: bool = False, logp0=None,
                  divergence: str | Divergence | None = None, generator=None, callback=None, progress=None,
                  first_eval: Eval | None = None, desc: str = "ode", **solver_options) -> Samples:
    """Integrate an ODE dynamics from λ₀ to λ₁ (either direction) by ``solver`` — a registered name
    (:data:`~diffdensity.registry.SOLVERS`) or a :class:`~diffdensity.solvers.Solver` — tracking log p from
    ``logp0`` (default 0) by the §2.4 rule if ``track``. ``solver_options`` build a named solver (``rtol``, ``atol``,
    ``max_steps``, ``control`` for dopri5; ``quadrature`` for euler; ``time``: the variable it steps in).

    Fixed-step solvers run on ``steps`` over ``grid`` (a kind of :meth:`Schedule.grid`: "lambda", "t", "sigma",
    "edm", "natural"; default the schedule's ``default_grid``) or on ``grid`` given as λ values; adaptive ones
    choose their own steps. ``first_eval``: an evaluation at (λ₀, x) made by a previous leg (``Samples.last``),
    reused for the first stage when it holds what that stage needs."""
    solver = resolve(solver, **solver_options)
    if dynamics.stochastic:
        raise ValueError(f"{type(dynamics).__name__} has noise; integrate it with integrate_sde.")
    m = prepare(model, x, "x")
    lam0, lam1 = float(lam0), float(lam1)
    sch = dynamics.schedule
    sch.check_lam(lam0, "lam0")
    sch.check_lam(lam1, "lam1")
    tv = sch.time_variable(solver.variable_for(sch, None))
    field = AugmentedODE(m, dynamics, track, Divergence.of(divergence, generator), 1 if lam1 >= lam0 else -1,
                         first_eval=first_eval)
    leg = _Leg(field, tv, lam0, lam1, track, desc)
    y0 = _initial(x, track, logp0)
    with torch.no_grad():
        steps = solver_steps(solver, steps, grid)
        if solver.adaptive:
            sol = leg.adaptive(solver, y0, progress, callback)
        else:
            g = _grid(sch, lam0, lam1, steps, grid, solver.grid or DEFAULT_GRID)
            sol = leg.fixed(solver, y0, g, progress, callback)
    check_state(desc, lam1, *sol.y)
    return Samples(sol.y[0], sol.y[1] if track else None, m.nfe, field.last, leg.stderr)


def solver_steps(solver, steps, grid, default: int | None = None):
    """The steps a solve takes: refused for an adaptive solver (it chooses its own), else ``steps``, or ``default``
    when neither steps nor a grid of λ values is given."""
    given_grid = grid is not None and not isinstance(grid, str)
    if solver.adaptive and (steps is not None or given_grid):
        raise ValueError(f"solver={solver.name!r} chooses its own steps (rtol/atol); steps/grid are for the "
                         "fixed-step solvers.")
    return default if (steps is None and not given_grid and not solver.adaptive) else steps


class _Leg:
    """One ODE leg's plumbing between λ and the solver's variable τ: the field in τ, the reporting hook, the bar."""

    def __init__(self, field, tv, lam0: float, lam1: float, track: bool, desc: str):
        self.field, self.tv, self.lam0, self.lam1, self.track, self.desc = field, tv, lam0, lam1, track, desc
        self.lo, self.hi = min(lam0, lam1), max(lam0, lam1)
        self.stderr: Tensor | None = None  # of the tracked log p, where the solve can tell it (fixed steps)

    def adaptive(self, solver, y0, progress, callback):
        lam0, lam1, tv = self.lam0, self.lam1, self.tv
        t0, t1 = (float(v) for v in tv.to_tau(torch.tensor([lam0, lam1], dtype=torch.float64)))
        bar = _bar(progress, round(abs(lam1 - lam0), 6), self.desc)
        report = _reporter(callback, bar, self.field, self.track, self.desc, True, lam0)
        func = _InTime(self.field, tv, self.lo, self.hi, _ends(t0, t1, lam0, lam1, y0[0].dtype))
        sign = 1 if lam1 >= lam0 else -1

        def on_step(i, tau, y):
            lam = tv.to_lam(torch.as_tensor(tau, dtype=torch.float64)).clamp(self.lo, self.hi)
            report(i, lam0 + sign * float((lam - lam0).abs().min()), y)  # per example: the least advanced one
        try:
            return solver.solve(func, y0, t0, t1, on_step=on_step)
        finally:
            _close(bar)

    def fixed(self, solver, y0, g: Tensor, progress, callback):
        tv = self.tv
        bar = _bar(progress, g.numel() - 1, self.desc)
        report = _reporter(callback, bar, self.field, self.track, self.desc)
        taus = tv.to_tau(g)
        lams = dict(zip(taus.tolist(), g.tolist()))  # grid nodes map back to their exact λ
        func = _InTime(self.field, tv, self.lo, self.hi, lams.get)
        problem = Problem(taus.tolist(), n_integrals=1 if self.track else 0, u=g.tolist(),
                          dtau_du=(1.0 / tv.dlam_dtau(taus)).tolist(), lams=g.tolist(),
                          schedule=self.field.dyn.schedule)
        try:
            sol = odeint(func, y0, taus, method=solver, problem=problem,
                         callback=lambda i, tau, y: report(i, float(g[i + 1]), y))
        finally:
            _close(bar)
        if self.track:
            scale = None if tv.name == "lambda" else \
                (lambda tau: float(tv.dlam_dtau(torch.tensor(tau, dtype=torch.float64))))
            self.stderr = combine_stderr(integral_weights(solver, problem, scale), self.field.rate_vars)
        return sol


def combine_stderr(weights, variances) -> Tensor | None:
    """√(Σ_e w_e² v_e): the standard error of Σ_e w_e r_e for independent rate errors of variances v_e (None if any
    v_e is unknown, or the counts disagree)."""
    if not variances or len(weights) != len(variances) or any(v is None for v in variances):
        return None
    return torch.stack([w * w * v for w, v in zip(weights, variances)]).sum(0).sqrt()


def _close(bar):
    if bar is not None:
        bar.close()


def integrate_sde(model, dynamics: Dynamics, x: Tensor, lam0: float, lam1: float, *, track: bool = False,
                  logp0=None, steps: int | None = None, grid=None, tracker: str | None = None,
                  divergence: str | Divergence | None = None, generator=None, dw: Tensor | None = None,
                  callback=None, progress=None, desc: str = "sde", end_needs=frozenset()) -> Samples:
    """Integrate an SDE dynamics from λ₀ to λ₁ by Euler–Maruyama on ``steps`` or a ``grid``, tracking log p from
    ``logp0`` if ``track``. ``tracker``: "corrected" (math.md §1.2b; the default for a reverse SDE integrated upward,
    no extra score evaluation but one at the very end) or "em" (§2.4 by Euler–Maruyama, any dynamics).
    Hutchinson probes named by a string are drawn afresh each step. ``dw`` fixes the Brownian increments.
    ``end_needs``: what the evaluation at λ₁ should also hold (e.g. {"lap"}) so that a next leg can reuse it as its
    ``first_eval``: the corrected tracker's end evaluation then costs nothing extra over the whole chain.
    ``grid``: λ values or a kind of :meth:`Schedule.grid` (the SDE is stepped in λ)."""
    if tracker is None:
        tracker = "corrected" if dynamics.reverse_sde and lam1 >= lam0 else "em"
    if tracker not in TRACKERS:
        raise ValueError(f"tracker={tracker!r}; choose one of {TRACKERS}.")
    m = prepare(model, x, "x")
    lam0, lam1 = float(lam0), float(lam1)
    div = divergence if isinstance(divergence, Divergence) or divergence is None else \
        Divergence(divergence, generator=generator, fixed=False)
    sde = AugmentedSDE(m, dynamics, track, tracker, div, 1 if lam1 >= lam0 else -1, end=(lam1, end_needs))
    g = _grid(dynamics.schedule, lam0, lam1, steps, grid, "lambda")
    bar = _bar(progress, g.numel() - 1, desc)
    with torch.no_grad():
        sol = sdeint(sde, _initial(x, track, logp0), g, generator=generator, dw=dw,
                     callback=_reporter(callback, bar, sde, track, desc))
    _close(bar)
    stderr = None
    if track:  # Euler–Maruyama adds h_e · rate_e; the corrected tracker reads no divergence
        stderr = torch.zeros_like(sol.y[1]) if sde.corrected else \
            combine_stderr((g[1:] - g[:-1]).tolist(), sde.rate_vars)
    last = sde.last if sde.last is not None and float(sde.last.lam) == lam1 else None
    if last is not None and not torch.equal(last.x, sol.y[0]):
        last = None
    return Samples(sol.y[0], sol.y[1] if track else None, m.nfe, last, stderr)
