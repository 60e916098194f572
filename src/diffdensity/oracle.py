"""The exact oracle: a Gaussian mixture and its closed-form diffused marginals (math.md §0.4).

p₀ = Σ_k w_k N(μ_k, diag(c_k²)). Under any schedule p_λ = Σ_k w_k N(α μ_k, diag(v_k)), v_k = α² c_k² + σ².
With responsibilities r_k(x) and a_k = −(x − α μ_k)/v_k (elementwise):
score s = Σ r_k a_k; Hessian H = Σ r_k (a_k a_kᵀ − diag(1/v_k)) − s sᵀ;
Laplacian Δ = Σ r_k (‖a_k‖² − Σ 1/v_k) − ‖s‖²;
∇Δ = Σ r_k [(a_k − s) q_k − 2 a_k/v_k] − 2 H s with q_k = ‖a_k‖² − Σ 1/v_k.
Every estimator and sampler in the library is tested against these formulas.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import batch_lam, check_batch, check_count, check_finite
from ._rng import as_generator, draw
from .schedules import Schedule

__all__ = ["GaussianMixture", "DiffusedMixture", "MixturePosterior"]

_LOG2PI = math.log(2 * math.pi)


class _Mixture:
    """Shared closed forms of a batch of diagonal Gaussian mixtures over flattened data.

    ``means`` (B|1, K, D), ``var`` (B|1, K, D), ``logw`` (B|1, K); x (B, D).
    """

    def __init__(self, means: Tensor, var: Tensor, logw: Tensor):
        self.means, self.var, self.logw = means, var, logw

    def comp_log_prob(self, x: Tensor) -> Tensor:
        d = x[:, None, :] - self.means
        return -0.5 * ((d**2 / self.var) + torch.log(self.var) + _LOG2PI).sum(-1)

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.logw + self.comp_log_prob(x), dim=-1)

    def terms(self, x: Tensor):
        """Responsibilities r (B,K), a_k (B,K,D), score s (B,D)."""
        lj = self.logw + self.comp_log_prob(x)
        r = torch.softmax(lj, dim=-1)
        a = -(x[:, None, :] - self.means) / self.var
        s = (r[..., None] * a).sum(1)
        return r, a, s

    def score(self, x):
        return self.terms(x)[2]

    def hvp(self, x: Tensor, v: Tensor) -> Tensor:
        r, a, s = self.terms(x)
        av = (a * v[:, None, :]).sum(-1)
        hv = (r[..., None] * (a * av[..., None] - v[:, None, :] / self.var)).sum(1)
        return hv - s * (s * v).sum(-1, keepdim=True)

    def hessian(self, x: Tensor) -> Tensor:
        r, a, s = self.terms(x)
        outer = a[..., :, None] * a[..., None, :]
        diag = torch.diag_embed(1.0 / self.var.expand_as(a))
        return (r[..., None, None] * (outer - diag)).sum(1) - s[:, :, None] * s[:, None, :]

    def laplacian(self, x: Tensor) -> Tensor:
        r, a, s = self.terms(x)
        q = (a**2).sum(-1) - (1.0 / self.var).sum(-1)
        return (r * q).sum(-1) - (s**2).sum(-1)

    def grad_laplacian(self, x: Tensor) -> Tensor:
        r, a, s = self.terms(x)
        q = (a**2).sum(-1) - (1.0 / self.var).sum(-1)
        g = (r[..., None] * ((a - s[:, None, :]) * q[..., None] - 2 * a / self.var)).sum(1)
        return g - 2 * self.hvp(x, s)

    def sample(self, n: int, generator=None) -> Tensor:
        B = self.means.shape[0]
        logw = self.logw.expand(n if B == 1 else B, -1)
        k = torch.multinomial(logw.exp(), 1, generator=generator).squeeze(1)
        idx = torch.arange(logw.shape[0], device=k.device) if B > 1 else torch.zeros_like(k)
        mu = self.means[idx, k]
        sd = self.var.expand(self.means.shape)[idx, k].sqrt()
        z = draw("normal", mu.shape, generator, dtype=mu.dtype, device=mu.device)
        return mu + sd * z

    def mean(self) -> Tensor:
        return (self.logw.exp()[..., None] * self.means).sum(1)

    def covariance_diag(self) -> Tensor:
        w = self.logw.exp()[..., None]
        m = self.mean()
        return (w * (self.var + self.means**2)).sum(1) - m**2

    def mode(self, x_init: Tensor | None = None, iters: int = 500, tol: float = 1e-12) -> Tensor:
        """A local mode by the Gaussian-mixture fixed point (mean shift), started from every component mean
        (and ``x_init``), keeping the highest density: monotone ascent (Carreira-Perpiñán 2000)."""
        B, K, D = self.means.shape
        B = max(B, x_init.shape[0] if x_init is not None else 1)
        starts = self.means.expand(B, K, D)
        if x_init is not None:
            starts = torch.cat([starts, x_init[:, None, :]], 1)
        S = starts.shape[1]
        flat = starts.reshape(B * S, D)
        rep = _Mixture(
            self.means.expand(B, K, D).repeat_interleave(S, 0),
            self.var.expand(B, K, D).repeat_interleave(S, 0),
            self.logw.expand(B, K).repeat_interleave(S, 0),
        )
        y = flat
        for _ in range(iters):
            lj = rep.logw + rep.comp_log_prob(y)
            r = torch.softmax(lj, -1)[..., None]
            y_new = (r * rep.means / rep.var).sum(1) / (r / rep.var).sum(1)
            done = (y_new - y).abs().max() < tol
            y = y_new
            if done:
                break
        lp = rep.log_prob(y).reshape(B, S)
        best = lp.argmax(1)
        return y.reshape(B, S, D)[torch.arange(B), best]


def _as_float(t, name, dtype=None) -> Tensor:
    t = torch.as_tensor(t, dtype=dtype)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    check_finite(t, name)
    return t


class GaussianMixture:
    """Σ_k w_k N(μ_k, diag(c_k²)): means (K, *shape), stds (K,) isotropic or (K, *shape) diagonal, weights (K,)."""

    def __init__(self, means, stds, weights=None):
        means = _as_float(means, "means")
        if means.ndim < 2:
            raise ValueError(
                f"means has shape {tuple(means.shape)}; need (K, *sample_shape), e.g. (K, D) or (K, C, H, W) "
                "(for 1-D data use means[:, None])."
            )
        K = means.shape[0]
        if K == 0 or means[0].numel() == 0:
            raise ValueError(f"means has shape {tuple(means.shape)}: a mixture needs at least one component and one "
                             "dimension.")
        self.event_shape = tuple(means.shape[1:])
        D = math.prod(self.event_shape)
        stds = _as_float(stds, "stds", means.dtype)
        if stds.shape == (K,):
            stds_full = stds[:, None].expand(K, D)
        elif tuple(stds.shape) == (K, *self.event_shape):
            stds_full = stds.reshape(K, D)
        else:
            raise ValueError(
                f"stds has shape {tuple(stds.shape)} but means has {tuple(means.shape)}: pass stds of shape "
                f"({K},) (isotropic) or {(K, *self.event_shape)} (diagonal)."
            )
        if (stds_full <= 0).any():
            raise ValueError("stds must be positive; got a value <= 0.")
        tiny = torch.finfo(stds_full.dtype).tiny
        if not (torch.isfinite(stds_full**2) & (stds_full**2 > tiny)).all():
            raise ValueError(f"stds must have a finite square above {tiny:.3g} in {stds_full.dtype} (got "
                             f"{stds_full.min().item():.3g}..{stds_full.max().item():.3g}): their variances would "
                             "round to 0 or inf and give NaN log p; rescale the data.")
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=means.dtype)
        weights = _as_float(weights, "weights", means.dtype)
        if weights.shape != (K,):
            raise ValueError(f"weights has shape {tuple(weights.shape)}; need ({K},), one per component of means.")
        if (weights <= 0).any():
            raise ValueError("weights must be positive; drop components with zero weight instead.")
        self.means = means.reshape(K, D)
        self.stds = stds_full
        self.weights = weights / weights.sum()
        self.dim = D

    @property
    def dtype(self):
        return self.means.dtype

    def to(self, dtype=None, device=None) -> "GaussianMixture":
        """A copy in another dtype/device."""
        return GaussianMixture(
            self.means.to(dtype=dtype, device=device).reshape(-1, *self.event_shape),
            self.stds.to(dtype=dtype, device=device).reshape(-1, *self.event_shape),
            self.weights.to(dtype=dtype, device=device),
        )

    def _mix(self, x: Tensor | None = None) -> _Mixture:
        m = self.means if x is None else self.means.to(x)
        v = self.stds.to(m) ** 2
        return _Mixture(m[None], v[None], torch.log(self.weights.to(m))[None])

    def _flat(self, x: Tensor) -> Tensor:
        check_batch(x, "x")
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"x has sample shape {tuple(x.shape[1:])}; this mixture's samples have shape {self.event_shape}.")
        return x.reshape(x.shape[0], -1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples of p₀, shaped (n, *event_shape); ``generator`` may be an int seed."""
        check_count(n, "n")
        return self._mix().sample(int(n), as_generator(generator)).reshape(int(n), *self.event_shape)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p₀(x) -> (batch,)."""
        return self._mix(x).log_prob(self._flat(x))

    def diffused(self, schedule: Schedule) -> "DiffusedMixture":
        """The exact model of p_λ under ``schedule``: score, log p, Laplacian, posterior."""
        return DiffusedMixture(self, schedule)


class DiffusedMixture:
    """The exact marginal p_λ of a GaussianMixture under a schedule; a model (``.schedule``, ``.score``)."""

    def __init__(self, mixture: GaussianMixture, schedule: Schedule):
        self.mixture = mixture
        self.schedule = schedule
        self.transform = None

    def _mix(self, x: Tensor, lam) -> _Mixture:
        self.mixture._flat(x)
        self.schedule.check_lam(lam)
        lam_b = batch_lam(lam, x)
        a, s = self.schedule.alpha_sigma(lam_b)
        a, s = a[:, None, None], s[:, None, None]
        m = self.mixture.means.to(x)[None]
        c2 = self.mixture.stds.to(x)[None] ** 2
        return _Mixture(a * m, a**2 * c2 + s**2, torch.log(self.mixture.weights.to(x))[None])

    def _apply(self, x, lam, fn, *args):
        out = fn(self._mix(x, lam), x.reshape(x.shape[0], -1), *[a.reshape(x.shape[0], -1) for a in args])
        return out.reshape(x.shape) if out.ndim == 2 and out.shape[1] == self.mixture.dim else out

    def score(self, x: Tensor, lam) -> Tensor:
        """∇_x log p_λ(x), shaped like x."""
        return self._apply(x, lam, _Mixture.score)

    def log_prob(self, x: Tensor, lam) -> Tensor:
        """log p_λ(x) -> (batch,)."""
        return self._apply(x, lam, _Mixture.log_prob)

    def laplacian(self, x: Tensor, lam) -> Tensor:
        """Δ log p_λ(x) = tr ∇² log p_λ(x) -> (batch,)."""
        return self._apply(x, lam, _Mixture.laplacian)

    def hvp(self, x: Tensor, lam, v: Tensor) -> Tensor:
        """∇² log p_λ(x) v, shaped like x."""
        return self._apply(x, lam, _Mixture.hvp, v)

    def hessian(self, x: Tensor, lam) -> Tensor:
        """∇² log p_λ(x) as (batch, D, D) over flattened x (small D only)."""
        return self._mix(x, lam).hessian(x.reshape(x.shape[0], -1))

    def grad_laplacian(self, x: Tensor, lam) -> Tensor:
        """∇ Δ log p_λ(x), shaped like x (math.md §0.4)."""
        return self._apply(x, lam, _Mixture.grad_laplacian)

    def sample(self, n: int, lam, generator: torch.Generator | None = None) -> Tensor:
        """n samples of p_λ (x = α x₀ + σ ε); ``generator`` may be an int seed."""
        generator = as_generator(generator)
        x0 = self.mixture.sample(n, generator)
        eps = draw("normal", x0.shape, generator, dtype=x0.dtype, device=x0.device)
        return self.schedule.noise(x0, eps, float(lam))

    def posterior(self, x: Tensor, lam) -> "MixturePosterior":
        """The exact p(x₀ | x_λ = x): per sample a mixture with components N(m'_k, v'_k) (math.md §0.4)."""
        mix = self._mix(x, lam)
        xf = x.reshape(x.shape[0], -1)
        lam_b = batch_lam(lam, x)
        a, s = self.schedule.alpha_sigma(lam_b)
        a, s2 = a[:, None, None], (s**2)[:, None, None]
        c2 = self.mixture.stds.to(x)[None] ** 2
        mu = self.mixture.means.to(x)[None]
        vp = 1.0 / (1.0 / c2 + a**2 / s2)
        mp = vp * (mu / c2 + a * xf[:, None, :] / s2)
        logw = torch.log_softmax(mix.logw + mix.comp_log_prob(xf), -1)
        return MixturePosterior(_Mixture(mp, vp.expand_as(mp), logw), self.mixture.event_shape)

    def config(self) -> dict:
        return {"type": "DiffusedMixture", "schedule": self.schedule.config()}


class MixturePosterior:
    """A batch of per-sample Gaussian mixtures p(x₀ | x_λ)."""

    def __init__(self, mix: _Mixture, event_shape):
        self._m = mix
        self.event_shape = tuple(event_shape)
        self.weights = mix.logw.exp()

    def _shape(self, y):
        return y.reshape(y.shape[0], *self.event_shape)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """One draw of x₀ per conditioning sample."""
        return self._shape(self._m.sample(self._m.means.shape[0], generator))

    def mean(self) -> Tensor:
        """E[x₀ | x_λ] (Tweedie)."""
        return self._shape(self._m.mean())

    def variance(self) -> Tensor:
        """Per-coordinate Var[x₀ | x_λ]."""
        return self._shape(self._m.covariance_diag())

    def log_prob(self, x0: Tensor) -> Tensor:
        """log p(x₀ | x_λ) -> (batch,)."""
        return self._m.log_prob(x0.reshape(x0.shape[0], -1))

    def mode(self, iters: int = 500) -> Tensor:
        """The highest local mode found by mean shift from every component mean and the posterior mean."""
        return self._shape(self._m.mode(self._m.mean(), iters=iters))
