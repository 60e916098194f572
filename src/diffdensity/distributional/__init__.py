"""Distributional diffusion models with scoring rules (De Bortoli et al., ICML 2025; math.md §3).

A generator x̂₀ = G(x_λ, λ, ξ) learns the whole posterior p(x₀ | x_λ) by minimising a scoring rule (the energy
score, or kernel scores), so the few-step bridge sampler (Algorithm 2) keeps its quality where a mean-predicting
diffusion model blurs. Pieces: :mod:`.generators` (models, nets, the oracle and Tweedie generators),
:mod:`.scoring` (energy / kernel scores), :mod:`.bridge` (the churn-ε bridge and grids), :mod:`.sampling`
(Algorithm 2, DDIM/DDPM for score models), :mod:`.metrics` (MMD, energy distance), :mod:`.quality` (metrics that see
fine structure, with standard errors), :mod:`.experiments` (NFE sweeps, training sweeps, tables and plots).
Algorithm 1, the training objective, is :mod:`diffdensity.objectives.distributional`.
"""
from .bridge import bridge, bridge_step, time_grid
from .generators import (GENERATOR_NETS, Generator, GeneratorMLP, GeneratorModel, GeneratorUNet, MeanGenerator,
                         OracleGenerator, build_generator_net)
from .metrics import energy_distance, median_bandwidth, mmd, mmd2, sample_distances
from .sampling import sample_ddim, sample_distributional
from .scoring import energy_score, imq_kernel, kernel_score, population_score, rbf_kernel

__all__ = ["bridge", "bridge_step", "time_grid", "Generator", "GeneratorModel", "GeneratorMLP", "GeneratorUNet",
           "OracleGenerator", "MeanGenerator", "build_generator_net", "GENERATOR_NETS", "energy_distance",
           "median_bandwidth", "mmd", "mmd2", "sample_distances",
           "sample_ddim", "sample_distributional", "energy_score", "kernel_score", "population_score",
           "rbf_kernel", "imq_kernel"]
