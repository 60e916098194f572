"""The denoising objective in λ = log SNR (math.md §1.7; Kingma & Gao 2023, "Understanding diffusion objectives").

With x_λ = α(λ) x₀ + σ(λ) ε and ε̂ = ε̂(x_λ, λ) the network's noise prediction, the diffusion part of the negative
ELBO is

    L(x₀) = ½ ∫_{λ_min}^{λ_max} w(λ) E_ε ‖ε̂ − ε‖² dλ,    w ≡ 1,

and a weighted objective uses another w(λ) ≥ 0. One draw λ ~ p(λ) gives the unbiased per-sample estimate

    ℓ = w(λ) / p(λ) · ‖ε̂ − ε‖²        (summed over the data dimensions),

so E[ℓ]/2 = L(x₀) for every proposal p (uniform, or the adaptive importance sampler of
:mod:`diffdensity.objectives.importance`).

Parametrizations. Whatever the network predicts (ε, x₀, v, score, flow velocity), :meth:`NetworkModel.eps`
converts the prediction to ε̂ and the loss is regressed **in ε-space**. The loss, its weighting and therefore the
meaning of "elbo" (maximum likelihood) are the same for every parametrization; only the network's output
scaling differs (a native-space regression would be an ε-loss with an extra λ-dependent weight).

Weightings (:mod:`.common`): ``"elbo"`` (w = 1, maximum likelihood), ``"quality"`` (w = sigmoid(2 − λ), the
sample-quality weighting of Kingma & Gao used by the reference's ``weighted_model``), or any callable λ -> w(λ).
The objective's own options are :class:`DenoisingConfig`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._checks import flat_sq
from .common import get_weighting, low_discrepancy, net_config, net_config_for, schedule_of
from .importance import ImportanceSampler
from .protocol import ObjectiveConfig

__all__ = ["denoising_loss", "UniformLambda", "DenoisingConfig", "DenoisingObjective"]


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
    x = model.schedule.noise(x0, eps, lam)
    eps_hat = model.eps(x, lam)
    sq = flat_sq(eps_hat - eps)
    w = get_weighting(weighting)(lam).to(sq.dtype)
    unweighted = w * sq
    loss = unweighted if density is None else unweighted / density.to(sq.dtype)
    if return_unweighted:
        return loss, unweighted.detach()
    return loss


def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and int(v) == v


@dataclass
class DenoisingConfig(ObjectiveConfig):
    """The denoising objective's options (:class:`~diffdensity.TrainConfig` fields of the same names): what the
    network predicts, w(λ), the λ proposal and the held-out evaluation's ``log_prob`` arguments."""

    parametrization: str = "eps"
    weighting: object = "elbo"  # "elbo" | "quality" | callable λ -> w(λ)
    importance: bool = True
    is_bins: int = 100
    is_decay: float = 0.99
    is_uniform_mix: float = 0.0
    eval_kwargs: dict = field(default_factory=lambda: {"solver": "euler", "steps": 128})

    def validate(self) -> None:
        from ..models import PARAMETRIZATIONS

        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization={self.parametrization!r}; choose one of {PARAMETRIZATIONS}.")
        get_weighting(self.weighting)
        if not _is_int(self.is_bins) or self.is_bins < 1:
            raise ValueError(f"is_bins={self.is_bins!r}: need a positive integer.")
        if not 0.0 <= self.is_decay < 1.0 or not 0.0 <= self.is_uniform_mix <= 1.0:
            raise ValueError(f"is_decay={self.is_decay}, is_uniform_mix={self.is_uniform_mix}: need 0 <= decay < 1 "
                             "and a weight in [0, 1].")
        _check_eval_kwargs(self.eval_kwargs)

    def sampler(self, schedule) -> ImportanceSampler:
        """The λ proposal: adaptive (``importance``) or uniform over the schedule's range."""
        if self.importance:
            return ImportanceSampler(schedule.lambda_min, schedule.lambda_max, self.is_bins, self.is_decay,
                                     self.is_uniform_mix)
        return UniformLambda(schedule.lambda_min, schedule.lambda_max)


