"""Training: a loop around a pluggable objective (:mod:`diffdensity.objectives`; the ε-denoising objective in λ
with adaptive importance sampling is the default), EMA, atomic resumable checkpoints, one run per run folder."""
from ..objectives.protocol import Objective, Shard
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .ema import EMA
from .trainer import Trainer, train

__all__ = ["EMA", "Objective", "Shard", "TrainConfig", "Trainer", "train", "load_checkpoint"]

