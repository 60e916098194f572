"""Algorithm 2 of De Bortoli et al. (2025): few-step sampling with a generator and the churn-ε bridge (math.md §3.6).

From x_{t_K} = x_T, for k = K..1: x̂₀ ~ G(x_{t_k}, λ_k, ξ), then x_{t_{k−1}} ~ bridge(x̂₀, x_{t_k}; churn) — at
t₀ = 0 that is x̂₀ itself. One generator evaluation per step (nfe = steps). :func:`sample_ddim` runs the same loop
with an ordinary score model's Tweedie mean in place of the generator (DDIM at churn 0, DDPM at churn 1).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_batch, check_output, check_state
from .._rng import as_generator
from ..integrate import Samples
from .bridge import bridge_step, time_grid
from .generators import MeanGenerator, check_generator

__all__ = ["sample_distributional", "sample_ddim"]


def sample_distributional(model, x_T: Tensor, steps: int = 4, churn: float = 1.0,
                          generator: torch.Generator | None = None, *, spacing: str = "t", callback=None,
                          progress: bool | None = None, name: str = "sample_distributional") -> Samples:
    """Algorithm 2 with ``steps`` generator evaluations from x_T (at λ_min) to t = 0; ``churn`` ε ∈ [0, 1]
    (0 = DDIM-like, 1 = DDPM posterior). ``spacing`` "t" (uniform in t) or "lambda" (uniform in λ), see
    :func:`~diffdensity.distributional.bridge.time_grid`. ``callback(info)`` per step with
    info = {"i", "lam", "x", "x0"}. Returns Samples(x, None, nfe=steps)."""
    check_generator(model)
    check_batch(x_T, "x_T")
    generator = as_generator(generator)
    nodes = time_grid(model.schedule, steps, spacing)
    x = x_T
    it = range(len(nodes) - 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="sample_distributional")
    with torch.no_grad():
        for i in it:
            (lam_t, a_t, s_t), (_, a_s, s_s) = nodes[i], nodes[i + 1]
            x0 = check_output("the generator (sample_x0)", model.sample_x0(
                x, torch.tensor(lam_t, dtype=x.dtype, device=x.device), generator), x)
            x = x0 if s_s == 0.0 else bridge_step(x0, x, a_s, s_s, a_t, s_t, churn, generator)
            check_state(name, lam_t, x0, x)
            if callback is not None:
                callback({"i": i, "lam": lam_t, "x": x, "x0": x0})
    return Samples(x, None, len(nodes) - 1)


def sample_ddim(model, x_T: Tensor, steps: int = 4, churn: float = 0.0, generator: torch.Generator | None = None,
                **kwargs) -> Samples:
    """The bridge sampler with a score model's mean prediction x̂₀ = (x + σ² s)/α: DDIM (churn 0) … DDPM (churn 1),
    a few-step baseline for any score model (shipped, adapted). Keyword arguments as :func:`sample_distributional`."""
    if not callable(getattr(model, "score", None)):
        raise TypeError(f"{type(model).__name__} has no score(x, lam); sample_ddim needs a score model "
                        "(a generator model is sampled with dd.sample_distributional).")
    return sample_distributional(MeanGenerator(model), x_T, steps, churn, generator, name="sample_ddim", **kwargs)
