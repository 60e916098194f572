"""Dormand–Prince 5(4): adaptive solves through torchdiffeq (one step size per batch) or by hand (one per example),
with an NFE count, a step cap and per-step hooks; :class:`Dopri5` is the solver object."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torchdiffeq

from .._checks import NonFiniteError, check_choice
from .base import AdaptiveSolver, as_tuple
from .fixed import Solution

__all__ = ["Dopri5", "CONTROLS", "odeint_adaptive", "odeint_dopri5"]

CONTROLS = ("batch", "example")


class _Field:
    """func as torchdiffeq sees it: counts evaluations and reports each accepted step as (i, λ, y)."""

    on_accept: Callable | None

    def __init__(self, func, lo: float, hi: float):
        self.func, self.lo, self.hi, self.on_accept, self.n, self.steps = func, lo, hi, None, 0, 0

    def __call__(self, t, y):
        self.n += 1
        # Steps are made to end on the interval's end (step_t), so only the initial step-size probe can fall
        # outside it; clamping it keeps the vector field inside the model's λ range (it only sizes the first step).
        return as_tuple(self.func(t.clamp(self.lo, self.hi), y))

    def callback_accept_step(self, t0, y0, dt):
        self.steps += 1
        if self.on_accept is not None:  # y0: the state at the step's start; the step ends at t0 + dt
            self.on_accept(self.steps - 1, float(t0 + dt), as_tuple(y0), self.n)


_STIFF = "the ODE is stiff or the model diverges there; raise max_steps or the tolerances, or use a fixed-step solver."


def _check_controls(rtol, atol, max_steps) -> None:
    """Tolerances: positive finite numbers; max_steps: a positive integer."""
    if not (isinstance(rtol, (int, float)) and isinstance(atol, (int, float))) or isinstance(rtol, bool) \
            or isinstance(atol, bool):
        raise TypeError(f"rtol={rtol!r}, atol={atol!r}: tolerances must be numbers.")
    if not (rtol > 0 and atol > 0 and math.isfinite(rtol) and math.isfinite(atol)):
        raise ValueError(f"rtol={rtol}, atol={atol}: tolerances must be positive.")
    if isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps={max_steps!r}: need a positive integer.")


def odeint_adaptive(func, y0, lam0: float, lam1: float, rtol: float = 1e-5, atol: float = 1e-5,
                    method: str = "dopri5", max_steps: int = 10_000, on_accept=None, t_eval=None,
                    **options) -> Solution:
    """Integrate dy/dλ = func(λ, y) from lam0 to lam1 with torchdiffeq's adaptive ``method``.

    ``max_steps`` caps the accepted + rejected steps (RuntimeError naming the λ reached when hit);
    ``on_accept(i, lam, y_start, nfe)`` runs after each accepted step (y_start: the state where that step began).
    ``t_eval``: points strictly inside the interval where the solution is wanted too (torchdiffeq's dense output, no
    extra evaluation); they come back in ``Solution.path`` as one state tuple each.
    """
    _check_controls(rtol, atol, max_steps)
    y0 = as_tuple(y0)
    floor = 10 * torch.finfo(y0[0].dtype).eps
    if rtol < floor:
        raise ValueError(f"rtol={rtol:g} is below what {y0[0].dtype} can resolve (≥ {floor:.1e}); the solve would only "
                         "hit max_steps. Loosen it or use float64.")
    field = _Field(func, min(float(lam0), float(lam1)), max(float(lam0), float(lam1)))
    reached = [float(lam0)]

    def track(i, lam, y, nfe):
        reached[0] = lam
        if on_accept is not None:
            on_accept(i, lam, y, nfe)

    field.on_accept = track
    inner = [] if t_eval is None else [float(v) for v in t_eval]
    t = torch.tensor([float(lam0), *inner, float(lam1)], dtype=y0[0].dtype, device=y0[0].device)
    try:
        ys = torchdiffeq.odeint(field, y0, t, rtol=rtol, atol=atol, method=method,
                                options={"max_num_steps": int(max_steps), "step_t": t[-1:], **options})
    except AssertionError as e:  # torchdiffeq signals its failures by assert
        msg = str(e)
        if "max_num_steps" in msg:
            raise RuntimeError(
                f"{method} hit max_steps={max_steps} at λ = {reached[0]:.6g} of [{lam0:g} → {lam1:g}] after "
                f"{field.n} evaluations: {_STIFF}") from None
        if "non-finite" in msg or "underflow" in msg:
            raise NonFiniteError(
                f"{method}: the state became NaN/inf (or the step size underflowed) near λ = {reached[0]:.6g} of "
                f"[{lam0:g} → {lam1:g}]: the model returns NaN/inf there or the ODE diverges."
            ) from None
        raise RuntimeError(f"{method} failed at λ ≈ {reached[0]:.6g} of [{lam0:g} → {lam1:g}]: {msg[:300]}") from None
    path = [tuple(v[j] for v in ys) for j in range(1, len(inner) + 1)]
    return Solution(tuple(v[-1] for v in ys), field.n, path, field.steps)


# --- Dormand–Prince 5(4) with per-example step-size control -------------------------------------------------------
# Written by hand because torchdiffeq (and diffrax, torchode aside) controls one step size for the whole batch, so an
# example's result depends on its batch-mates (issue 12 item 7). Here every example has its own τ, step size and
# error test; only the examples still running are evaluated, on their own τ (the model takes per-sample λ).
# Tableau: Dormand & Prince (1980); controller and initial step as torchdiffeq's (Hairer, Nørsett & Wanner II.4).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((),
      (1 / 5,),
      (3 / 40, 9 / 40),
      (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_B5 = _A[6] + (0.0,)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(a - b for a, b in zip(_B5, _B4))
_SAFETY, _IFACTOR, _DFACTOR, _ORDER = 0.9, 10.0, 0.2, 5


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _comb(y, h, ks, coefs):
    """y + h Σ c_j k_j per example (h: (n,) float64)."""
    out = []
    for i, v in enumerate(y):
        acc = None
        for c, k in zip(coefs, ks):
            if c != 0.0:
                acc = c * k[i] if acc is None else acc + c * k[i]
        out.append(v if acc is None else v + _col(h, v) * acc)
    return tuple(out)


def _norm(y, scale_y0, scale_y1, rtol, atol, err):
    """Per-example mixed norm (torchdiffeq's): max over state components of the RMS of err / (atol + rtol max|y|)."""
    r = None
    for e, a, b in zip(err, scale_y0, scale_y1):
        sc = atol + rtol * torch.maximum(a.abs(), b.abs())
        q = (e / sc).reshape(e.shape[0], -1).pow(2).mean(1).sqrt().double()
        r = q if r is None else torch.maximum(r, q)
    return r


def odeint_dopri5(func, y0, t0: float, t1: float, rtol: float = 1e-5, atol: float = 1e-5,
                  max_steps: int = 10_000, on_step=None, t_eval=None) -> Solution:
    """Dormand–Prince 5(4) from τ = t0 to t1 with one step size and error control per example.

    ``func(tau, y, idx) -> dy/dτ``: ``tau`` a (n,) float64 tensor of the active examples' τ, ``y`` their states,
    ``idx`` their rows in the batch. ``max_steps`` caps each example's attempted steps. ``on_step(i, tau, y)`` runs
    after every round with the whole batch's τ (B,) and state. An example's result does not depend on the batch.
    ``t_eval``: τ values strictly inside (t0, t1), in order, where the states come back in ``Solution.path`` (one
    tuple each) by the 4th-order dense output of each example's own step (as torchdiffeq's), at no extra evaluation.
    """
    _check_controls(rtol, atol, max_steps)
    y = tuple(v.clone() for v in as_tuple(y0))
    B, dev = y[0].shape[0], y[0].device
    sgn = 1.0 if t1 >= t0 else -1.0
    tau = torch.full((B,), float(t0), dtype=torch.float64, device=dev)
    idx = torch.arange(B, device=dev)
    nfe = 0

    def f(t, yy, ii):
        nonlocal nfe
        nfe += 1
        return as_tuple(func(t, yy, ii))

    dense = _Dense(t_eval, y, sgn)
    k1 = f(tau, y, idx)
    h = _initial_step(lambda t, yy: f(t, yy, idx), tau, y, k1, rtol, atol, sgn, abs(t1 - t0))

    attempts = torch.zeros(B, dtype=torch.long, device=dev)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    rounds = 0
    while bool(active.any()):
        a = active.nonzero().reshape(-1)
        ya = tuple(v[a] for v in y)
        ta, k1a = tau[a], tuple(k[a] for k in k1)
        ha = torch.minimum(h[a], (t1 - ta).abs())
        ks, y5, err = _stages(lambda t, yy: f(t, yy, a), ya, ta, sgn * ha, k1a)
        ratio = _norm(ya, ya, y5, rtol, atol, err)
        ok = ratio <= 1
        attempts[a] += 1
        h[a] = ha * _step_factor(ratio, ok)
        acc = a[ok]
        if acc.numel():
            dense.fill(acc, ta[ok], ha[ok], tuple(v[ok] for v in ya), tuple(v[ok] for v in y5),
                       [tuple(c[ok] for c in k) for k in ks])
            tnew = ta[ok] + sgn * ha[ok]
            done = (t1 - tnew) * sgn <= 1e-12 * max(1.0, abs(t1))
            tau[acc] = torch.where(done, torch.full_like(tnew, float(t1)), tnew)
            for v, w in zip(y, y5):
                v[acc] = w[ok]
            for k, w in zip(k1, ks[6]):
                k[acc] = w[ok]
            active[acc[done]] = False
        if bool(((attempts >= max_steps) & active).any()):
            i = int((attempts * active).argmax())
            raise RuntimeError(f"dopri5 hit max_steps={max_steps} for example {i} at τ = {float(tau[i]):.6g} of "
                               f"[{t0:g} → {t1:g}] after {nfe} evaluations: {_STIFF}")
        if on_step is not None and acc.numel():
            on_step(rounds, tau, y)
        rounds += 1
    return Solution(y, nfe, dense.path(), int(attempts.max()))


def _stages(f, y, t, h, k1):
    """One Dormand–Prince step from (t, y) with signed step h (per example): the 7 stages, the 5th-order solution
    and the embedded error estimate."""
    ks = [k1]
    for j in range(1, 7):
        ks.append(f(t + _C[j] * h, _comb(y, h, ks, _A[j])))
    return ks, _comb(y, h, ks, _B5), _comb(tuple(torch.zeros_like(v) for v in y), h, ks, _E)


# torchdiffeq's dopri5 dense output: the midpoint weights of Shampine's continuous extension, then a quartic through
# y0, y1, the midpoint and both end slopes
_C_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
          187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)


