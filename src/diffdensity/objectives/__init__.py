"""Training objectives: what the trainer minimises, handed to the loop as NVlabs/edm hands it its ``Loss``.

One module per objective — :mod:`.denoising` (the ε-loss in λ, ELBO / quality weighting, adaptive importance
sampling) and :mod:`.distributional` (a generator trained with a scoring rule) — each with its own options
dataclass; :mod:`.protocol` is what the trainer knows of them. :data:`OBJECTIVES` names them for
``TrainConfig.objective`` without importing them (torch-free: the command line reads the names).
"""
from __future__ import annotations

import importlib

from ..registry import Registry

__all__ = ["OBJECTIVES", "Objective", "ObjectiveConfig", "Shard", "DenoisingObjective", "DenoisingConfig",
           "denoising_loss", "DistributionalObjective", "DistributionalConfig"]

OBJECTIVES = Registry("objective")
OBJECTIVES.register("denoising", "diffdensity.objectives.denoising:DenoisingObjective")
OBJECTIVES.register("distributional", "diffdensity.objectives.distributional:DistributionalObjective")

_HOMES = {"Objective": "protocol", "ObjectiveConfig": "protocol", "Shard": "protocol",
          "DenoisingObjective": "denoising", "DenoisingConfig": "denoising", "denoising_loss": "denoising",
          "DistributionalObjective": "distributional", "DistributionalConfig": "distributional"}


def __getattr__(name: str):
    """The public names, imported from their module on first use (keeps this package torch-free to import)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
