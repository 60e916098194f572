"""Training: a loop around a pluggable objective (the ε-denoising objective in λ with adaptive importance
sampling is the default), EMA, atomic resumable checkpoints, one run per run folder."""
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .ema import EMA
from .importance import ImportanceSampler
from .objective import (
    OBJECTIVES,
    WEIGHTINGS,
    DenoisingObjective,
    UniformLambda,
    denoising_loss,
    elbo_weight,
    get_weighting,
    low_discrepancy,
    quality_weight,
)
from .protocol import Objective, Shard
from .trainer import Trainer, train

__all__ = [
    "EMA",
    "ImportanceSampler",
    "UniformLambda",
    "WEIGHTINGS",
    "denoising_loss",
    "elbo_weight",
    "quality_weight",
    "get_weighting",
    "low_discrepancy",
    "Objective",
    "Shard",
    "DenoisingObjective",
    "OBJECTIVES",
    "TrainConfig",
    "Trainer",
    "train",
    "load_checkpoint",
]
