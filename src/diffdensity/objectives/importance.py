"""Adaptive importance sampling of λ (Kingma & Gao 2023; as in the reference ``utils.ImportanceSampler``).

With ``n_bins=1`` the proposal is uniform and never changes (:func:`~diffdensity.objectives.denoising.UniformLambda`).

A histogram of ``n_bins`` (100) equal bins over [λ_min, λ_max] holds an exponential moving average (decay 0.99)
of the recent per-bin loss w(λ)·‖ε̂ − ε‖². The proposal is piecewise constant and proportional to that histogram:

    q(λ) = [(1 − m) h_k / Σ_j h_j + m / K] / Δ      for λ in bin k of width Δ = (λ_max − λ_min)/K,

with an optional uniform mixture weight m (default 0, as in the reference). Samples come from the inverse CDF of
q applied to low-discrepancy uniforms, and the trainer divides each sample's loss by q(λ), so the estimate of
∫ w(λ) E‖ε̂ − ε‖² dλ stays unbiased whatever the histogram holds.

Differences from the reference, deliberate and harmless for unbiasedness: the histogram is updated every step
from the training batch itself (the per-sample loss conditional on λ does not depend on the proposal that drew
λ), each visited bin takes one EMA step with the mean of its samples, and the EMA is bias-corrected
(h_k = EMA_k / (1 − decay^{n_k}) after n_k updates; bins never visited take the mean of the visited ones), so
the histogram has the right scale from the first step instead of drifting up from ones.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ImportanceSampler"]


class ImportanceSampler:
    """Piecewise-constant adaptive proposal over λ (see the module docstring)."""

    def __init__(
        self,
        lambda_min: float,
        lambda_max: float,
        n_bins: int = 100,
        decay: float = 0.99,
        uniform_mix: float = 0.0,
    ):
        if not lambda_min < lambda_max:
            raise ValueError(f"need lambda_min < lambda_max, got {lambda_min}, {lambda_max}.")
        if int(n_bins) != n_bins or n_bins < 1:
            raise ValueError(f"n_bins={n_bins}: need a positive integer.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay}: need 0 <= decay < 1.")
        if not 0.0 <= uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix={uniform_mix}: need a weight in [0, 1].")
        self.lambda_min, self.lambda_max = float(lambda_min), float(lambda_max)
        self.n_bins = int(n_bins)
        self.decay = float(decay)
        self.uniform_mix = float(uniform_mix)
        self.bin_width = (self.lambda_max - self.lambda_min) / self.n_bins
        self.ema = torch.zeros(self.n_bins, dtype=torch.float64)
        self.count = torch.zeros(self.n_bins, dtype=torch.int64)

    # ------------------------------------------------------------------ the histogram and the proposal
    def histogram(self) -> Tensor:
        """The bias-corrected EMA of the per-bin loss, (n_bins,) float64 (ones before any update)."""
        seen = self.count > 0
        if not seen.any():
            return torch.ones(self.n_bins, dtype=torch.float64)
        h = torch.zeros(self.n_bins, dtype=torch.float64)
        h[seen] = self.ema[seen] / (1.0 - self.decay ** self.count[seen].to(torch.float64))
        h[~seen] = h[seen].mean()
        h = h.clamp_min(0.0)
        if h.sum() <= 0 or not torch.isfinite(h).all():
            return torch.ones(self.n_bins, dtype=torch.float64)
        return h

    def bin_probs(self) -> Tensor:
        """Probability mass q_k of each bin, (n_bins,) float64, summing to 1."""
        h = self.histogram()
        return (1.0 - self.uniform_mix) * h / h.sum() + self.uniform_mix / self.n_bins

    def bin_index(self, lam: Tensor) -> Tensor:
        """Bin of each λ (λ_max belongs to the last bin)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        k = torch.floor((lam - self.lambda_min) / self.bin_width).to(torch.int64)
        return k.clamp(0, self.n_bins - 1)

    def density(self, lam: Tensor) -> Tensor:
        """q(λ), the proposal density (zero outside [λ_min, λ_max]); float64."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        q = self.bin_probs()[self.bin_index(lam).cpu()].to(lam.device) / self.bin_width
        inside = (lam >= self.lambda_min) & (lam <= self.lambda_max)
        return torch.where(inside, q, torch.zeros_like(q))

    def sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse-CDF map of uniforms u ∈ [0, 1) to (λ, q(λ)), both with u's dtype and device."""
        dtype, device = u.dtype, u.device
        u64 = u.detach().to(torch.float64).cpu()
        probs = self.bin_probs()
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(probs, 0)])
        cdf[-1] = 1.0
        k = (torch.searchsorted(cdf, u64, right=True) - 1).clamp(0, self.n_bins - 1)
        # skip empty bins (probability 0 only if uniform_mix = 0 and a bin's loss is exactly 0)
        frac = ((u64 - cdf[k]) / probs[k].clamp_min(1e-300)).clamp(0.0, 1.0)
        lam = self.lambda_min + (k.to(torch.float64) + frac) * self.bin_width
        lam = lam.clamp(self.lambda_min, self.lambda_max)
        q = probs[k] / self.bin_width
        return lam.to(device=device, dtype=dtype), q.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ adaptation
    @torch.no_grad()
    def update(self, lam: Tensor, values: Tensor) -> None:
        """One EMA step for every bin hit by ``lam``, with the mean of its ``values`` (non-finite ones ignored)."""
        lam = torch.as_tensor(lam).detach().to(torch.float64).cpu().reshape(-1)
        values = torch.as_tensor(values).detach().to(torch.float64).cpu().reshape(-1)
        if lam.shape != values.shape:
            raise ValueError(f"lam {tuple(lam.shape)} and values {tuple(values.shape)} must have the same length.")
        ok = torch.isfinite(values) & torch.isfinite(lam)
        lam, values = lam[ok], values[ok]
        if lam.numel() == 0:
            return
        k = self.bin_index(lam)
        sums = torch.zeros(self.n_bins, dtype=torch.float64).index_add_(0, k, values)
        hits = torch.bincount(k, minlength=self.n_bins)
        hit = hits > 0
        means = sums[hit] / hits[hit].to(torch.float64)
        self.ema[hit] = self.decay * self.ema[hit] + (1.0 - self.decay) * means
        self.count[hit] += 1

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "kind": "importance",
            "lambda_min": self.lambda_min,
            "lambda_max": self.lambda_max,
            "n_bins": self.n_bins,
            "decay": self.decay,
            "uniform_mix": self.uniform_mix,
            "ema": self.ema.clone(),
            "count": self.count.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") == "uniform":  # written by the former UniformLambda class: one bin, nothing adapted
            state = {**self.state_dict(), **state, "kind": "importance", "n_bins": 1,
                     "ema": torch.zeros(1, dtype=torch.float64), "count": torch.zeros(1, dtype=torch.int64)}
        if state.get("kind") != "importance":
            raise ValueError(f"λ-sampler state of kind {state.get('kind')!r} cannot be loaded into an importance sampler.")
        for key in ("lambda_min", "lambda_max", "n_bins"):
            if state[key] != getattr(self, key):
                hint = " (a uniform λ-sampler: was the run trained with importance sampling off?)" if 1 in (state["n_bins"], self.n_bins) else ""
                raise ValueError(f"importance-sampler state has {key}={state[key]} but this sampler has {getattr(self, key)}{hint}.")
        self.decay = float(state["decay"])
        self.uniform_mix = float(state["uniform_mix"])
        self.ema = state["ema"].to(torch.float64).clone()
        self.count = state["count"].to(torch.int64).clone()

    def __repr__(self) -> str:
        return (
            f"ImportanceSampler(lambda_min={self.lambda_min:g}, lambda_max={self.lambda_max:g}, "
            f"n_bins={self.n_bins}, decay={self.decay}, uniform_mix={self.uniform_mix})"
        )
