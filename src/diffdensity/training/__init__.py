"""Training: the ε-prediction denoising objective in λ, adaptive importance sampling, EMA, the trainer."""
from .ema import EMA
from .importance import ImportanceSampler
from .objective import (
    WEIGHTINGS,
    UniformLambda,
    denoising_loss,
    elbo_weight,
    get_weighting,
    low_discrepancy,
    quality_weight,
)
from .trainer import TrainConfig, Trainer, load_checkpoint, train

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
    "TrainConfig",
    "Trainer",
    "train",
    "load_checkpoint",
]