class _Dense:
    """States at the requested τ (``t_eval``) of a per-example dopri5, filled in as each example's steps pass them."""

    def __init__(self, t_eval, y, sgn: float):
        self.t = None if t_eval is None else torch.as_tensor(t_eval, dtype=torch.float64, device=y[0].device)
        self.sgn = sgn
        if self.t is not None:
            self.out = [torch.zeros((v.shape[0], self.t.numel(), *v.shape[1:]), dtype=v.dtype, device=v.device)
                        for v in y]

    def fill(self, rows, t0, h, y0, y1, ks):
        """Interpolate the accepted steps [t0, t0 + sgn·h] of ``rows`` at the requested τ they cover."""
        if self.t is None:
            return
        s = self.sgn * (self.t[None, :] - t0[:, None])  # progress of each requested τ into each step
        inside = (s > 0) & (s <= h[:, None] * (1 + 1e-12))
        for r, j in inside.nonzero().tolist():
            x = float(s[r, j] / h[r])
            for c, (a, b) in enumerate(zip(y0, y1)):
                k = [kk[c][r] for kk in ks]
                dt = float(self.sgn * h[r])
                mid = a[r] + dt * sum(w * kj for w, kj in zip(_C_MID, k) if w != 0.0)
                self.out[c][rows[r], j] = _quartic(a[r], b[r], mid, k[0], k[-1], dt, x)

    def path(self) -> list:
        return [] if self.t is None else [tuple(o[:, j] for o in self.out) for j in range(self.t.numel())]


