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

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..distributional.generators import GeneratorMLP, GeneratorModel, GeneratorUNet, build_generator_net
from ..distributional.scoring import energy_score, kernel_score
from ..schedules import FlowMatching
from .common import get_weighting, low_discrepancy, net_config, net_config_for, schedule_of
from .protocol import ObjectiveConfig

__all__ = ["DistributionalObjective", "DistributionalConfig", "SCORINGS", "sample_lambda", "PAPER_RECIPE",
           "REGRESSION", "paper_config"]

SCORINGS = ("energy", "rbf", "imq")


def sample_lambda(schedule, u: Tensor) -> Tensor:
    """λ for uniforms u ∈ [0, 1): t = t_min + u (t_max − t_min) with t = sigmoid(−λ/2), i.e. t ~ U[ε, 1 − ε]."""
    fm = FlowMatching()  # its own time t = sigmoid(−λ/2), whatever the schedule
    t_min, t_max = (float(fm.lam_to_time(torch.tensor(v, dtype=torch.float64)))
                    for v in (schedule.lambda_max, schedule.lambda_min))
    t = t_min + u.to(torch.float64) * (t_max - t_min)
    return fm.time_to_lam(t).clamp(schedule.lambda_min, schedule.lambda_max)


@dataclass
class DistributionalConfig(ObjectiveConfig):
    """The distributional objective's options (the :class:`~diffdensity.TrainConfig` fields of the same names, plus
    the churn and step counts of its evaluation samples)."""

    population: int = 8
    scoring: str = "energy"
    beta: float = 1.0
    interaction: float = 1.0
    kernel_bandwidth: float = 1.0
    weighting: object = "elbo"  # a name of objectives.common.WEIGHTINGS or a callable λ -> w(λ)
    churn: float = 1.0
    eval_steps: tuple = (1, 2, 4)

    def validate(self) -> None:
        m, inter = self.population, self.interaction
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring={self.scoring!r}; choose one of {SCORINGS}.")
        if isinstance(m, bool) or not isinstance(m, (int, float)) or int(m) != m or m < 1:
            raise ValueError(f"population={m!r}: need a positive integer m (m >= 2 when interaction > 0).")
        if not 0 <= float(inter) <= 1:
            raise ValueError(f"interaction={inter}: need a value in [0, 1].")
        if float(inter) > 0 and m < 2:
            raise ValueError(f"interaction={inter} needs population >= 2 (the pair term); got {m}.")
        if not 0 < float(self.beta) <= 2:
            raise ValueError(f"beta={self.beta}: need β in (0, 2].")
        if not float(self.kernel_bandwidth) > 0:
            raise ValueError(f"kernel_bandwidth={self.kernel_bandwidth}: need a positive bandwidth.")
        if not 0.0 <= float(self.churn) <= 1.0:
            raise ValueError(f"churn={self.churn}: need ε in [0, 1] (0 = DDIM, 1 = DDPM posterior).")
        get_weighting(self.weighting)


