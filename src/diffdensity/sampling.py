"""Samplers: a dynamics, the log-density rule if asked, one integration leg (integrate.py) per segment.

Generation integrates λ upward from ``schedule.lambda_min`` (noise) to ``schedule.lambda_max`` (data).
Each sampler returns :class:`Samples` (x, logp, nfe); nfe counts score evaluations.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .adapters import warn_if_guided
from ._checks import check_choice, check_count, check_flag, prior_values
from ._rng import as_generator
from .dynamics import HDODE, PFODE, ReverseSDE
from .evaluation import Divergence
from .integrate import Samples, integrate_ode, integrate_sde, prepare, solver_steps
from .solvers import Solver, resolve
from .tracking import TRACKERS

__all__ = ["Samples", "sample", "sample_ode", "sample_sde", "sample_hd", "threshold_to_lam", "split_steps"]


def _prior_logp(sch, x_T: Tensor, track: bool, prior):
    return prior_values((prior or sch.prior_log_prob)(x_T), x_T) if track else None


def _entry(x_T: Tensor, track_logp, generator):
    """The checks every sampler makes on entry: a bool ``track_logp``; the generator (an int seed is accepted)."""
    check_flag(track_logp, "track_logp")
    return as_generator(generator)


def sample_ode(model, x_T: Tensor, steps: int | None = None, solver: str | Solver = "euler", track_logp: bool = False,
               divergence: str = "hutchinson", generator: torch.Generator | None = None, *, rtol: float = 1e-5,
               atol: float = 1e-5, n_probes: int = 1, prior=None, grid=None, callback=None,
               progress=None, time: str | None = "natural") -> Samples:
    """PF-ODE from noise to data; with ``track_logp`` the instantaneous change of variables (Eq. 3 of
    Karczewski et al. 2025a, math.md §1.1) from ``prior(x_T)`` (default: the schedule's Gaussian prior).
    ``steps`` (default 256) is for the fixed-step solvers on ``grid`` (λ values, or a kind: "lambda", "t", "sigma",
    "edm", "natural"; default the schedule's ``default_grid``); "dopri5" chooses its own (giving both is an error).
    ``solver``: a name of :data:`~diffdensity.registry.SOLVERS` ("euler", "heun", "ab2", "dpmpp2m", "dopri5") or a
    solver object; ``rtol``/``atol`` apply to adaptive ones. ``time``: the integration variable of the generic
    fixed-step and adaptive solvers. ``generator`` may be an int seed."""
    generator = _entry(x_T, track_logp, generator)
    prepare(model, x_T)
    sch = model.schedule
    solver = resolve(solver, strict=False, rtol=rtol, atol=atol, time=time)
    # fresh probes at every evaluation on a fixed grid (their errors average over the steps, math.md §I.4); an
    # adaptive solver's error control needs the probe held
    div = Divergence(divergence, n_probes=n_probes, generator=generator, fixed=solver.adaptive) if track_logp else None
    steps = solver_steps(solver, steps, grid, default=256)
    return integrate_ode(model, PFODE(sch), x_T, sch.lambda_min, sch.lambda_max, track=track_logp,
                         logp0=_prior_logp(sch, x_T, track_logp, prior), solver=solver,
                         steps=steps, grid=grid, divergence=div, callback=callback,
                         progress=progress, desc="sample_ode")


def sample_sde(model, x_T: Tensor, steps: int = 1024, track_logp: bool = True, tracker: str = "corrected",
               generator: torch.Generator | None = None, *, dw: Tensor | None = None, prior=None, grid=None,
               callback=None, progress=None) -> Samples:
    """Reverse SDE from noise to data by Euler–Maruyama, with log p tracked at no extra score evaluation
    (Theorem 1 of Karczewski et al. 2025a). ``tracker="corrected"`` (default) is math.md §1.2b; ``"em"`` is
    the reference code's plain Euler–Maruyama on the augmented SDE. ``dw`` fixes the Brownian increments.
    ``grid``: λ values (e.g. a model's own discrete timesteps) or a kind ("lambda" default, "t", "sigma", "edm")."""
    check_choice(tracker, "tracker", TRACKERS)
    generator = _entry(x_T, track_logp, generator)
    prepare(model, x_T)
    if track_logp:
        warn_if_guided(model)
    sch = model.schedule
    return integrate_sde(model, ReverseSDE(sch), x_T, sch.lambda_min, sch.lambda_max, track=track_logp,
                         logp0=_prior_logp(sch, x_T, track_logp, prior),
                         steps=steps if grid is None or isinstance(grid, str) else None,
                         grid=grid, tracker=tracker, generator=generator, dw=dw, callback=callback,
                         progress=progress, desc="sample_sde")


# ------------------------------------------------------------------------------ high-density sampling (issue 8)
THRESHOLD_KINDS = ("lam", "t", "sigma")
FIRST_LEGS = ("ode", "sde")


def threshold_to_lam(schedule, threshold, kind: str = "lam") -> float:
    """A threshold given as λ, as the schedule's own time t (``schedule.time_to_lam``) or as the noise level σ
    (σ(λ) is decreasing in λ: solved by bisection on ``schedule.alpha_sigma``) -> λ, checked against the range."""
    if kind not in THRESHOLD_KINDS:
        raise ValueError(f"threshold_kind={kind!r}; choose one of {THRESHOLD_KINDS}.")
    if kind == "t":
        lam = float(schedule.time_to_lam(torch.as_tensor(float(threshold), dtype=torch.float64)))
    elif kind == "sigma":
        target = float(threshold)
        lo, hi = schedule.lambda_min, schedule.lambda_max
        sig = lambda v: float(schedule.alpha_sigma(torch.tensor(v, dtype=torch.float64))[1])  # noqa: E731
        if not sig(hi) - 1e-12 <= target <= sig(lo) + 1e-12:
            raise ValueError(f"threshold σ={target:g} is outside this schedule's noise range "
                             f"[{sig(hi):.4g}, {sig(lo):.4g}]; pass a σ inside it.")
        for _ in range(200):  # bisection: σ decreases with λ
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if sig(mid) > target else (lo, mid)
        lam = 0.5 * (lo + hi)
    else:
        lam = float(threshold)
    schedule.check_lam(lam, "threshold (as λ)")
    return min(max(lam, schedule.lambda_min), schedule.lambda_max)


def split_steps(schedule, lam_thr: float, steps: int, reference_split: bool = False) -> tuple[int, int]:
    """Steps of the two legs of Algorithm 1 in proportion to their λ lengths (at least one each where a leg has
    length). ``reference_split=True`` swaps them, as the reference code's demo does (math.md §1.6)."""
    check_count(steps, "steps")
    lo, hi = schedule.lambda_min, schedule.lambda_max
    if lam_thr <= lo:
        return 0, int(steps)
    if lam_thr >= hi:
        return int(steps), 0
    if steps < 2:
        raise ValueError(f"steps={steps}: a threshold inside (λ_min, λ_max) needs at least 2 steps (one per leg).")
    n1 = min(max(round(steps * (lam_thr - lo) / (hi - lo)), 1), int(steps) - 1)
    n1, n2 = n1, int(steps) - n1
    return (n2, n1) if reference_split else (n1, n2)


def sample_hd(model, x_T: Tensor, threshold, steps: int = 1024, first: str = "ode",
              generator: torch.Generator | None = None, *, track_logp: bool = False, divergence: str = "hutchinson",
              n_probes: int = 1, solver: str | Solver = "euler", threshold_kind: str = "lam", tracker: str = "corrected",
              reference_split: bool = False, rtol: float = 1e-5, atol: float = 1e-5, prior=None,
              dw: Tensor | None = None, callback=None, progress=None) -> Samples:
    """High-density sampling, Algorithm 1 of Karczewski et al. 2025a (math.md §1.6).

    Leg 1 reaches the threshold λ_thr from λ_min by the PF-ODE (``first="ode"``, ``solver``) or the reverse SDE
    (``first="sde"``, Euler–Maruyama; with ``track_logp`` its log p is tracked by Theorem 1 with the ``tracker``,
    no divergence and no extra score evaluation per step); leg 2 is the high-density ODE dx/dλ = f x + g2 s from
    λ_thr to λ_max (``solver``; its log p by math.md §1.4 with the ``divergence`` estimator). The threshold is a λ,
    or the schedule's own time t or noise level σ (``threshold_kind``). ``steps`` are split in proportion to the
    two λ-segments; the reference code swaps the two counts (``reference_split=True`` reproduces that). With
    solver="dopri5" the ODE legs choose their own steps. ``dw`` fixes the SDE leg's Brownian increments; ``prior``
    (default: the schedule's Gaussian) gives log p(x_T). ``nfe`` is the two legs' score evaluations summed.
    """
    check_choice(first, "first", FIRST_LEGS)
    generator = _entry(x_T, track_logp, generator)
    solver = resolve(solver, strict=False, rtol=rtol, atol=atol)
    prepare(model, x_T)
    if track_logp:
        warn_if_guided(model)
    sch = model.schedule
    lam_thr = threshold_to_lam(sch, threshold, threshold_kind)
    n1, n2 = split_steps(sch, lam_thr, steps, reference_split)
    adaptive = solver.adaptive
    div = Divergence(divergence, n_probes=n_probes, generator=generator, fixed=adaptive) if track_logp else None
    x, logp, nfe, last = x_T, _prior_logp(sch, x_T, track_logp, prior), 0, None
    var: Tensor | None = torch.zeros_like(logp) if logp is not None else None  # the legs' errors are independent
    if n1:
        if first == "ode":
            leg = integrate_ode(model, PFODE(sch), x, sch.lambda_min, lam_thr, track=track_logp, logp0=logp,
                                solver=solver, steps=None if adaptive else n1, divergence=div,
                                generator=generator, callback=callback, progress=progress, desc="sample_hd: PF-ODE")
        else:
            # the SDE leg's end evaluation (the corrected tracker makes one) also holds what the HD leg's first
            # stage needs, and is handed over: the SDE leg costs no score evaluation beyond its steps
            leg = integrate_sde(model, ReverseSDE(sch), x, sch.lambda_min, lam_thr, track=track_logp, logp0=logp,
                                steps=n1, tracker=tracker, generator=generator, dw=dw, callback=callback, progress=progress,
                                desc="sample_hd: SDE", divergence=div, end_needs={"lap"} if track_logp else ())
        x, logp, nfe, last = leg.x, leg.logp, nfe + leg.nfe, leg.last
        var = None if var is None or leg.stderr is None else var + leg.stderr ** 2
    if n2:
        leg = integrate_ode(model, HDODE(sch), x, lam_thr, sch.lambda_max, track=track_logp, logp0=logp,
                            solver=solver, steps=None if adaptive else n2, divergence=div,
                            generator=generator, callback=callback, progress=progress, desc="sample_hd: HD-ODE",
                            first_eval=last)
        x, logp, nfe = leg.x, leg.logp, nfe + leg.nfe
        var = None if var is None or leg.stderr is None else var + leg.stderr ** 2
    return Samples(x, logp, nfe, stderr=None if var is None else var.sqrt())


# ------------------------------------------------------------------------------ one runner for every sampler
def sample(model, x_T: Tensor, method: str = "sde", steps: int | None = None,
           generator: torch.Generator | None = None, *, callback=None, progress=None, **options) -> Samples:
    """Run the sampler registered as ``method`` (:data:`diffdensity.registry.SAMPLERS`: "ode", "sde", "hd", the
    guided ones, "distributional", "ddim") with ``steps`` (default: its own) and the ``options`` that apply to it
    (an option that does not apply is an error, not ignored; ``None`` values count as not given)."""
    from .registry import SAMPLERS

    entry = SAMPLERS.get(method)
    options = {k: v for k, v in options.items() if v is not None}
    allowed = entry.meta.get("options", ())
    extra = sorted(set(options) - set(allowed))
    if extra:
        raise ValueError(f"{', '.join(extra)} do(es) not apply to the {method!r} sampler; it takes "
                         f"{', '.join(allowed) or 'no options'}.")
    missing = [a for a in entry.meta.get("args", ()) if a not in options]
    if missing:
        raise ValueError(f"the {method!r} sampler needs {', '.join(missing)}.")
    args = [options.pop(a) for a in entry.meta.get("args", ())]
    generator = as_generator(generator)
    steps = entry.meta["default_steps"] if steps is None else steps
    return entry.load()(model, x_T, *args, steps=steps, generator=generator, callback=callback, progress=progress,
                        **options)