def _check_eval_kwargs(kw) -> None:
    """ValueError unless ``kw`` are valid ``log_prob`` arguments for the held-out evaluation."""
    import inspect

    from ..registry import SOLVERS
    from ..likelihood import log_prob

    if not isinstance(kw, dict):
        raise ValueError(f"eval_kwargs={kw!r}: need a dict of log_prob arguments.")
    allowed = set(inspect.signature(log_prob).parameters) - {"model", "x", "generator", "return_nfe"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ValueError(f"eval_kwargs has unknown arguments {unknown}; valid ones: {sorted(allowed)}.")
    if kw.get("solver", "dopri5") not in SOLVERS:
        raise ValueError(f"eval solver {kw['solver']!r}; choose one of {', '.join(SOLVERS)}.")
    for name in ("steps", "n_probes"):
        if kw.get(name) is not None and (not _is_int(kw[name]) or kw[name] < 1):
            raise ValueError(f"eval {name}={kw[name]!r}: need a positive integer.")


class DenoisingObjective:
    """The ε-denoising objective as a trainer :class:`~diffdensity.objectives.protocol.Objective`.

    Per sample: λ from the λ-sampler (low-discrepancy uniforms through its inverse CDF), ε ~ N(0, I), and
    ℓ = w(λ)/q(λ)·‖ε̂ − ε‖² (:func:`denoising_loss`); the sampler adapts to the gathered global batch and is
    checkpointed. The trained network is a :class:`~diffdensity.NetworkModel`, evaluated by held-out bits/dim,
    sampled by the PF-ODE and exported as a model folder.
    """

    Config = DenoisingConfig
    transform: Any  # the dataset's Transform, set by objectives.common (None until then)
    levels: int | None

    def __init__(self, schedule, config: DenoisingConfig | None = None, net_config=None, sampler=None, **options):
        """``options``: :class:`DenoisingConfig` fields (replacing those of ``config``); ``sampler``: the λ proposal
        (default: the config's); ``net_config``: a ``nets.build_net`` config or a callable dataset -> config."""
        self.schedule = schedule
        self.config = DenoisingConfig(**options) if config is None else dataclasses.replace(config, **options)
        self.sampler = sampler or self.config.sampler(schedule)
        self.net_config = net_config
        self.transform, self.levels = None, None

    @classmethod
    def from_train_config(cls, cfg) -> "DenoisingObjective":
        """The objective a :class:`~diffdensity.TrainConfig` describes (schedule, network and its own options)."""
        from ..nets import MLP, unet_preset

        return cls(schedule_of(cfg), DenoisingConfig.from_options(cfg),
                   lambda ds: net_config(cfg, ds, MLP, unet_preset))

    def setup(self, dataset):
        from ..nets import build_net

        return build_net(net_config_for(self, dataset))

    def model(self, net):
        from ..models import NetworkModel

        return NetworkModel(net, self.schedule, self.config.parametrization, transform=self.transform)

    def __call__(self, net, x0: Tensor, shard) -> Tensor:
        lam_g, q_g = self.sampler.sample(low_discrepancy(shard.size, shard.generator))
        eps = shard.randn(x0.shape[1:], x0.dtype)
        lam, q = shard.local(lam_g).to(x0.dtype), shard.local(q_g).to(x0.dtype)
        loss, unweighted = denoising_loss(self.model(net), x0, lam, eps, self.config.weighting, density=q,
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
            bpd = bits_per_dim(self.model(net), x, levels=self.levels, generator=generator, **self.config.eval_kwargs)
        else:
            bpd = bits_per_dim(self.model(net), x.to(torch.get_default_dtype()), levels=None, dequantize="none",
                               generator=generator, **self.config.eval_kwargs)
        stderr = float(bpd.std() / math.sqrt(bpd.numel())) if bpd.numel() > 1 else float("nan")
        return {"test_bpd": float(bpd.mean()), "test_bpd_stderr": stderr, "test_bpd_median": float(bpd.median()),
                "eval_kwargs": dict(self.config.eval_kwargs)}

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