class DistributionalObjective:
    """Algorithm 1 (module docstring) as an :class:`~diffdensity.objectives.protocol.Objective`.

    Options (:class:`DistributionalConfig`): ``scoring`` "energy" (``beta``, ``interaction``) or "rbf" / "imq"
    kernel scores (``kernel_bandwidth``, ``interaction``); ``population`` m; ``weighting`` w(λ): a name of
    ``objectives.common.WEIGHTINGS`` ("elbo" is w = 1) or a callable. The trained model is a
    :class:`GeneratorModel`, evaluated by MMD / energy distance of ``eval_steps``-step samples to held-out data,
    sampled by Algorithm 2 and exported as a model folder.
    """

    Config = DistributionalConfig
    transform: Any  # the dataset's Transform, set by objectives.common (None until then)
    levels: int | None

    def __init__(self, schedule, config: DistributionalConfig | None = None, net_config=None, **options):
        """``options``: :class:`DistributionalConfig` fields (replacing those of ``config``); ``net_config``: a
        generator network config or a callable dataset -> config."""
        self.schedule = schedule
        self.config = DistributionalConfig(**options) if config is None else dataclasses.replace(config, **options)
        self.net_config = net_config
        self.transform, self.levels = None, None
        self.dataset: str | None = None  # the data set's name, for the toy task metrics of the convergence check

    @classmethod
    def from_train_config(cls, cfg) -> "DistributionalObjective":
        """The objective a :class:`~diffdensity.TrainConfig` describes (schedule, generator network, own options)."""
        def unet(preset, **kw):
            return GeneratorUNet(preset=preset, **kw)

        obj = cls(schedule_of(cfg), DistributionalConfig.from_options(cfg),
                  lambda ds: net_config(cfg, ds, GeneratorMLP, unet))
        obj.dataset = cfg.dataset
        return obj

    def setup(self, dataset):
        return build_generator_net(net_config_for(self, dataset))

    def model(self, net) -> GeneratorModel:
        return GeneratorModel(net, self.schedule, transform=self.transform)

    def score(self, preds: Tensor, x0: Tensor) -> Tensor:
        """The scoring rule S(population, x₀) -> (B,)."""
        c = self.config
        if c.scoring == "energy":
            return energy_score(preds, x0, c.beta, c.interaction)
        return kernel_score(preds, x0, c.scoring, c.kernel_bandwidth, c.interaction)

    def __call__(self, net, x0: Tensor, shard) -> Tensor:
        lam = shard.local(sample_lambda(self.schedule, low_discrepancy(shard.size, shard.generator))).to(x0.dtype)
        eps = shard.randn(x0.shape[1:], x0.dtype)
        m = self.config.population
        xi = shard.randn((m, *net.noise_shape), x0.dtype)
        x_t = self.schedule.noise(x0, eps, lam)
        preds = self.model(net).sample_population(x_t, lam, m, xi=xi)
        return get_weighting(self.config.weighting)(lam).to(x0.dtype) * self.score(preds, x0)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def _model_space(self, x: Tensor, generator) -> Tensor:
        from ..data.transforms import to_model_space

        return to_model_space(x, self.transform, self.levels is not None, generator, dtype=torch.get_default_dtype())

    def evaluate(self, net, x: Tensor, generator) -> dict:
        """Held-out convergence check of ``eval_steps``-step Algorithm-2 samples: MMD (median heuristic), energy
        distance and a metric that sees fine structure (quality.py): for images (C, H, W) the KID-style cubic MMD² in
        the features of the fixed random conv net, else MMD² at h = 0.05·R and the toy's task metric."""
        from ..distributional.metrics import sample_distances
        from ..distributional.quality import kernel_stats, poly_mmd2, random_conv_features, range_bandwidths, \
            toy_task_metrics

        ref = self._model_space(x, generator).cpu()
        image = ref.ndim == 4
        h = range_bandwidths(ref, (0.05,))[0.05]
        ref_features = random_conv_features(ref) if image else ref
        out = {}
        for k in self.config.eval_steps:
            z = self.sample(net, ref.shape[0], k, generator).cpu()
            d = sample_distances(z, ref)
            out[f"mmd_{k}"], out[f"energy_distance_{k}"] = d["mmd"], d["energy_distance"]
            if image:
                out[f"kid_conv_{k}"] = poly_mmd2(random_conv_features(z), ref_features)
            else:
                out[f"mmd2@0.05R_{k}"] = kernel_stats(z, ref, {"h": h})["mmd2@h"]
            out.update({f"{name}_{k}": v for name, v in toy_task_metrics(self.dataset, z).items()})
        return out

    def sample(self, net, n: int, steps: int, generator) -> Tensor:
        """n Algorithm-2 samples in model space (churn of the objective)."""
        from ..distributional.sampling import sample_distributional

        model = self.model(net)
        x_T = self.schedule.sample_prior((n, *self.transform.model_shape), generator=generator,
                                         dtype=torch.get_default_dtype()).to(next(net.parameters()).device)
        return sample_distributional(model, x_T, steps=steps, churn=self.config.churn, generator=generator).x

    def export(self, net, path, meta: dict):
        from ..io import save

        return save(self.model(net), path, **meta)  # type: ignore[arg-type]  # save takes a GeneratorModel too (io.MODEL_KINDS)


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
