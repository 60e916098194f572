"""Other people's models as diffdensity models: diffusers, EDM / k-diffusion denoisers, classifier-free guidance.

Each adapter is a model (``.schedule`` and ``.score(x, lam)``) that converts one foreign convention once, here:

* :func:`from_diffusers` — discrete-time diffusers models. The network was trained on timesteps k = 0..T−1 with
  x = √ᾱ_k x₀ + √(1−ᾱ_k) ε, i.e. a VP process with λ_k = log(ᾱ_k / (1 − ᾱ_k)) (the scheduler's
  ``alphas_cumprod``). λ ↦ timestep is the inverse of the *piecewise-linear interpolation of that table*:
  t(λ) = k + (λ − λ_k)/(λ_{k+1} − λ_k) for λ_{k+1} ≤ λ ≤ λ_k. Why this map: it is exact at every trained
  timestep (the network sees exactly the integers it was trained on), it is monotone because λ_k is strictly
  decreasing (β_k > 0), and it needs no assumption about the beta schedule (linear, scaled-linear, cosine,
  zero-terminal-SNR all go through the same table). Assuming instead that the timestep is linear in λ mis-states
  the noise level the network is told by hundreds of timesteps (1.4 nats on a real model). Flow-matching
  models (``FlowMatchEulerDiscreteScheduler``) use x = (1 − σ) x₀ + σ ε and timestep = σ·T, i.e. dd.FlowMatching
  with σ = sigmoid(−λ/2), so t(λ) = T·sigmoid(−λ/2) in closed form.
* :func:`from_score_sde` — score_sde's continuous-time VP networks (linear β(t)), t(λ) in closed form.
* :func:`from_denoiser` — ``denoiser(x, sigma) -> x̂₀`` with x = x₀ + σ ε (EDM, k-diffusion): a model under
  dd.VE (α = 1, σ = exp(−λ/2)), the only schedule in which that input is the right one.
* :class:`Guided` / ``guidance_scale=`` — classifier-free guidance s_w = (1 + w) s(x | c) − w s(x).
* :func:`from_diffusers` on a *pipeline* (instance, folder or hub id) with ``prompt=`` — a latent text-to-image
  model (:class:`~diffdensity.adapters.pipelines.PipelineModel`, with ``encode``/``decode`` through the VAE);
  its ``guidance_scale`` is diffusers' (:func:`~diffdensity.adapters.pipelines.library_w`: w = guidance_scale − 1).
* :mod:`diffdensity.adapters.schedulers` — diffusers schedulers that run the library's samplers inside a pipeline,
  and :func:`sample_scheduler`: any diffusers ε-prediction scheduler (UniPC, DPM-Solver, DEIS) on a VP model.

The λ range of an adapter's schedule is what its network was trained on (samplers and log_prob refuse λ outside
it; ``lambda_range`` may narrow it, never widen it).
"""
from __future__ import annotations

from .core import Guided, warn_if_guided
from .diffusers import DiffusersModel, from_diffusers, lambda_table, timestep_from_lambda
from .edm import DenoiserModel, from_denoiser
from .score_sde import ScoreSDEModel, from_score_sde, vp_lambda_from_time, vp_time_from_lambda

__all__ = ["from_diffusers", "from_denoiser", "from_score_sde", "DiffusersModel", "DenoiserModel", "ScoreSDEModel",
           "Guided", "warn_if_guided", "lambda_table", "timestep_from_lambda", "vp_lambda_from_time",
           "vp_time_from_lambda"]
# also here, loaded on first use: PipelineModel, library_w, guided_latents (pipelines) and the diffusers schedulers
# TrackedSDEScheduler, DensityGuidanceScheduler, HighDensityScheduler, and scheduler_for / sample_scheduler (a
# diffusers scheduler on a VP diffdensity model) (schedulers)

_LAZY = {"PipelineModel": "pipelines", "library_w": "pipelines", "guided_latents": "pipelines",
         "TrackedSDEScheduler": "schedulers", "DensityGuidanceScheduler": "schedulers",
         "HighDensityScheduler": "schedulers", "scheduler_for": "schedulers", "sample_scheduler": "schedulers"}


def __getattr__(name):
    """The pipeline and scheduler adapters load on first use (the schedulers need diffusers)."""
    if name in _LAZY:
        import importlib

        try:
            return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        except ImportError as e:
            raise ImportError(f"diffdensity.adapters.{name} needs diffusers: "
                              "pip install 'diffdensity[diffusers]'") from e
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