def _quartic(y0, y1, mid, f0, f1, dt, x):
    """The quartic through y0 (x = 0), y1 (x = 1), the midpoint, with slopes f0, f1 (torchdiffeq's _interp_fit)."""
    a = 2 * dt * (f1 - f0) - 8 * (y1 + y0) + 16 * mid
    b = dt * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * mid
    c = dt * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * mid
    return y0 + x * (dt * f0 + x * (c + x * (b + x * a)))


def _initial_step(f, tau, y, k1, rtol, atol, sgn, span):
    """Hairer's initial step per example, as torchdiffeq's _select_initial_step (one extra evaluation)."""
    scale = [atol + rtol * v.abs() for v in y]
    d0 = _rms(y, scale)
    d1 = _rms(k1, scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1).clamp(max=span)
    kh = f(tau + sgn * h0, _comb(y, sgn * h0, (k1,), (1.0,)))
    d2 = _rms(tuple(b - a for a, b in zip(k1, kh)), scale) / h0
    dm = torch.maximum(d1, d2)
    h1 = torch.where(dm <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6), (0.01 / dm) ** (1.0 / _ORDER))
    return torch.minimum(100 * h0, h1)


def _step_factor(ratio, ok):
    """The step-size update (torchdiffeq's _optimal_step_size): never shrink after an accepted step."""
    fac = torch.where(ratio == 0, torch.full_like(ratio, _IFACTOR), _SAFETY * ratio.clamp_min(1e-300) ** (-1.0 / _ORDER))
    return torch.minimum(torch.full_like(fac, _IFACTOR), torch.maximum(fac, torch.where(ok, 1.0, _DFACTOR)))


