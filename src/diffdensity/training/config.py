"""Every training setting in one dataclass and its validation.

The objective's own options (``parametrization`` … ``kernel_bandwidth``, ``eval_kwargs``) are fields here too, so
that one flat record describes a run (and a saved run config reads back unchanged); the objective that
``objective`` names checks and reads its own (``OBJECTIVES.load(name).Config``, :mod:`diffdensity.objectives`).
Each field carries its command-line help in ``metadata`` (and, where the option is not simply ``--field-name``, its
option name and kind), so ``diffdensity train``'s options are generated from this class and cannot drift from it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from ..objectives import OBJECTIVES

__all__ = ["TrainConfig", "STRUCTURAL", "RESUME_FIXED", "lr_at"]

# settings that define the model and the training trajectory; a resumed run must not change them
STRUCTURAL = (
    "dataset", "dataset_kwargs", "objective", "net", "preset", "hidden", "depth", "net_kwargs", "schedule",
    "lambda_min", "lambda_max", "parametrization", "weighting", "importance", "is_bins", "is_decay",
    "is_uniform_mix", "batch_size", "lr", "optimizer", "weight_decay", "betas", "warmup", "clip", "ema_decay",
    "lr_decay", "population", "scoring", "beta", "interaction", "kernel_bandwidth",
    "dequantize", "seed", "init_from",
)
# settings that change what the continued run computes (precision, the data's folder): fixed on resume as well
RESUME_FIXED = (*STRUCTURAL, "mixed_precision", "root")
# settings of one invocation, never taken from a stored run
RUN_CONTROL = ("out", "resume", "overwrite")


def _f(default, help: str, **cli):
    """A field with its CLI help; ``cli`` may set ``option`` (name), ``choices``, ``kv`` (KEY=VALUE, repeatable),
    ``zero_is_none`` (0 on the command line means None), ``aliases`` (extra options filling a dict field)."""
    kw = {"default_factory": default} if callable(default) else {"default": default}
    return field(metadata={"help": help, **cli}, **kw)


@dataclass
class TrainConfig:
    """Every training setting (``diffdensity train``'s options are generated from these fields, one each)."""

    # data
    dataset: str = _f("digits", "data set: digits | 8gaussians | checkerboard | moons | swissroll | pinwheel | "
                      "patches16 | cifar10 | folder")
    root: str | None = _f(None, "data folder for cifar10 / folder")
    dataset_kwargs: dict = _f(dict, "extra load_dataset argument (repeatable), e.g. --data-opt n_train=5000",
                              option="--data-opt", kv=True)
    dequantize: bool = _f(True, "uniform dequantization of discrete data (x + u, u ~ U[0,1)); "
                          "--no-dequantize trains on the integer values")
    # objective and network
    objective: str = _f("denoising", "training objective (denoising: the ε-loss in λ; distributional: a generator "
                        "trained with a scoring rule, De Bortoli et al. 2025)", choices=tuple(OBJECTIVES))
    net: str = _f("auto", "network; auto = the UNet preset of the dataset if there is one, else an MLP",
                  choices=("auto", "mlp", "unet"))
    preset: str | None = _f(None, "UNet preset (cifar10 | digits | patches16); default: the dataset name")
    hidden: int | None = _f(None, "MLP width (default 256)")
    depth: int | None = _f(None, "MLP residual blocks (default 3)")
    net_kwargs: dict = _f(dict, "network argument override (repeatable), e.g. --net-opt ch=32 --net-opt dropout=0.0",
                          option="--net-opt", kv=True)
    init_from: str | None = _f(None, "fine-tuning: start from a trained model's weights (a shipped name or a model / "
                               "run folder); its network must match this run's")
    # diffusion
    schedule: str = _f("VP", "noise schedule", choices=("VP", "VE", "FlowMatching"))
    lambda_min: float | None = _f(None, "default: the schedule's")
    lambda_max: float | None = _f(None, "default: the schedule's")
    parametrization: str = _f("eps", "what the network predicts; the loss is always the ε-loss on the converted ε̂",
                              choices=("eps", "x0", "v", "score", "flow"))
    weighting: str = _f("elbo", "elbo: w=1 (maximum likelihood); quality: w=sigmoid(2-λ) (a callable in Python)",
                        choices=("elbo", "quality"))
    importance: bool = _f(True, "adaptive importance sampling of λ (off: uniform λ)")
    is_bins: int = _f(100, "importance-sampler histogram bins")
    is_decay: float = _f(0.99, "importance-sampler EMA decay")
    is_uniform_mix: float = _f(0.0, "weight of a uniform component in the λ proposal")
    # distributional objective (math.md §3; used only with --objective distributional)
    population: int = _f(8, "distributional: population m of generator samples per data point")
    scoring: str = _f("energy", "distributional: scoring rule", choices=("energy", "rbf", "imq"))
    beta: float = _f(1.0, "distributional: energy-score exponent β in (0, 2]")
    interaction: float = _f(1.0, "distributional: interaction λ in [0, 1] (β=2, λ=0: the regression baseline)")
    kernel_bandwidth: float = _f(1.0, "distributional: bandwidth of the rbf / imq kernel score")
    # optimisation
    steps: int | None = _f(None, "optimisation steps (required)")
    batch_size: int = _f(128, "global batch (split over processes)")
    lr: float = _f(2e-4, "learning rate")
    optimizer: str = _f("adamw", "optimizer", choices=("adam", "adamw"))
    weight_decay: float = _f(0.0, "weight decay")
    betas: tuple = _f((0.9, 0.999), "Adam betas")
    warmup: int = _f(200, "linear learning-rate warm-up steps")
    lr_decay: str = _f("none", "after warm-up: none (constant) or cosine (to 0 at the last step)",
                       choices=("none", "cosine"))
    clip: float | None = _f(1.0, "gradient-norm clip (0 = off)", zero_is_none=True)
    ema_decay: float = _f(0.999, "EMA of the weights (0 = raw weights)")
    # monitoring
    log_every: int = _f(50, "log.jsonl record every N steps (0 = off)")
    eval_every: int = _f(0, "held-out evaluation every N steps (0 = only at the end if eval_final)")
    eval_final: bool = _f(True, "held-out evaluation at the end")
    eval_n: int = _f(128, "held-out examples per evaluation")
    eval_kwargs: dict = _f(lambda: {"solver": "euler", "steps": 128},
                           "extra evaluation (log_prob) argument (repeatable), e.g. --eval-opt n_probes=2",
                           option="--eval-opt", kv=True,
                           aliases={"solver": ("--eval-solver", str, "PF-ODE solver for evaluation (euler | heun | dopri5)"),
                                    "steps": ("--eval-steps", int, "solver steps for evaluation (fixed-step solvers)")})
    sample_every: int = _f(0, "PNG sample grid every N steps (0 = off)")
    n_samples: int = _f(64, "samples per grid")
    sample_steps: int = _f(128, "solver steps for the sample grids")
    checkpoint_every: int = _f(1000, "checkpoint every N steps (0 = only at the end)")
    # run
    seed: int = _f(0, "seed of the initialisation, the data order and the training noise")
    out: str | None = _f(None, "run folder (required): checkpoint.pt, model.safetensors, config.json, log.jsonl")
    resume: bool = _f(False, "continue from OUT/checkpoint.pt (options not given are taken from it)")
    overwrite: bool = _f(False, "start over in an OUT that holds an earlier run (its run files are deleted)")
    mixed_precision: str = _f("no", "accelerate mixed precision", choices=("no", "fp16", "bf16"))
    cpu: bool = _f(False, "force the CPU even if a GPU is present")
    threads: int | None = _f(None, "torch CPU threads per process")
    progress: bool = _f(True, "progress bar")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}; valid ones: {sorted(names)}.")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def validate(self) -> None:
        """ValueError naming the first bad setting; every setting is checked here, before any work starts."""
        for check in (_check_choices, _check_finite, _check_objective, _check_counts, _check_numbers, _check_nested,
                      _check_run):
            check(self)


