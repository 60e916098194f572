"""Algorithm 1 of De Bortoli et al. (2025) as a trainer objective: a generator trained with a scoring rule.

Per data point x₀ⁱ: t_i ~ U[ε, 1 − ε] (stratified), x_tⁱ = α x₀ⁱ + σ ε, a population x̂^{ij} = G(x_tⁱ, λ_i, ξ_{ij})
of m samples (one batched forward), and the per-sample loss w(λ_i)·S(x̂^{i·}, x₀ⁱ) with S the U-statistic of
:mod:`~diffdensity.distributional.scoring` (math.md §3.5). The trainer averages over the batch.

Time. t is the schedule's t = σ/(α + σ) = sigmoid(−λ/2) (FlowMatching: α = 1 − t, σ = t), drawn uniformly in
[t(λ_max), t(λ_min)], i.e. t ∈ [ε, 1 − ε] with the **safety ε = sigmoid(−λ_max/2)** (the default λ range ±10 gives
ε = 0.0067): it keeps α and σ away from 0, so λ stays finite for the network's embedding and the bridge's ratios
α_t/α_s, σ_s/σ_t stay finite. (The other candidate of math.md §3.6, the clip inside (‖·‖² + ε)^{β/2}, is separate:
:data:`~diffdensity.distributional.scoring.DEFAULT_CLIP`.)

The regression baseline is the same objective with β = 2, interaction = 0 (the MSE of x̂₀ against x₀): the same
network (ξ is an input it learns to ignore), sampler and budget.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..training.objective import get_weighting, low_discrepancy
from .generators import GeneratorMLP, GeneratorModel, GeneratorUNet, build_generator_net
from .scoring import energy_score, kernel_score

__all__ = ["DistributionalObjective", "SCORINGS", "generator_net_config", "sample_lambda", "PAPER_RECIPE", "REGRESSION",
           "paper_config"]

SCORINGS = ("energy", "rbf", "imq")


def sample_lambda(schedule, u: Tensor) -> Tensor:
    """λ for uniforms u ∈ [0, 1): t = t_min + u (t_max − t_min) with t = sigmoid(−λ/2), i.e. t ~ U[ε, 1 − ε]."""
    t_min = 1.0 / (1.0 + math.exp(0.5 * schedule.lambda_max))
    t_max = 1.0 / (1.0 + math.exp(0.5 * schedule.lambda_min))
    t = t_min + u.to(torch.float64) * (t_max - t_min)
    return (2.0 * (torch.log1p(-t) - torch.log(t))).clamp(schedule.lambda_min, schedule.lambda_max)


def generator_net_config(cfg, ds) -> dict:
    """The generator network of a TrainConfig: GeneratorMLP for flat data, GeneratorUNet for images (C, H, W)."""
    image = len(ds.model_shape) == 3
    kind = ("unet" if image else "mlp") if cfg.net == "auto" else cfg.net
    if kind == "mlp":
        kw = {"hidden": cfg.hidden or 256, "depth": cfg.depth or 3, **cfg.net_kwargs}
        return GeneratorMLP(math.prod(ds.model_shape), **kw).config
    if not image:
        raise ValueError(f"net='unet' needs image data (C, H, W); {ds.name} has model shape {ds.model_shape}.")
    from ..nets import UNET_PRESETS

    preset = cfg.preset or (ds.name if ds.name in UNET_PRESETS else "patches16")
    kw = {"in_channels": ds.model_shape[0], "resolution": ds.model_shape[1], **cfg.net_kwargs}
    return GeneratorUNet(preset=preset, **kw).config


class DistributionalObjective:
    """Algorithm 1 (module docstring) as an :class:`~diffdensity.training.protocol.Objective`.

    ``scoring`` "energy" (``beta``, ``interaction``) or "rbf" / "imq" kernel scores (``bandwidth``,
    ``interaction``); ``population`` m; ``weighting`` w(λ): a name of ``training.WEIGHTINGS`` ("elbo" is w = 1)
    or a callable. The trained model is a :class:`GeneratorModel`, evaluated by MMD / energy distance of
    ``eval_steps``-step samples to held-out data, sampled by Algorithm 2 and exported as a model folder.
    """

    def __init__(self, schedule, population: int = 8, beta: float = 1.0, interaction: float = 1.0,
                 scoring: str = "energy", bandwidth: float = 1.0, weighting="elbo", net_config=None,
                 churn: float = 1.0, eval_steps: tuple = (1, 2, 4)):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring={scoring!r}; choose one of {SCORINGS}.")
        if isinstance(population, bool) or int(population) != population or population < 1:
            raise ValueError(f"population={population!r}: need a positive integer m (m >= 2 when interaction > 0).")
        if float(interaction) > 0 and population < 2:
            raise ValueError(f"interaction={interaction} needs population >= 2 (the pair term); got {population}.")
        if scoring == "energy" and not 0 < float(beta) <= 2:
            raise ValueError(f"beta={beta}: need β in (0, 2].")
        if not 0 <= float(interaction) <= 1:
            raise ValueError(f"interaction={interaction}: need a value in [0, 1].")
        get_weighting(weighting)
        self.schedule, self.population, self.beta, self.interaction = schedule, int(population), float(beta), float(interaction)
        self.scoring, self.bandwidth, self.weighting = scoring, float(bandwidth), weighting
        self.net_config, self.churn, self.eval_steps = net_config, float(churn), tuple(eval_steps)
        self.transform, self.levels, self.dataset = None, None, None

    @classmethod
    def from_config(cls, cfg) -> "DistributionalObjective":
        from ..training.config import make_schedule

        obj = cls(make_schedule(cfg), cfg.population, cfg.beta, cfg.interaction, cfg.scoring, cfg.kernel_bandwidth,
                  cfg.weighting, lambda ds: generator_net_config(cfg, ds))
        obj.dataset = cfg.dataset  # for the toy task metrics of the convergence check
        return obj

    def setup(self, dataset):
        from ..training.protocol import net_config_for

        return build_generator_net(net_config_for(self, dataset))

    def model(self, net) -> GeneratorModel:
        return GeneratorModel(net, self.schedule, transform=self.transform)

    def score(self, preds: Tensor, x0: Tensor) -> Tensor:
        """The scoring rule S(population, x₀) -> (B,)."""
        if self.scoring == "energy":
            return energy_score(preds, x0, self.beta, self.interaction)
        return kernel_score(preds, x0, self.scoring, self.bandwidth, self.interaction)

    def __call__(self, net, x0: Tensor, shard) -> Tensor:
        lam = shard.local(sample_lambda(self.schedule, low_discrepancy(shard.size, shard.generator))).to(x0.dtype)
        eps = shard.randn(x0.shape[1:], x0.dtype)
        xi = shard.randn((self.population, *net.noise_shape), x0.dtype)
        alpha, sigma = self.schedule.alpha_sigma(lam)
        shape = (-1,) + (1,) * (x0.ndim - 1)
        x_t = alpha.reshape(shape) * x0 + sigma.reshape(shape) * eps
        preds = self.model(net).sample_population(x_t, lam, self.population, xi=xi)
        return get_weighting(self.weighting)(lam).to(x0.dtype) * self.score(preds, x0)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def _model_space(self, x: Tensor, generator) -> Tensor:
        from ..data.transforms import to_model_space

        return to_model_space(x, self.transform, self.levels is not None, generator, dtype=torch.get_default_dtype())

    def evaluate(self, net, x: Tensor, generator) -> dict:
        """Held-out convergence check of ``eval_steps``-step Algorithm-2 samples: MMD (median heuristic), energy
        distance, MMD² at h = 0.05·R (quality.py, sees fine structure) and the toy's task metric."""
        from .metrics import sample_distances
        from .quality import kernel_stats, range_bandwidths, toy_task_metrics

        ref = self._model_space(x, generator).cpu()
        h = range_bandwidths(ref, (0.05,))[0.05]
        out = {}
        for k in self.eval_steps:
            z = self.sample(net, ref.shape[0], k, generator).cpu()
            d = sample_distances(z, ref)
            out[f"mmd_{k}"], out[f"energy_distance_{k}"] = d["mmd"], d["energy_distance"]
            out[f"mmd2@0.05R_{k}"] = kernel_stats(z, ref, {"h": h})["mmd2@h"]
            out.update({f"{name}_{k}": v for name, v in toy_task_metrics(self.dataset, z).items()})
        return out

    def sample(self, net, n: int, steps: int, generator) -> Tensor:
        """n Algorithm-2 samples in model space (churn of the objective)."""
        from .sampling import sample_distributional

        model = self.model(net)
        x_T = self.schedule.sample_prior((n, *self.transform.model_shape), generator=generator,
                                         dtype=torch.get_default_dtype()).to(next(net.parameters()).device)
        return sample_distributional(model, x_T, steps=steps, churn=self.churn, generator=generator).x

    def export(self, net, path, meta: dict):
        from ..io import save

        return save(self.model(net), path, **meta)


# The paper's recipe (De Bortoli et al. 2025, as reported): Adam 1e-3, 100 warm-up steps then cosine decay, update
# clipping at norm 1, EMA 0.99, flow-matching schedule, population m = 8 (2-D). ``diffdensity distributional train``
# and :func:`paper_config` use it as their defaults; the generic ``diffdensity train`` keeps its own defaults.
PAPER_RECIPE = {"objective": "distributional", "schedule": "FlowMatching", "optimizer": "adam", "lr": 1e-3,
                "warmup": 100, "lr_decay": "cosine", "clip": 1.0, "ema_decay": 0.99, "population": 8,
                "weighting": "elbo", "importance": False}
REGRESSION = {"beta": 2.0, "interaction": 0.0}  # the standard-diffusion baseline (MSE of x̂₀)


def paper_config(**overrides):
    """A :class:`~diffdensity.TrainConfig` with :data:`PAPER_RECIPE` as defaults (``regression=True``: β = 2,
    interaction = 0)."""
    from ..training import TrainConfig

    regression = overrides.pop("regression", False)
    return TrainConfig(**{**PAPER_RECIPE, **(REGRESSION if regression else {}), **overrides})
