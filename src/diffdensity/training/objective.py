"""The denoising objective in λ = log SNR (math.md §1.7; Kingma & Gao 2023, "Understanding diffusion objectives").

With x_λ = α(λ) x₀ + σ(λ) ε and ε̂ = ε̂(x_λ, λ) the network's noise prediction, the diffusion part of the negative
ELBO is

    L(x₀) = ½ ∫_{λ_min}^{λ_max} w(λ) E_ε ‖ε̂ − ε‖² dλ,    w ≡ 1,

and a weighted objective uses another w(λ) ≥ 0. One draw λ ~ p(λ) gives the unbiased per-sample estimate

    ℓ = w(λ) / p(λ) · ‖ε̂ − ε‖²        (summed over the data dimensions),

so E[ℓ]/2 = L(x₀) for every proposal p (uniform, or the adaptive importance sampler of
:mod:`diffdensity.training.importance`).

Parametrizations. Whatever the network predicts (ε, x₀, v, score, flow velocity), :meth:`NetworkModel.eps`
converts the prediction to ε̂ and the loss is regressed **in ε-space**. The loss, its weighting and therefore the
meaning of "elbo" (maximum likelihood) are the same for every parametrization; only the network's output
scaling differs (a native-space regression would be an ε-loss with an extra λ-dependent weight).

Weightings: ``"elbo"`` (w = 1, maximum likelihood), ``"quality"`` (w = sigmoid(2 − λ), the sample-quality
weighting of Kingma & Gao used by the reference's ``weighted_model``), or any callable λ -> w(λ).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._checks import bcast, flat_sq

__all__ = [
    "WEIGHTINGS",
    "get_weighting",
    "elbo_weight",
    "quality_weight",
    "low_discrepancy",
    "denoising_loss",
    "UniformLambda",
]


def elbo_weight(lam: Tensor) -> Tensor:
    """w(λ) = 1: the ELBO (maximum likelihood)."""
    return torch.ones_like(lam)


def quality_weight(lam: Tensor) -> Tensor:
    """w(λ) = sigmoid(2 − λ): the sample-quality weighting (Kingma & Gao 2023; reference ``weighted_model``)."""
    return torch.sigmoid(2.0 - lam)


WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {"elbo": elbo_weight, "quality": quality_weight}


def get_weighting(weighting) -> Callable[[Tensor], Tensor]:
    """``"elbo"``, ``"quality"`` or a callable λ -> w(λ) (returned unchanged)."""
    if callable(weighting):
        return weighting
    try:
        return WEIGHTINGS[weighting]
    except (KeyError, TypeError):
        raise ValueError(
            f"weighting={weighting!r}; choose one of {sorted(WEIGHTINGS)} or pass a callable lam -> w(lam)."
        ) from None


def low_discrepancy(n: int, generator: torch.Generator | None = None, dtype=torch.float64, device=None) -> Tensor:
    """n stratified uniforms on [0, 1): one u ~ U[0, 1), then (u + i/n) mod 1 for i = 0..n-1 (Kingma et al. 2021)."""
    if generator is not None and device is None:
        device = generator.device
    u = torch.rand((), generator=generator, dtype=torch.float64, device=device)
    i = torch.arange(n, dtype=torch.float64, device=device)
    return torch.remainder(u + i / n, 1.0).to(dtype)


class UniformLambda:
    """The uniform proposal p(λ) = 1/(λ_max − λ_min); same interface as :class:`ImportanceSampler`."""

    def __init__(self, lambda_min: float, lambda_max: float):
        if not lambda_min < lambda_max:
            raise ValueError(f"need lambda_min < lambda_max, got {lambda_min}, {lambda_max}.")
        self.lambda_min, self.lambda_max = float(lambda_min), float(lambda_max)

    def sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Map uniforms u ∈ [0, 1) to (λ, p(λ))."""
        width = self.lambda_max - self.lambda_min
        lam = self.lambda_min + width * u
        return lam, torch.full_like(lam, 1.0 / width)

    def density(self, lam: Tensor) -> Tensor:
        lam = torch.as_tensor(lam)
        inside = (lam >= self.lambda_min) & (lam <= self.lambda_max)
        return inside.to(lam.dtype if lam.is_floating_point() else torch.float64) / (self.lambda_max - self.lambda_min)

    def update(self, lam: Tensor, values: Tensor) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict:
        return {"kind": "uniform", "lambda_min": self.lambda_min, "lambda_max": self.lambda_max}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "uniform":
            raise ValueError(f"λ-sampler state of kind {state.get('kind')!r} cannot be loaded into a uniform sampler.")


def denoising_loss(
    model,
    x0: Tensor,
    lam: Tensor,
    eps: Tensor,
    weighting="elbo",
    density: Tensor | None = None,
    return_unweighted: bool = False,
):
    """Per-sample ℓ = w(λ)/p(λ) · ‖ε̂(α x₀ + σ ε, λ) − ε‖² -> (batch,) (see the module docstring).

    ``model`` is a :class:`~diffdensity.NetworkModel` (any parametrization; ε̂ = ``model.eps``), ``lam`` (batch,)
    and ``density`` p(λ) (batch,) or None for "no reweighting". With ``return_unweighted`` also returns
    w(λ)·‖ε̂ − ε‖² (the value the importance sampler adapts to), detached.
    """
    if lam.ndim != 1 or lam.shape[0] != x0.shape[0]:
        raise ValueError(f"lam must have shape ({x0.shape[0]},), one λ per sample; got {tuple(lam.shape)}.")
    if eps.shape != x0.shape:
        raise ValueError(f"eps has shape {tuple(eps.shape)} but x0 has {tuple(x0.shape)}; they must match.")
    lam = lam.to(x0.dtype)
    alpha, sigma = model.schedule.alpha_sigma(lam)
    x = bcast(alpha, x0) * x0 + bcast(sigma, x0) * eps
    eps_hat = model.eps(x, lam)
    sq = flat_sq(eps_hat - eps)
    w = get_weighting(weighting)(lam).to(sq.dtype)
    unweighted = w * sq
    loss = unweighted if density is None else unweighted / density.to(sq.dtype)
    if return_unweighted:
        return loss, unweighted.detach()
    return loss

