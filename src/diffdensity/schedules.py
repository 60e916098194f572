"""Noise schedules in the λ = log SNR parametrization (math.md §0.1).

A schedule is α(λ) and σ(λ); everything else is derived from them once, here:
f(λ) = d log α / dλ and g2(λ) = σ(λ)² (the reverse SDE in λ is dx = (f x + g2 ∇log p) dλ + σ dW).
A new schedule subclasses :class:`Schedule` and implements only :meth:`alpha_sigma`; the closed forms
that VP, VE and FlowMatching give for ``log_alpha``, ``f`` and ``g2_prime`` are optional speed-ups, tested
against the autograd defaults.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import as_lam, bcast, check_finite
from ._rng import draw

__all__ = ["Schedule", "VP", "VE", "FlowMatching", "TimeVariable", "TIMES", "GRIDS"]

TIMES = ("lambda", "t", "sigma", "log_sigma", "natural")
GRIDS = ("lambda", "t", "sigma", "edm", "natural", "default")
EDM_RHO = 7.0


class TimeVariable:
    """An integration variable τ(λ), monotone in λ, with its inverse λ(τ) and dλ/dτ (the change of variables:
    dx/dτ = dx/dλ · dλ/dτ, the same for the log-density rate). λ stays the language of the public API."""

    def __init__(self, name: str, to_tau, to_lam, dlam_dtau):
        self.name, self.to_tau, self.to_lam, self.dlam_dtau = name, to_tau, to_lam, dlam_dtau

    def __repr__(self) -> str:
        return f"TimeVariable({self.name!r})"


_IDENTITY = TimeVariable("lambda", lambda lam: lam, lambda tau: tau, lambda tau: torch.ones_like(tau))


class Schedule:
    """Base class: a forward process x_λ = α(λ) x₀ + σ(λ) ε with λ = log(α²/σ²) in [lambda_min, lambda_max]."""

    def __init__(self, lambda_min: float, lambda_max: float):
        lambda_min, lambda_max = float(lambda_min), float(lambda_max)
        if not (math.isfinite(lambda_min) and math.isfinite(lambda_max)) or lambda_min >= lambda_max:
            raise ValueError(
                f"lambda_min={lambda_min} and lambda_max={lambda_max}: need finite values with "
                "lambda_min < lambda_max (λ = log SNR grows from noise to data)."
            )
        self.lambda_min = lambda_min
        self.lambda_max = lambda_max

    # --- the one thing a schedule defines -------------------------------------------------------
    def alpha_sigma(self, lam) -> tuple[Tensor, Tensor]:
        """(α(λ), σ(λ)) of the forward kernel N(α x₀, σ² I)."""
        raise NotImplementedError

    # --- the forward kernel and its inverse: every x_λ and every x̂₀ of the library -----------------
    def coefficients(self, lam, x: Tensor) -> tuple[Tensor, Tensor]:
        """(α(λ), σ(λ)) in x's dtype and device, broadcastable against x (λ a number, 0-d or one per sample)."""
        a, s = self.alpha_sigma(torch.as_tensor(lam, dtype=x.dtype, device=x.device))
        return bcast(a, x), bcast(s, x)

    def noise(self, x0: Tensor, eps: Tensor, lam) -> Tensor:
        """x_λ = α(λ) x₀ + σ(λ) ε: a draw of the forward kernel N(α x₀, σ² I) (math.md §0.1)."""
        a, s = self.coefficients(lam, x0)
        return a * x0 + s * eps

    def denoise(self, x: Tensor, eps_hat: Tensor, lam) -> Tensor:
        """x̂₀ = (x − σ(λ) ε̂)/α(λ): the clean estimate of a noise prediction (Tweedie, ε̂ = −σ s; math.md §0.1)."""
        a, s = self.coefficients(lam, x)
        return (x - s * eps_hat) / a

    # --- derived quantities (closed forms in subclasses are optional) ---------------------------
    def log_alpha(self, lam) -> Tensor:
        """log α(λ)."""
        return torch.log(self.alpha_sigma(lam)[0])

    def f(self, lam) -> Tensor:
        """f(λ) = d log α / dλ (math.md §0.1)."""
        return _derivative(self.log_alpha, lam)

    def g2(self, lam) -> Tensor:
        """g2(λ) = σ(λ)²: the reverse-SDE diffusion in λ, for every schedule (math.md §0.2)."""
        return self.alpha_sigma(lam)[1] ** 2

    def g2_prime(self, lam) -> Tensor:
        """d g2 / dλ (used by the corrected SDE tracker, math.md §1.2b)."""
        return _derivative(self.g2, lam)

    # --- the schedule's own time ---------------------------------------------------------------
    natural_time: str = "lambda"  # the variable dopri5 integrates in by default (measured: README)
    default_grid: str = "lambda"  # the grid kind fixed-step solvers use by default (measured at 64 Euler steps)
    fixed_time: str = "lambda"  # the variable fixed-step solvers step in by default (measured at 64 Euler steps)

    def lam_to_sigma(self, lam) -> Tensor:
        """σ(λ)."""
        return self.alpha_sigma(lam)[1]

    def sigma_to_lam(self, sigma) -> Tensor:
        """Inverse of :meth:`lam_to_sigma` (closed form in subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form λ(σ); integrate in time='lambda'.")

    def dlam_dsigma(self, sigma) -> Tensor:
        """dλ/dσ (closed form in subclasses; autograd otherwise)."""
        return _derivative(self.sigma_to_lam, sigma)

    def dlam_dtime(self, t) -> Tensor:
        """dλ/dt of the schedule's own time (autograd of :meth:`time_to_lam` unless overridden)."""
        return _derivative(self.time_to_lam, t)

    def time_variable(self, name: str | None = None) -> TimeVariable:
        """The integration variable ``name`` ("lambda", "t": the schedule's own time, "sigma", "log_sigma", or
        "natural"/None: :attr:`natural_time`)."""
        if name is None or name == "natural":
            name = self.natural_time
        if name == "lambda":
            return _IDENTITY
        if name == "t":
            return TimeVariable("t", self.lam_to_time, self.time_to_lam, self.dlam_dtime)
        if name == "sigma":
            return TimeVariable("sigma", self.lam_to_sigma, self.sigma_to_lam, self.dlam_dsigma)
        if name == "log_sigma":
            return TimeVariable("log_sigma", lambda lam: torch.log(self.lam_to_sigma(lam)),
                                lambda tau: self.sigma_to_lam(torch.exp(tau)),
                                lambda tau: self.dlam_dsigma(torch.exp(tau)) * torch.exp(tau))
        raise ValueError(f"time={name!r}; choose one of {TIMES}.")

    def lam_to_time(self, lam) -> Tensor:
        """The schedule's own time variable as a function of λ."""
        raise NotImplementedError

    def time_to_lam(self, t) -> Tensor:
        """Inverse of :meth:`lam_to_time`."""
        raise NotImplementedError

    # --- prior ---------------------------------------------------------------------------------
    @property
    def prior_std(self) -> float:
        """σ(λ_min): the standard deviation of the Gaussian prior N(0, σ(λ_min)² I)."""
        return float(self.alpha_sigma(torch.tensor(self.lambda_min, dtype=torch.float64))[1])

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, σ(λ_min)² I), summed over the non-batch dimensions -> (batch,)."""
        check_finite(x, "x")
        s = self.prior_std
        d = x[0].numel()
        sq = x.reshape(x.shape[0], -1).pow(2).sum(1)
        return -0.5 * sq / s**2 - d * (math.log(s) + 0.5 * math.log(2 * math.pi))

    def sample_prior(self, shape, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
        """x_T ~ N(0, σ(λ_min)² I) of the given shape (batch first)."""
        return self.prior_std * draw("normal", shape, generator, dtype=dtype, device=device)

    # --- helpers ---------------------------------------------------------------------------------
    def grid(self, steps: int, lam_start=None, lam_end=None, dtype=torch.float32, device=None,
             kind: str = "lambda", rho: float = EDM_RHO) -> Tensor:
        """``steps + 1`` λ values from ``lam_start`` (default λ_min) to ``lam_end`` (λ_max), uniform in ``kind``:
        "lambda", "t" (the schedule's own time), "sigma", "natural" (:attr:`natural_time`), "default"
        (:attr:`default_grid`: the most accurate at 64 Euler steps on the oracle), or "edm" (Karras et al.
        2022, Eq. 5: uniform in σ̃^{1/ρ}, ρ = 7, with σ̃ = σ/α = exp(−λ/2) the noise level of the VE-equivalent ODE)."""
        if int(steps) != steps or steps < 1:
            raise ValueError(f"steps={steps}: need a positive integer number of steps.")
        if kind not in GRIDS:
            raise ValueError(f"grid={kind!r}; choose one of {GRIDS} (or pass a tensor of λ values).")
        if kind == "default":
            kind = self.default_grid
        a = self.lambda_min if lam_start is None else float(lam_start)
        b = self.lambda_max if lam_end is None else float(lam_end)
        self.check_lam(a, "lam_start")
        self.check_lam(b, "lam_end")
        n = int(steps) + 1
        ends = torch.tensor([a, b], dtype=torch.float64)
        if kind == "edm":  # σ̃^{1/ρ} = exp(−λ/(2ρ)) uniform
            u = torch.linspace(*torch.exp(-ends / (2 * rho)).tolist(), n, dtype=torch.float64)  # type: ignore[call-overload]  # torch stub: no overload for *list ends
            lam = -2 * rho * torch.log(u)
        else:
            tv = self.time_variable("lambda" if kind == "lambda" else kind)
            lam = tv.to_lam(torch.linspace(*tv.to_tau(ends).tolist(), n, dtype=torch.float64))  # type: ignore[call-overload]  # torch stub: no overload for *list ends
        lam[0], lam[-1] = a, b  # the ends exactly, whatever the round-off of the map
        lo, hi = min(a, b), max(a, b)
        return lam.clamp(lo, hi).to(dtype=dtype, device=device)

    def check_lam(self, lam, name: str = "lam") -> None:
        """ValueError unless every λ is finite and within [lambda_min, lambda_max]."""
        lo, hi = self.lambda_min, self.lambda_max
        t = torch.as_tensor(lam, dtype=torch.float64)
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or inf; pass finite log-SNR values in [{lo}, {hi}].")
        tol = 1e-6 * max(1.0, abs(lo), abs(hi))
        if (t < lo - tol).any() or (t > hi + tol).any():
            raise ValueError(
                f"{name}={_fmt(t)} is outside this {type(self).__name__} schedule's range [{lo}, {hi}]; "
                f"pass λ within it or build the schedule with a wider lambda_min/lambda_max."
            )

    def config(self) -> dict:
        """JSON-able description, inverse of :func:`schedule_from_config`."""
        return {"name": type(self).__name__, "lambda_min": self.lambda_min, "lambda_max": self.lambda_max}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lambda_min={self.lambda_min:g}, lambda_max={self.lambda_max:g})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.lambda_min, self.lambda_max))


class VP(Schedule):
    """Variance preserving: α² = sigmoid(λ), σ² = sigmoid(−λ). Own time: t = (λ_max − λ)/(λ_max − λ_min).
    Solvers integrate in λ (fewest NFE at equal error on the oracle; README "Integration variable")."""

    natural_time, default_grid, fixed_time = "lambda", "lambda", "lambda"  # σ: float32 round-off grows

    def __init__(self, lambda_min: float = -10.0, lambda_max: float = 10.0):
        super().__init__(lambda_min, lambda_max)

    def alpha_sigma(self, lam):
        lam = as_lam(lam)
        return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()

    def log_alpha(self, lam):
        return 0.5 * torch.nn.functional.logsigmoid(as_lam(lam))

    def f(self, lam):
        return 0.5 * torch.sigmoid(-as_lam(lam))

    def g2(self, lam):
        return torch.sigmoid(-as_lam(lam))

    def g2_prime(self, lam):
        lam = as_lam(lam)
        return -torch.sigmoid(lam) * torch.sigmoid(-lam)

    def lam_to_time(self, lam):
        return (self.lambda_max - as_lam(lam)) / (self.lambda_max - self.lambda_min)

    def time_to_lam(self, t):
        return self.lambda_max - as_lam(t) * (self.lambda_max - self.lambda_min)

    def dlam_dtime(self, t):
        return torch.full_like(as_lam(t), -(self.lambda_max - self.lambda_min))

    def sigma_to_lam(self, sigma):  # σ² = sigmoid(−λ)
        s2 = as_lam(sigma) ** 2
        return torch.log1p(-s2) - torch.log(s2)

    def dlam_dsigma(self, sigma):
        s = as_lam(sigma)
        return -2.0 / (s * (1 - s**2))


class VE(Schedule):
    """Variance exploding: α = 1, σ = exp(−λ/2). Own time: σ itself (λ = −2 log σ), which solvers integrate in."""

    natural_time, default_grid, fixed_time = "sigma", "edm", "sigma"

    def __init__(self, lambda_min: float = -2 * math.log(80.0), lambda_max: float = -2 * math.log(0.002)):
        super().__init__(lambda_min, lambda_max)

    def alpha_sigma(self, lam):
        lam = as_lam(lam)
        return torch.ones_like(lam), torch.exp(-0.5 * lam)

    def log_alpha(self, lam):
        return torch.zeros_like(as_lam(lam))

    def f(self, lam):
        return torch.zeros_like(as_lam(lam))

    def g2(self, lam):
        return torch.exp(-as_lam(lam))

    def g2_prime(self, lam):
        return -torch.exp(-as_lam(lam))

    def lam_to_time(self, lam):
        return torch.exp(-0.5 * as_lam(lam))

    def time_to_lam(self, sigma):
        return -2.0 * torch.log(as_lam(sigma))

    def dlam_dtime(self, sigma):
        return -2.0 / as_lam(sigma)

    def sigma_to_lam(self, sigma):
        return -2.0 * torch.log(as_lam(sigma))

    def dlam_dsigma(self, sigma):
        return -2.0 / as_lam(sigma)


class FlowMatching(Schedule):
    """Rectified flow: α = 1 − t, σ = t ⇔ α = sigmoid(λ/2), σ = sigmoid(−λ/2). Own time: t = σ, which solvers
    integrate in."""

    natural_time, default_grid, fixed_time = "t", "t", "lambda"

    # Log p at λ_max = 10 is 0.097 nats from the data's own density on the oracle; log_prob(..., density="data")
    # closes both ends at the default range (0.0019, no extra NFE; math.md §1.1b), so the default stays ±10.
    def __init__(self, lambda_min: float = -10.0, lambda_max: float = 10.0):
        super().__init__(lambda_min, lambda_max)

    def alpha_sigma(self, lam):
        lam = as_lam(lam)
        return torch.sigmoid(0.5 * lam), torch.sigmoid(-0.5 * lam)

    def log_alpha(self, lam):
        return torch.nn.functional.logsigmoid(0.5 * as_lam(lam))

    def f(self, lam):
        return 0.5 * torch.sigmoid(-0.5 * as_lam(lam))

    def g2_prime(self, lam):
        a, s = self.alpha_sigma(lam)
        return -a * s**2

    def lam_to_time(self, lam):
        return torch.sigmoid(-0.5 * as_lam(lam))

    def time_to_lam(self, t):
        t = as_lam(t)
        return 2.0 * (torch.log1p(-t) - torch.log(t))

    def dlam_dtime(self, t):
        t = as_lam(t)
        return -2.0 / (t * (1 - t))

    def sigma_to_lam(self, sigma):
        return self.time_to_lam(sigma)

    def dlam_dsigma(self, sigma):
        return self.dlam_dtime(sigma)


SCHEDULES = {"VP": VP, "VE": VE, "FlowMatching": FlowMatching}


def schedule_from_config(cfg: dict) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.config`."""
    try:
        cls = SCHEDULES[cfg["name"]]
    except KeyError:
        raise ValueError(f"unknown schedule config {cfg!r}; expected name in {sorted(SCHEDULES)}") from None
    return cls(cfg["lambda_min"], cfg["lambda_max"])


def _derivative(fn, lam) -> Tensor:
    lam = as_lam(lam).detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = fn(lam)
        (d,) = torch.autograd.grad(y.sum(), lam)
    return d


def _fmt(t: Tensor) -> str:
    return f"{t.item():.6g}" if t.numel() == 1 else f"[{t.min().item():.6g} .. {t.max().item():.6g}]"
