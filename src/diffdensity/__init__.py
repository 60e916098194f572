"""diffdensity: density in diffusion models (log-density, SDE tracking, high-density sampling, guidance).

The public API of ../shared/docs/api.md, re-exported; nothing else lives here.
"""
from .schedules import VP, VE, FlowMatching, Schedule
from .models import NetworkModel, CountingModel, PARAMETRIZATIONS
from .oracle import GaussianMixture, DiffusedMixture
from .sampling import Samples, sample, sample_ode, sample_sde, sample_hd
from .modes import mode_tracking
from .likelihood import log_prob, bits_per_dim, ode_sde_gap
from .io import load, save, list_models
from .training import train, TrainConfig, Trainer, ImportanceSampler, EMA, denoising_loss

__version__ = "0.1.0"

__all__ = [
    "VP", "VE", "FlowMatching", "Schedule",
    "NetworkModel", "CountingModel", "PARAMETRIZATIONS",
    "GaussianMixture", "DiffusedMixture",
    "Samples", "sample", "sample_ode", "sample_sde", "sample_hd", "mode_tracking",
    "log_prob", "bits_per_dim", "ode_sde_gap",
    "load", "save", "list_models",
    "train", "TrainConfig", "Trainer", "ImportanceSampler", "EMA", "denoising_loss",
]

from .adapters import from_diffusers, from_denoiser, Guided, warn_if_guided
from .evaluate import evaluate_bits_per_dim

__all__ += ["from_diffusers", "from_denoiser", "Guided", "warn_if_guided", "evaluate_bits_per_dim"]

from .guidance import (sample_prior_guided, sample_density_guided, sample_stochastic_density_guided,
                       InfeasibleGuidance)
from .alignment import score_alignment, alignment_fraction, prior_guidance_identity

__all__ += ["sample_prior_guided", "sample_density_guided", "sample_stochastic_density_guided", "InfeasibleGuidance",
            "score_alignment", "alignment_fraction", "prior_guidance_identity"]

from .distributional import (energy_score, kernel_score, sample_distributional, sample_ddim, GeneratorModel,
                             OracleGenerator, MeanGenerator, mmd, mmd2, energy_distance)

__all__ += ["energy_score", "kernel_score", "sample_distributional", "sample_ddim", "GeneratorModel",
            "OracleGenerator", "MeanGenerator", "mmd", "mmd2", "energy_distance"]
