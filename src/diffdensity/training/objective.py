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
from .importance import ImportanceSampler

__all__ = [
    "WEIGHTINGS",
    "get_weighting",
    "elbo_weight",
    "quality_weight",
    "low_discrepancy",
    "denoising_loss",
    "UniformLambda",
    "DenoisingObjective",
    "OBJECTIVES",
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


def UniformLambda(lambda_min: float, lambda_max: float) -> ImportanceSampler:
    """The uniform proposal p(λ) = 1/(λ_max − λ_min): a one-bin :class:`ImportanceSampler` (it cannot adapt)."""
    return ImportanceSampler(lambda_min, lambda_max, n_bins=1)


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



class DenoisingObjective:
    """The ε-denoising objective as a trainer :class:`~diffdensity.training.protocol.Objective`.

    Per sample: λ from the λ-sampler (low-discrepancy uniforms through its inverse CDF), ε ~ N(0, I), and
    ℓ = w(λ)/q(λ)·‖ε̂ − ε‖² (:func:`denoising_loss`); the sampler adapts to the gathered global batch and is
    checkpointed. The trained network is a :class:`~diffdensity.NetworkModel`, evaluated by held-out bits/dim,
    sampled by the PF-ODE and exported as a model folder.
    """

    def __init__(self, schedule, parametrization: str = "eps", weighting="elbo", sampler=None, net_config=None,
                 eval_kwargs: dict | None = None):
        self.schedule, self.parametrization, self.weighting = schedule, parametrization, weighting
        get_weighting(weighting)  # ValueError now, not at the first step
        self.sampler = sampler or ImportanceSampler(schedule.lambda_min, schedule.lambda_max)
        self.net_config = net_config  # a nets.build_net config, or a callable dataset -> config
        self.eval_kwargs = dict(eval_kwargs or {})
        self.transform, self.levels = None, None

    @classmethod
    def from_config(cls, cfg) -> "DenoisingObjective":
        """The objective a :class:`~diffdensity.TrainConfig` describes."""
        from .config import make_net_config, make_schedule

        sch = make_schedule(cfg)
        if cfg.importance:
            sampler = ImportanceSampler(sch.lambda_min, sch.lambda_max, cfg.is_bins, cfg.is_decay, cfg.is_uniform_mix)
        else:
            sampler = UniformLambda(sch.lambda_min, sch.lambda_max)
        return cls(sch, cfg.parametrization, cfg.weighting, sampler, lambda ds: make_net_config(cfg, ds),
                   cfg.eval_kwargs)

    def setup(self, dataset):
        from ..nets import build_net
        from .protocol import net_config_for

        return build_net(net_config_for(self, dataset))

    def model(self, net):
        from ..models import NetworkModel

        return NetworkModel(net, self.schedule, self.parametrization, transform=self.transform)

    def __call__(self, net, x0: Tensor, shard) -> Tensor:
        lam_g, q_g = self.sampler.sample(low_discrepancy(shard.size, shard.generator))
        eps = shard.randn(x0.shape[1:], x0.dtype)
        lam, q = shard.local(lam_g).to(x0.dtype), shard.local(q_g).to(x0.dtype)
        loss, unweighted = denoising_loss(self.model(net), x0, lam, eps, self.weighting, density=q,
                                          return_unweighted=True)
        self.sampler.update(lam_g, shard.gather(unweighted))
        return loss

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def evaluate(self, net, x: Tensor, generator) -> dict:
        """Held-out bits/dim of data-unit examples (uniform dequantization for discrete data), ``eval_kwargs``."""
        import math

        from ..likelihood import bits_per_dim

        if self.levels is not None:
            bpd = bits_per_dim(self.model(net), x, levels=self.levels, generator=generator, **self.eval_kwargs)
        else:
            bpd = bits_per_dim(self.model(net), x.to(torch.get_default_dtype()), levels=None, dequantize="none",
                               generator=generator, **self.eval_kwargs)
        stderr = float(bpd.std() / math.sqrt(bpd.numel())) if bpd.numel() > 1 else float("nan")
        return {"test_bpd": float(bpd.mean()), "test_bpd_stderr": stderr, "test_bpd_median": float(bpd.median()),
                "eval_kwargs": dict(self.eval_kwargs)}

    def sample(self, net, n: int, steps: int, generator) -> Tensor:
        """n PF-ODE samples in model space."""
        from ..sampling import sample_ode

        model = self.model(net)
        x_T = self.schedule.sample_prior((n, *self.transform.model_shape), generator=generator,
                                         dtype=torch.get_default_dtype())
        return sample_ode(model, x_T, steps=steps, generator=generator, progress=False).x

    def export(self, net, path, meta: dict):
        """Write the model folder (``model.safetensors`` + ``config.json`` with ``meta``)."""
        from ..io import save

        return save(self.model(net), path, **meta)


def _distributional(cfg):
    from ..distributional.objective import DistributionalObjective  # imported lazily: no import cycle

    return DistributionalObjective.from_config(cfg)


OBJECTIVES = {"denoising": DenoisingObjective.from_config,  # TrainConfig.objective -> factory(cfg)
              "distributional": _distributional}
