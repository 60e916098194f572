"""Training: a loop around a pluggable objective (:mod:`diffdensity.objectives`; the ε-denoising objective in λ
with adaptive importance sampling is the default), EMA, atomic resumable checkpoints, one run per run folder."""
from ..objectives.protocol import Objective, Shard
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .ema import EMA
from .trainer import Trainer, train

__all__ = ["EMA", "Objective", "Shard", "TrainConfig", "Trainer", "train", "load_checkpoint"]

# Re-exports for diffdensity/__init__ (``dd.ImportanceSampler``, ``dd.denoising_loss``) until it imports their homes.
_MOVED = {"ImportanceSampler": "diffdensity.objectives.importance", "denoising_loss": "diffdensity.objectives.denoising"}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
