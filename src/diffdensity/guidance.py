"""Prior guidance, density guidance (DG-ODE, Eq 23) and stochastic density guidance (SDG, Eq 25) of
Karczewski et al. 2025b (math.md §2.3, §2.5, §2.6).

**Direction convention.** In every function here ``q`` ∈ (0, 1) is a quantile of *log-density*: higher q means
higher log p₀ (smoother samples, less detail), q = 0.5 is the plain PF-ODE from a median-norm latent.
Density guidance uses the paper's q unchanged (the rate ½√(2D)Φ⁻¹(q) per unit λ above the PF-ODE's).
Prior guidance moves the latent to the norm σ_T·χ_D⁻¹(1 − q): the reference code's (and the paper's) prior-guidance
``q_norm`` is a quantile of the latent's *norm*, the opposite direction, so ``q_norm = 1 − q`` (math.md §2.3).

**Feasibility.** A requested rate cannot always be met: near a mode ‖s‖ → 0 and η blows up (math.md §2.5).
The guided dynamics judge every sample along its path: a non-finite state or score, or a realised extra log-density
(the trapezoid rule on the guidance correction's displacement, summed over steps) that misses the requested one by
more than MONITOR_ATOL + MONITOR_K × the step error of its PF-ODE and noise displacements (estimated alike), stops the
solve with :class:`InfeasibleGuidance`, which names q, the λ reached and the most extreme q (between 0.5 and q) that
ran through on the same latents (bisection). A single step in which the score turns (noise carrying a sample across
a mode) is no alarm unless it costs that much log-density.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from scipy.stats import chi
from torch import Tensor

from ._checks import at, bcast, check_count, flat_dot, flat_sq, per_sample
from .dynamics import Dynamics, ProjectedNoise
from .evaluation import Divergence, Eval, evaluate
from .integrate import Samples, integrate_ode, integrate_sde, prepare
from .solvers import Solver, resolve
from .sampling import _prior_logp

__all__ = ["InfeasibleGuidance", "DensityGuidedODE", "StochasticDensityGuided", "NOISE_PRESETS", "guidance_quantile",
           "prior_rescale", "median_rescale", "sample_prior_guided", "sample_density_guided",
           "sample_stochastic_density_guided", "sdg_rate_residual"]


def _indicator(lam, a: float, b: float, strength: float):
    """strength·1{a < λ < b} (a float for a float λ, a tensor for a tensor λ)."""
    if not isinstance(lam, Tensor):
        return strength if a < float(lam) < b else 0.0
    return strength * ((lam > a) & (lam < b)).to(lam.dtype if lam.is_floating_point() else torch.float64)


NOISE_PRESETS: dict[str, Callable] = {
    # the reference code's windows (guidance.py): structure-changing early noise, texture-only late noise
    "early": lambda lam: _indicator(lam, -10.0, -4.0, 0.2),
    "late": lambda lam: _indicator(lam, -3.0, 9.0, 0.3),
}


class InfeasibleGuidance(ValueError):
    """The requested log-density rate cannot be met on these latents (math.md §2.5): raised instead of returning
    runaway or NaN samples. Attributes: ``q``, ``lam`` (λ reached), ``n_bad`` (samples that failed),
    ``feasible_q`` (the most extreme q found to run through, or None), ``reason``."""

    def __init__(self, q, lam, n_bad, n, reason, feasible_q=None):
        self.q, self.lam, self.n_bad, self.n, self.reason, self.feasible_q = q, lam, n_bad, n, reason, feasible_q
        fq = "not searched" if feasible_q is None else f"{feasible_q:.4g}"
        super().__init__(
            f"density guidance with q={q:g} is infeasible: at λ = {lam:.4g}, {n_bad} of {n} samples {reason}. "
            f"The requested rate ½√(2D)Φ⁻¹(q) cannot be met there (η blows up near modes). Most extreme q found "
            f"feasible on these latents: {fq}; use a q closer to 0.5, more steps, or a shorter λ range.")


# the feasibility monitor's tolerance on a sample's summed miss (nats): absolute, and in units of the step error the
# solver makes anyway on the same path (its PF-ODE and noise displacements), estimated as the miss is
MONITOR_ATOL, MONITOR_K = 0.5, 3.0


class _Stop(Exception):
    def __init__(self, lam, n_bad, reason):
        self.lam, self.n_bad, self.reason = lam, n_bad, reason


def guidance_quantile(q: float, D: int) -> float:
    """√(2D)·Φ⁻¹(q): twice the extra log-density rate per unit λ of density guidance (math.md §2.5)."""
    q = _check_q(q)
    return math.sqrt(2 * D) * float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(q, dtype=torch.float64)))


def _check_q(q) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float)) and not (isinstance(q, Tensor) and q.numel() == 1):
        raise TypeError(f"q must be a number in (0, 1), got {type(q).__name__}.")
    q = float(q)
    if not 0.0 < q < 1.0:
        raise ValueError(f"q={q!r}: need a quantile strictly between 0 and 1 (0.5 = no guidance).")
    return q


class _Guided(Dynamics):
    """Shared by the guided dynamics: the guidance quantile and the feasibility monitor."""

    def __init__(self, schedule, q: float, D: int, check: bool = True):
        super().__init__(schedule)
        self.q = _check_q(q)
        self.quant = guidance_quantile(self.q, D)
        self.check = check
        self._prev: Tensor | None = None
        self._prev_lam: float | None = None
        # the previous evaluation's requested rate, PF-ODE rate and state, and each sample's running shortfall and
        # error estimate (typed Any: None until the first evaluation, tensors after)
        self._rate: Any = None
        self._pf: Any = None
        self._x: Any = None
        self._miss: Any = None
        self._err: Any = None

    def _monitor(self, ev: Eval, rate) -> None:
        """Stop on a non-finite state/score, or once a sample's realised extra log-density misses the requested one
        beyond the discretisation error estimated along its path (``rate``: the requested d log p/dλ, or None)."""
        if not self.check:
            return
        s = ev.s
        bad = ~(torch.isfinite(ev.x.reshape(ev.x.shape[0], -1)).all(1) & torch.isfinite(s.reshape(s.shape[0], -1)).all(1))
        if bad.any():
            raise _Stop(float(ev.lam), int(bad.sum()), "have a non-finite state or score")
        lam = float(ev.lam)
        if self._prev is not None and self._prev_lam is not None and lam != self._prev_lam and self._rate is not None:
            self._account(ev.x, s, lam - self._prev_lam, lam)
        if self._prev is None or lam != self._prev_lam or rate is None:
            self._rate = None if rate is None else per_sample(rate, s).detach()
            self._pf, self._x = self.pf_drift(ev).detach(), ev.x.detach()
        self._prev, self._prev_lam = s.detach(), lam

    def close(self, model, out: Samples, lam: float) -> Samples:
        """Judge the last step too: one more score evaluation at the end state (not counted in ``out.nfe``)."""
        if self.check and self._rate is not None:
            self._monitor(evaluate(model, lam, out.x), None)
        return out

    def _account(self, x: Tensor, s: Tensor, h: float, lam: float) -> None:
        """One step: e_k = ½⟨s_{k+1} − s_k, δ_k⟩ (trapezoid minus left-point gain) summed signed for the correction's δ_k
        (the miss) and absolute for the PF-ODE's and noise's (the step error); stop where miss > ATOL + K·error."""
        prev = self._prev
        assert prev is not None  # _monitor calls this only after a first evaluation
        ds = s - prev
        sq = flat_sq(prev).clamp_min(torch.finfo(prev.dtype).tiny)
        req = h * self._rate
        e = 0.5 * req * flat_dot(ds, prev) / sq
        noise = x - self._x - h * (self._pf + bcast(self._rate / sq, prev) * prev)
        err = (0.5 * h * flat_dot(ds, self._pf)).abs() + (0.5 * flat_dot(ds, noise)).abs()
        if self._miss is None:
            self._miss, self._err = torch.zeros_like(e), torch.zeros_like(e)
        self._miss, self._err = self._miss + e, self._err + err
        off = self._miss.abs() > MONITOR_ATOL + MONITOR_K * self._err
        if off.any():
            i = int(torch.argmax(torch.where(off, self._miss.abs(), torch.zeros_like(e))))
            raise _Stop(lam, int(off.sum()), f"missed the requested extra log-density by {float(self._miss[i]):+.3g} "
                        f"nats against an estimated step error of {float(self._err[i]):.3g} (sample {i})")


class DensityGuidedODE(_Guided):
    """DG-ODE (Eq 23, math.md §2.5): dx/dλ = f x + ½ g2 η s, η = 1 + √(2D)Φ⁻¹(q)/‖σ s‖², so that
    d log p/dλ = −div u + ½√(2D)Φ⁻¹(q). The correction ½ g2 (η − 1) s = ½√(2D)Φ⁻¹(q) s/‖s‖² is written directly."""

    def drift(self, ev):
        self._monitor(ev, 0.5 * self.quant if self.quant != 0.0 else None)
        if self.quant == 0.0:
            return self.pf_drift(ev)
        s = ev.s
        return self.pf_drift(ev) + bcast(0.5 * self.quant / flat_sq(s), s) * s

    def eta(self, ev: Eval) -> Tensor:
        """η per sample (for diagnostics)."""
        return 1.0 + self.quant / (per_sample(at(self.schedule.g2, ev.lam, ev.x), ev.x) * flat_sq(ev.s))


class StochasticDensityGuided(_Guided):
    """SDG (Eq 25, math.md §2.6): dx = (f x + ½ g2 η' s) dλ + φ̃ √g2 (I − ŝŝᵀ) dW with
    η' = 1 + (√(2D)Φ⁻¹(q) − σ²φ̃²(Δ log p − [ŝᵀ∇²log p ŝ])) / ‖σ s‖²; the bracketed term only with ``exact_ito``
    (the reference code drops it, shifting the realised log p by −½∫φ̃² g2 ŝᵀ∇²log p ŝ dλ)."""

    def __init__(self, schedule, q: float, D: int, phi: Callable, exact_ito: bool = False, check: bool = True):
        super().__init__(schedule, q, D, check)
        self.phi, self.exact_ito = phi, bool(exact_ito)
        self.needs = frozenset({"lap", "hvp"}) if exact_ito else frozenset({"lap"})

    def c2(self, lam, x: Tensor) -> Tensor:
        """φ̃(λ)² g2(λ): the projected noise's variance rate."""
        phi = torch.as_tensor(self.phi(lam), dtype=x.dtype, device=x.device)
        return phi**2 * self.schedule.g2(torch.as_tensor(lam, dtype=x.dtype, device=x.device))

    def drift(self, ev):
        s, x = ev.s, ev.x
        c2 = per_sample(self.c2(ev.lam, x), x)
        lap = ev.lap
        if self.exact_ito:
            sh = ProjectedNoise.unit_score(ev)
            lap = lap - flat_dot(sh, ev.hvp(sh))
        active = self.quant != 0.0 or bool((c2 != 0).any())
        self._monitor(ev, 0.5 * (self.quant - c2 * lap) if active else None)
        # ½ g2 (η' − 1) s = ½ (√(2D)Φ⁻¹(q) − φ̃² g2 Δ') s/‖s‖²
        return self.pf_drift(ev) + bcast(0.5 * (self.quant - c2 * lap) / flat_sq(s), s) * s

    def noise(self, lam, x):
        return ProjectedNoise(self.c2(lam, x))


# --- latents ----------------------------------------------------------------------------------------------------

def _rescale_to(sch, x_T: Tensor, radius: float) -> Tensor:
    norm = x_T.reshape(x_T.shape[0], -1).norm(dim=1).clamp_min(torch.finfo(x_T.dtype).tiny)
    return x_T * bcast(sch.prior_std * radius / norm, x_T)


def prior_rescale(schedule, x_T: Tensor, q: float) -> Tensor:
    """Prior guidance (math.md §2.3): x_T rescaled to norm σ_T·χ_D⁻¹(1 − q), so higher q = higher log p_T
    (the reference's norm quantile is q_norm = 1 − q)."""
    q = _check_q(q)
    return _rescale_to(schedule, x_T, float(chi.ppf(1.0 - q, df=x_T[0].numel())))


def median_rescale(schedule, x_T: Tensor) -> Tensor:
    """x_T moved to the median norm σ_T·χ_D⁻¹(½), as the reference's density-guided samplers start."""
    return _rescale_to(schedule, x_T, float(chi.ppf(0.5, df=x_T[0].numel())))


def _phi_fn(noise) -> Callable:
    if isinstance(noise, str):
        if noise not in NOISE_PRESETS:
            raise ValueError(f"noise={noise!r}; choose a preset {sorted(NOISE_PRESETS)}, a number or a callable λ ↦ φ̃(λ).")
        return NOISE_PRESETS[noise]
    if isinstance(noise, (int, float)) and not isinstance(noise, bool):
        if not (math.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise={noise!r}: a constant strength must be finite and ≥ 0.")
        return lambda lam: float(noise)
    if callable(noise):
        return noise
    raise TypeError(f"noise must be a preset name {sorted(NOISE_PRESETS)}, a number or a callable λ ↦ φ̃(λ); "
                    f"got {type(noise).__name__}.")


def _run_guided(run: Callable[[float, bool], Samples], q: float, n: int, search: bool, bisect_iters: int) -> Samples:
    """run(q, track) with the feasibility monitor; on failure bisect q toward 0.5 for the error message."""
    try:
        return run(q, True)
    except _Stop as stop:
        feasible = None
        if search:
            ok, bad = 0.5, q
            for _ in range(bisect_iters):
                mid = 0.5 * (ok + bad)
                try:
                    run(mid, False)
                    ok = mid
                except _Stop:
                    bad = mid
            feasible = ok
        raise InfeasibleGuidance(q, stop.lam, stop.n_bad, n, stop.reason, feasible) from None


# --- samplers ---------------------------------------------------------------------------------------------------

def sample_prior_guided(model, x_T: Tensor, q: float, steps: int = 64, *, solver: str | Solver = "euler",
                        track_logp: bool = False, divergence: str = "hutchinson", generator=None, n_probes: int = 1,
                        prior=None, callback=None, progress=None) -> Samples:
    """Prior guidance (math.md §2.3): the latent rescaled to norm σ_T·χ_D⁻¹(1 − q) (higher q = higher log p),
    then the PF-ODE; ``track_logp`` as in :func:`sample_ode`."""
    from .sampling import sample_ode

    prepare(model, x_T)
    return sample_ode(model, prior_rescale(model.schedule, x_T, q), steps=steps, solver=solver, track_logp=track_logp,
                      divergence=divergence, generator=generator, n_probes=n_probes, prior=prior, callback=callback,
                      progress=progress)


def sample_density_guided(model, x_T: Tensor, q: float, steps: int = 64, *, solver: str | Solver = "euler",
                          track_logp: bool = False, divergence: str = "exact", generator=None, n_probes: int = 1,
                          rescale: bool = True, prior=None, check: bool = True, search: bool = True,
                          bisect_iters: int = 6, callback=None, progress=None) -> Samples:
    """Density guidance (Eq 23, math.md §2.5): the DG-ODE from the median-norm latent (``rescale``), so that
    d log p/dλ = −div u + ½√(2D)Φ⁻¹(q) (higher q = higher log p; q = 0.5 is the PF-ODE). ``track_logp`` follows
    log p by the §2.4 rule with ``divergence``. Raises :class:`InfeasibleGuidance` where the rate cannot be met."""
    prepare(model, x_T)
    solver = resolve(solver)
    if solver.adaptive:
        raise ValueError(f"solver={solver.name!r}; density guidance runs on a fixed grid (its feasibility monitor "
                         "compares consecutive evaluations): choose a fixed-step solver such as 'euler' or 'heun'.")
    check_count(steps, "steps")
    sch = model.schedule
    x0 = median_rescale(sch, x_T) if rescale else x_T
    D = x_T[0].numel()

    def run(qq, full):
        track = track_logp and full
        div = Divergence(divergence, n_probes=n_probes, generator=generator, fixed=False) if track else None
        dyn = DensityGuidedODE(sch, qq, D, check)
        return dyn.close(model, integrate_ode(model, dyn, x0, sch.lambda_min, sch.lambda_max, track=track,
                                              logp0=_prior_logp(sch, x0, track, prior), solver=solver, steps=steps,
                                              divergence=div, callback=callback if full else None,
                                              progress=progress if full else False,
                                              desc=f"density guidance q={qq:.3g}"), sch.lambda_max)

    return _run_guided(run, _check_q(q), x_T.shape[0], search, bisect_iters)


def sample_stochastic_density_guided(model, x_T: Tensor, q: float, noise, steps: int = 128,
                                     generator: torch.Generator | None = None, *, track_logp: bool = False,
                                     divergence: str = "hutchinson", exact_ito: bool = False, rescale: bool = True,
                                     prior=None, check: bool = True, search: bool = True, bisect_iters: int = 6,
                                     dw: Tensor | None = None, callback=None, progress=None) -> Samples:
    """Stochastic density guidance (Eq 25, math.md §2.6) by Euler–Maruyama from the median-norm latent: noise
    φ̃(λ)√g2 projected orthogonal to the score, Δ log p by ``divergence`` ("hutchinson": fresh probes per step, or
    "exact"). ``noise``: "early" | "late" (the reference's windows), a constant or a callable λ ↦ φ̃(λ).
    ``exact_ito`` adds the ŝᵀ∇²log p ŝ Itô term (one HVP per step) so the rate is met exactly in the mean."""
    prepare(model, x_T)
    check_count(steps, "steps")
    phi = _phi_fn(noise)
    sch = model.schedule
    x0 = median_rescale(sch, x_T) if rescale else x_T
    D = x_T[0].numel()
    state = generator.get_state() if generator is not None else None

    def run(qq, full):
        g = generator
        if not full and generator is not None:  # the bisection replays the same noise
            g = torch.Generator(device=generator.device)
            g.set_state(state)
        div = Divergence(divergence, generator=g, fixed=False)
        track = track_logp and full
        dyn = StochasticDensityGuided(sch, qq, D, phi, exact_ito, check)
        return dyn.close(model, integrate_sde(model, dyn, x0, sch.lambda_min, sch.lambda_max, track=track,
                                              logp0=_prior_logp(sch, x0, track, prior), steps=steps, tracker="em",
                                              divergence=div, generator=g, dw=dw,
                                              callback=callback if full else None,
                                              progress=progress if full else False,
                                              desc=f"stochastic density guidance q={qq:.3g}"), sch.lambda_max)

    return _run_guided(run, _check_q(q), x_T.shape[0], search, bisect_iters)


def sdg_rate_residual(oracle, q: float, phi: float, exact_ito: bool, n: int = 128, steps: int = 256,
                      lam0: float = -4.0, lam1: float = 4.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """On an exact oracle (a ``DiffusedMixture``), per path of SDG with constant φ̃ = ``phi`` from p_{λ0}: the realised
    log p change minus the target ∫(−div u)dλ + ½√(2D)Φ⁻¹(q)(λ1 − λ0), and the offset −½∫φ̃² g2 ŝᵀ∇²log p ŝ dλ that
    math.md §2.6 predicts for the reference's η' (left-point sums on the EM grid; x from ``seed``, noise from
    ``seed + 1``)."""
    sch, D = oracle.schedule, oracle.mixture.dim
    x0 = oracle.sample(n, lam0, generator=torch.Generator().manual_seed(seed))
    dyn = StochasticDensityGuided(sch, q, D, lambda lam: phi, exact_ito=exact_ito)
    h = (lam1 - lam0) / steps
    acc = {"pf": torch.zeros(n, dtype=x0.dtype), "off": torch.zeros(n, dtype=x0.dtype), "x": x0, "lam": lam0}

    def left_point(info):
        x, lam = acc["x"], acc["lam"]
        lt = torch.tensor(lam, dtype=x.dtype)
        acc["pf"] += h * (-D * sch.f(lt) - 0.5 * sch.g2(lt) * oracle.laplacian(x, lam))
        s = oracle.score(x, lam)
        sh = s / s.norm(dim=1, keepdim=True)
        acc["off"] += -0.5 * h * phi**2 * sch.g2(lt) * (sh * oracle.hvp(x, lam, sh)).sum(1)
        acc["x"], acc["lam"] = info["x"], info["lam"]

    out = integrate_sde(oracle, dyn, x0, lam0, lam1, steps=steps, divergence="exact", callback=left_point,
                        generator=torch.Generator().manual_seed(seed + 1), progress=False)
    r = oracle.log_prob(out.x, lam1) - oracle.log_prob(x0, lam0) - acc["pf"] - 0.5 * dyn.quant * (lam1 - lam0)
    return r, acc["off"]
