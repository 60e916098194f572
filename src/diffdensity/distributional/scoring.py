"""Scoring rules for distributional diffusion training (De Bortoli et al. 2025, math.md §3.4–3.5).

A population x̂¹..x̂ᵐ ~ P (shape (B, m, *shape)) is scored against the observation y (B, *shape) by the
U-statistic of a "distance" ρ(‖·‖²) (lower is better)

    S(P, y) ≈ (1/m) Σ_j ρ(‖x̂ʲ − y‖²) − interaction/(2 m (m−1)) Σ_{j≠j'} ρ(‖x̂ʲ − x̂ʲ'‖²),

which is an unbiased estimate of E ρ(‖X − y‖²) − (interaction/2) E ρ(‖X − X'‖²) (the pair sum is normalised
once, by m(m−1); the double normalisation of a third-party implementation, math.md §3.5, is not copied). Norms run
over the flattened sample. The energy score is ρ(d²) = (d²)^{β/2}; a kernel score is ρ = −k (RBF, IMQ).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

__all__ = ["population_score", "energy_score", "kernel_score", "rbf_kernel", "imq_kernel", "KERNELS",
           "DEFAULT_CLIP"]

DEFAULT_CLIP = 1e-8  # squared distances are clipped here before fractional powers (∇‖·‖^β is infinite at 0 for β < 2)


def _check(preds: Tensor, target: Tensor, interaction: float) -> None:
    if not isinstance(preds, Tensor) or not isinstance(target, Tensor):
        raise TypeError("preds and target must be torch tensors.")
    if preds.ndim < 2 or preds.shape[0] != target.shape[0] or tuple(preds.shape[2:]) != tuple(target.shape[1:]):
        raise ValueError(f"preds has shape {tuple(preds.shape)} and target {tuple(target.shape)}; need preds "
                         "(B, m, *shape) — a population of m samples per target — and target (B, *shape).")
    if not 0.0 <= float(interaction) <= 1.0:
        raise ValueError(f"interaction={interaction}: need λ in [0, 1] (1 = strictly proper, 0 = regression).")
    if float(interaction) > 0 and preds.shape[1] < 2:
        raise ValueError(f"interaction={interaction} needs a population of m >= 2 samples per target, got "
                         f"m = {preds.shape[1]}; draw more samples or use interaction=0.")


def population_score(preds: Tensor, target: Tensor, rho: Callable[[Tensor], Tensor],
                     interaction: float = 1.0) -> Tensor:
    """The U-statistic of the module docstring for ``rho`` (squared distance -> distance-like) -> (B,)."""
    _check(preds, target, interaction)
    B, m = preds.shape[:2]
    p = preds.reshape(B, m, -1)
    conf = rho((p - target.reshape(B, 1, -1)).pow(2).sum(-1)).mean(1)
    if float(interaction) == 0:
        return conf
    sq = (p[:, :, None, :] - p[:, None, :, :]).pow(2).sum(-1)  # (B, m, m); differences, not cdist (∇ at 0)
    off = ~torch.eye(m, dtype=torch.bool, device=p.device)
    pair = rho(sq[:, off]).sum(1) / (m * (m - 1))  # normalised once over the m(m−1) ordered pairs
    return conf - 0.5 * float(interaction) * pair


def energy_score(preds: Tensor, target: Tensor, beta: float = 1.0, interaction: float = 1.0,
                 clip: float = DEFAULT_CLIP) -> Tensor:
    """Generalised energy score E‖X − y‖^β − (λ/2) E‖X − X'‖^β as the unbiased U-statistic (math.md §3.5) -> (B,).

    preds (B, m, *shape), target (B, *shape); ``interaction`` = the paper's λ. β = 2, interaction = 0 is the
    squared error (1/m) Σ_j ‖x̂ʲ − y‖² (the regression loss, no clipping at β = 2); for β < 2 squared distances
    are clipped at ``clip`` so the score and its gradient stay finite when samples coincide.
    """
    beta = float(beta)
    if not 0.0 < beta <= 2.0:
        raise ValueError(f"beta={beta}: need β in (0, 2] (β = 2 with interaction 0 is the MSE).")
    if beta == 2.0:
        rho = lambda d2: d2  # noqa: E731
    else:
        rho = lambda d2: d2.clamp_min(clip).pow(0.5 * beta)  # noqa: E731
    return population_score(preds, target, rho, interaction)


def rbf_kernel(d2: Tensor, bandwidth: float) -> Tensor:
    """k = exp(−‖x − y‖² / (2 h²))."""
    return torch.exp(-0.5 * d2 / bandwidth**2)


def imq_kernel(d2: Tensor, bandwidth: float) -> Tensor:
    """k = c / sqrt(c² + ‖x − y‖²) (inverse multiquadric, normalised to k(x, x) = 1)."""
    return bandwidth / torch.sqrt(bandwidth**2 + d2)


KERNELS = {"rbf": rbf_kernel, "imq": imq_kernel}


def kernel_score(preds: Tensor, target: Tensor, kernel: str = "rbf", bandwidth: float = 1.0,
                 interaction: float = 1.0) -> Tensor:
    """Kernel (MMD-type) score (λ/2) E k(X, X') − E k(X, y) + (1 − λ/2)·k(0) as the U-statistic -> (B,).

    ``kernel`` "rbf" or "imq" (math.md §3.4: both are "diffusion-compatible"); the constant makes a point mass at
    y score 0 (it does not change gradients). With interaction = 1 this is ½ MMD²(P, δ_y) up to the U-statistic.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r}; choose one of {sorted(KERNELS)}.")
    if not float(bandwidth) > 0:
        raise ValueError(f"bandwidth={bandwidth}: need a positive kernel bandwidth.")
    k = KERNELS[kernel]
    return population_score(preds, target, lambda d2: 1.0 - k(d2, float(bandwidth)), interaction)
