"""diffdensity: density in diffusion models (log-density, SDE tracking, high-density sampling, guidance).

The public API of ../shared/docs/api.md: each name listed once below (name → submodule) and imported on first
attribute access (PEP 562), so ``import diffdensity`` (and the command line) starts without torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    # schedules and models
    **dict.fromkeys(("VP", "VE", "FlowMatching", "Schedule"), ".schedules"),
    **dict.fromkeys(("NetworkModel", "PARAMETRIZATIONS"), ".models"),
    **dict.fromkeys(("GaussianMixture", "DiffusedMixture"), ".oracle"),
    **dict.fromkeys(("load", "save", "list_models"), ".io"),
    # sampling and density (paper 1)
    **dict.fromkeys(("Samples", "sample", "sample_ode", "sample_sde", "sample_hd"), ".sampling"),
    "mode_tracking": ".modes",
    **dict.fromkeys(("log_prob", "bits_per_dim", "ode_sde_gap"), ".likelihood"),
    "evaluate_bits_per_dim": ".evaluate",
    # guidance and score alignment (paper 2)
    **dict.fromkeys(("sample_prior_guided", "sample_density_guided", "sample_stochastic_density_guided",
                     "InfeasibleGuidance"), ".guidance"),
    **dict.fromkeys(("score_alignment", "alignment_fraction", "prior_guidance_identity"), ".alignment"),
    # distributional models (paper 3)
    **dict.fromkeys(("energy_score", "kernel_score", "sample_distributional", "sample_ddim", "GeneratorModel",
                     "MeanGenerator", "mmd", "mmd2", "energy_distance"), ".distributional"),
    # other people's models
    **dict.fromkeys(("from_diffusers", "from_denoiser", "from_score_sde", "Guided"), ".adapters"),
    # training
    **dict.fromkeys(("train", "TrainConfig", "Trainer", "EMA"), ".training"),
    # extension points (docs/extending.md): dynamics, noise, one evaluation record, divergence, the legs, registries
    **dict.fromkeys(("Dynamics", "Noise"), ".dynamics"),
    **dict.fromkeys(("Eval", "Divergence"), ".evaluation"),
    **dict.fromkeys(("integrate_ode", "integrate_sde"), ".integrate"),
    "Solver": ".solvers",
    **dict.fromkeys(("SOLVERS", "SAMPLERS", "GUIDANCE"), ".registry"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """Import a public name's submodule on first access (and cache the name here)."""
    if name == "__version__":
        from importlib.metadata import version

        value = version("diffdensity")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__, "__version__"})