def _rms(y, scale):
    r = None
    for v, s in zip(y, scale):
        q = (v / s).reshape(v.shape[0], -1).pow(2).mean(1).sqrt().double()
        r = q if r is None else torch.maximum(r, q)
    return r


# --- the solver object --------------------------------------------------------------------------------------------
class Dopri5(AdaptiveSolver):
    """Dormand–Prince 5(4), adaptive (order 5). ``control="batch"``: torchdiffeq's, one step size for the batch (its
    RMS error norm over the batch takes the fewest NFE); ``"example"``: hand-written per-example control
    (:func:`odeint_dopri5`), an example's result does not depend on its batch-mates."""

    name, order, evals_per_step = "dopri5", 5, 6

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 10_000, control: str = "batch",
                 time: str | None = None):
        check_choice(control, "control", CONTROLS)
        self.rtol, self.atol, self.max_steps, self.control, self.time = rtol, atol, max_steps, control, time

    def variable_for(self, schedule, requested):
        return super().variable_for(schedule, self.time if self.time is not None else requested)

    def solve(self, func, y0, t0, t1, on_step=None, t_eval=None):
        if self.control == "example":
            return odeint_dopri5(func, y0, t0, t1, rtol=self.rtol, atol=self.atol, max_steps=self.max_steps,
                                 on_step=on_step, t_eval=t_eval)
        cb = None if on_step is None else (lambda i, tau, y, *_: on_step(i, tau, y))
        return odeint_adaptive(func, y0, t0, t1, rtol=self.rtol, atol=self.atol, max_steps=self.max_steps,
                               on_accept=cb, t_eval=t_eval)