# ------------------------------------------------------------------------------------------------ checks
def _is_int(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and int(v) == v


def _check_choices(c: TrainConfig) -> None:
    from ..data import DATASETS
    from ..schedules import SCHEDULES

    table = {"net": ("auto", "mlp", "unet"), "optimizer": ("adam", "adamw"), "schedule": tuple(SCHEDULES),
             "dataset": DATASETS, "objective": tuple(OBJECTIVES), "mixed_precision": ("no", "fp16", "bf16"),
             "lr_decay": ("none", "cosine")}
    for name, allowed in table.items():
        if getattr(c, name) not in allowed:
            raise ValueError(f"unknown {name} {getattr(c, name)!r}; choose one of {', '.join(allowed)}.")


def _check_finite(c: TrainConfig) -> None:
    """Every number is finite (``lr=inf``, ``lambda_min=nan`` would pass comparisons or poison the run)."""
    for f in dataclasses.fields(c):
        values = getattr(c, f.name)
        for v in values if isinstance(values, (tuple, list)) else (values,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{f.name}={values!r}: need a finite number.")


def _check_nested(c: TrainConfig) -> None:
    """dataset_kwargs against the data set loader's signature, net_kwargs against the network's (names, types,
    ranges), before any work starts."""
    from .._checks import check_kwargs
    from ..data.datasets import loader_function
    from ..data.toy2d import TOY2D
    from ..nets import MLP, UNet

    check_kwargs(c.dataset_kwargs, loader_function(c.dataset), "dataset_kwargs", exclude=("name", "root"))
    unet = c.net == "unet" or (c.net == "auto" and c.dataset not in TOY2D)
    kwargs = c.net_kwargs
    net: Callable = UNet.__init__ if unet else MLP.__init__
    if c.objective == "distributional":  # the generator networks: GeneratorMLP's own options, GeneratorUNet's noise
        from ..distributional.generators import GeneratorMLP

        net = UNet.__init__ if unet else GeneratorMLP.__init__
        kwargs = {k: v for k, v in kwargs.items() if not (unet and k == "noise_channels")}
    check_kwargs(kwargs, net, "net_kwargs", exclude=("self",))
    if "dropout" in c.net_kwargs and not 0.0 <= c.net_kwargs["dropout"] < 1.0:
        raise ValueError(f"net_kwargs['dropout']={c.net_kwargs['dropout']!r}: need 0 <= dropout < 1.")


def _check_objective(c: TrainConfig) -> None:
    """The objective's own options, checked by its config class."""
    OBJECTIVES.load(c.objective).Config.from_options(c)


def _check_counts(c: TrainConfig) -> None:
    if c.steps is None:
        raise ValueError("steps is required: pass the number of optimisation steps (--steps N).")
    for name in ("steps", "batch_size", "eval_n", "n_samples", "sample_steps"):
        v = getattr(c, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name}={v!r}: need a positive integer.")
    for name in ("warmup", "log_every", "eval_every", "sample_every", "checkpoint_every", "seed"):
        v = getattr(c, name)
        if not _is_int(v) or v < 0:
            raise ValueError(f"{name}={v!r}: need a non-negative integer (0 turns it off).")
    for name in ("hidden", "depth", "threads"):
        v = getattr(c, name)
        if v is not None and (not _is_int(v) or v < 1):
            raise ValueError(f"{name}={v!r}: need a positive integer (or None for the default).")


def _check_numbers(c: TrainConfig) -> None:
    if not c.lr > 0:
        raise ValueError(f"lr={c.lr}: need a positive learning rate.")
    if c.clip is not None and not c.clip > 0:
        raise ValueError(f"clip={c.clip}: need a positive gradient-norm bound (or None for no clipping).")
    if not 0.0 <= c.ema_decay < 1.0:
        raise ValueError(f"ema_decay={c.ema_decay}: need 0 <= decay < 1.")
    if not c.weight_decay >= 0:
        raise ValueError(f"weight_decay={c.weight_decay}: need a non-negative value.")
    if len(c.betas) != 2 or not all(0.0 <= b < 1.0 for b in c.betas):
        raise ValueError(f"betas={c.betas}: need two numbers in [0, 1).")
    if c.lambda_min is not None and c.lambda_max is not None and not c.lambda_min < c.lambda_max:
        raise ValueError(f"lambda_min={c.lambda_min} must be below lambda_max={c.lambda_max}.")


def _check_run(c: TrainConfig) -> None:
    if c.out is None or str(c.out) == "":
        raise ValueError("out is required: pass the run folder (--out DIR).")
    if c.resume and c.overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run in OUT, "
                         "overwrite deletes it.")


# ------------------------------------------------------------------------------------------------ learning rate
def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant (``lr_decay="none"``) or a cosine decay to 0 at the last
    step (``"cosine"``, optax's ``warmup_cosine_decay_schedule``)."""
    warm = 1.0 if cfg.warmup <= 0 else min(1.0, (step + 1) / cfg.warmup)
    if getattr(cfg, "lr_decay", "none") == "cosine" and cfg.steps and step >= cfg.warmup:
        span = max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup) / span)))
    return cfg.lr * warm
