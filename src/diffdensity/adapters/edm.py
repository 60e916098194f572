"""EDM / k-diffusion denoisers ``denoiser(x, sigma) -> x̂₀`` as dd.VE models."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..schedules import VE
from .core import _accepted_kwargs, _expand, _ForeignNetModel


# ------------------------------------------------------------------------------------------------ EDM denoisers
class DenoiserModel(_ForeignNetModel):
    """``denoiser(x, sigma) -> x̂₀`` (x = x₀ + σ ε) as a dd.VE model with σ = exp(−λ/2): the x0-parametrization."""

    def __init__(self, denoiser, sigma_min: float, sigma_max: float, *, condition=None, uncondition=None,
                 guidance_scale=None, autocast=None):
        super().__init__()
        if not callable(denoiser):
            raise TypeError(f"denoiser must be callable as denoiser(x, sigma), got {type(denoiser).__name__}.")
        sigma_min, sigma_max = float(sigma_min), float(sigma_max)
        if not (0 < sigma_min < sigma_max < math.inf):
            raise ValueError(f"sigma_min={sigma_min}, sigma_max={sigma_max}: need 0 < sigma_min < sigma_max < inf "
                             "(EDM: 0.002 and 80).")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self._accepts = _accepted_kwargs(denoiser)
        self._init_common(denoiser, VE(-2 * math.log(sigma_max), -2 * math.log(sigma_min)), "x0", condition,
                          uncondition, guidance_scale, autocast)

    def timestep(self, lam_b: Tensor) -> Tensor:
        """σ(λ) = exp(−λ/2), the denoiser's own noise level (VE's own time)."""
        return self.schedule.lam_to_time(lam_b.to(torch.float64))

    def _call(self, x: Tensor, sigma: Tensor, cond) -> Tensor:
        kw = {} if cond is None else (dict(cond) if isinstance(cond, dict) else {"class_labels": cond})
        kw = {k: _expand(v, x.shape[0], k) for k, v in kw.items()}
        out = self.net(x, sigma, **kw)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            raise ValueError(f"the denoiser must return x̂₀ shaped like x {tuple(x.shape)}, got "
                             f"{getattr(out, 'shape', type(out).__name__)}.")
        return out


def from_denoiser(denoiser, sigma_min: float, sigma_max: float, *, condition=None, uncondition=None,
                  guidance_scale=None, autocast=None) -> DenoiserModel:
    """An EDM / k-diffusion denoiser ``denoiser(x, sigma) -> x̂₀`` in σ-space (x = x₀ + σ ε) as a model under
    dd.VE with λ ∈ [−2 log σ_max, −2 log σ_min]; ``sigma`` is passed as a (batch,) tensor. The schedule is fixed
    to VE because that is the process the denoiser's input follows (a VP schedule would feed it α x₀ + σ ε)."""
    if isinstance(denoiser, nn.Module):
        denoiser.eval()
    return DenoiserModel(denoiser, sigma_min, sigma_max, condition=condition, uncondition=uncondition,
                         guidance_scale=guidance_scale, autocast=autocast)
