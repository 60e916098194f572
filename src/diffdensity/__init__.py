"""diffdensity: density in diffusion models (log-density, SDE tracking, high-density sampling, guidance).

The public API of ../shared/docs/api.md, re-exported; nothing else lives here.
"""
from .schedules import VP, VE, FlowMatching, Schedule
from .models import NetworkModel, CountingModel, PARAMETRIZATIONS
from .oracle import GaussianMixture, DiffusedMixture
from .sampling import Samples, sample_ode, sample_sde
from .likelihood import log_prob, bits_per_dim, ode_sde_gap
from .io import load, save, list_models
from .training import train, TrainConfig, Trainer, ImportanceSampler, EMA, denoising_loss

__version__ = "0.1.0"

__all__ = [
    "VP", "VE", "FlowMatching", "Schedule",
    "NetworkModel", "CountingModel", "PARAMETRIZATIONS",
    "GaussianMixture", "DiffusedMixture",
    "Samples", "sample_ode", "sample_sde",
    "log_prob", "bits_per_dim", "ode_sde_gap",
    "load", "save", "list_models",
    "train", "TrainConfig", "Trainer", "ImportanceSampler", "EMA", "denoising_loss",
]

from .adapters import from_diffusers, from_denoiser, Guided, warn_if_guided
from .evaluate import evaluate_bits_per_dim

__all__ += ["from_diffusers", "from_denoiser", "Guided", "warn_if_guided", "evaluate_bits_per_dim"]

from .distributional import (energy_score, kernel_score, sample_distributional, sample_ddim, GeneratorModel,
                             OracleGenerator, MeanGenerator, mmd, mmd2, energy_distance)

__all__ += ["energy_score", "kernel_score", "sample_distributional", "sample_ddim", "GeneratorModel",
            "OracleGenerator", "MeanGenerator", "mmd", "mmd2", "energy_distance"]
