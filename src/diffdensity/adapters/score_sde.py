"""score_sde-style continuous-time VP networks (Song et al. 2021, linear β(t)) as dd.VP models.

The VP SDE with β(t) = β_min + t (β_max − β_min), t ∈ [t_min, 1], has ᾱ(t) = exp(−½ t² (β_max − β_min) − t β_min)
and λ(t) = log(ᾱ / (1 − ᾱ)), i.e. log ᾱ = logsigmoid(λ); the time map inverts that quadratic in closed form:
t(λ) = (−β_min + √(β_min² − 2 (β_max − β_min) logsigmoid(λ))) / (β_max − β_min). The network is told
``time_scale``·t (score_sde's continuous VP models take 999·t) and predicts ε by default (score_sde divides its
output by −σ(t) to get the score).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import logsigmoid

from ..models import TO_EPS
from ..schedules import VP
from .core import _accepted_kwargs, _ForeignNetModel
from .diffusers import _condition_kwargs

__all__ = ["ScoreSDEModel", "from_score_sde", "vp_time_from_lambda", "vp_lambda_from_time"]


def vp_lambda_from_time(t, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """λ(t) = log ᾱ − log(1 − ᾱ) with log ᾱ(t) = −½ t² (β_max − β_min) − t β_min (float64)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    log_abar = -0.5 * t**2 * (beta_max - beta_min) - t * beta_min
    return log_abar - torch.log(-torch.expm1(log_abar))


def vp_time_from_lambda(lam, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """The inverse of :func:`vp_lambda_from_time`: the positive root of ½ Δβ t² + β_min t + logsigmoid(λ) = 0."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    d = beta_max - beta_min
    return (-beta_min + torch.sqrt(beta_min**2 - 2 * d * logsigmoid(lam))) / d


class ScoreSDEModel(_ForeignNetModel):
    """``net(x, time_scale·t)`` of a score_sde continuous-time VP model as a dd.VP model (module docstring)."""

    timestep_dtype = torch.float32

    def __init__(self, net, beta_min=0.1, beta_max=20.0, t_min=1e-3, t_max=1.0, time_scale=999.0,
                 parametrization="eps", condition=None, uncondition=None, guidance_scale=None, autocast=None):
        super().__init__()
        if not (0 < t_min < t_max <= 1 and 0 < beta_min < beta_max):
            raise ValueError(f"need 0 < t_min < t_max ≤ 1 and 0 < beta_min < beta_max; got t in [{t_min}, {t_max}], "
                             f"β in [{beta_min}, {beta_max}] (score_sde: 1e-3, 1, 0.1, 20).")
        if parametrization not in TO_EPS:
            raise ValueError(f"parametrization={parametrization!r}; choose one of {tuple(TO_EPS)}.")
        self.beta_min, self.beta_max, self.time_scale = float(beta_min), float(beta_max), float(time_scale)
        lo, hi = (float(vp_lambda_from_time(t, beta_min, beta_max)) for t in (t_max, t_min))
        self._accepts = _accepted_kwargs(net)
        self._init_common(net, VP(lo, hi), parametrization, condition, uncondition, guidance_scale, autocast)

    def timestep(self, lam_b: Tensor) -> Tensor:
        """time_scale · t(λ), float64."""
        return self.time_scale * vp_time_from_lambda(lam_b, self.beta_min, self.beta_max)

    def _call(self, x: Tensor, t: Tensor, cond) -> Tensor:
        out = self.net(x, t, **_condition_kwargs(cond, x.shape[0], self._accepts))
        out = getattr(out, "sample", out)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            raise ValueError(f"the network must return a tensor shaped like x {tuple(x.shape)}.")
        return out


def from_score_sde(net, *, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3, t_max: float = 1.0,
                   time_scale: float = 999.0, parametrization: str = "eps", condition=None, uncondition=None,
                   guidance_scale=None, autocast=None) -> ScoreSDEModel:
    """A score_sde continuous-time VP network ``net(x, time_scale·t)`` (linear β(t), score_sde's defaults) as a
    dd.VP model on λ ∈ [λ(t_max), λ(t_min)]; ``parametrization`` as in dd.NetworkModel ("eps" for score_sde)."""
    if isinstance(net, nn.Module):
        net.eval()
    if not math.isfinite(time_scale) or time_scale <= 0:
        raise ValueError(f"time_scale={time_scale}: need a positive number (999 for score_sde's VP models).")
    return ScoreSDEModel(net, beta_min, beta_max, t_min, t_max, time_scale, parametrization, condition, uncondition,
                         guidance_scale, autocast)
