"""The Gaussian bridge with churn ε (De Bortoli et al. 2025, eq. 4; math.md §3.2) and the sampling time grids.

For 0 ≤ s < t (s less noisy), a clean estimate x₀ and r_{i,j} = (α_t/α_s)^i (σ_s/σ_t)^j — a ratio of σ, not σ²
(the bug of a third-party implementation, math.md §3.2):

    μ = (ε² r₁₂ + (1 − ε²) r₀₁) x_t + α_s (1 − ε² r₂₂ − (1 − ε²) r₁₁) x₀,
    Σ = σ_s² [1 − (ε² r₁₁ + 1 − ε²)²] I.

ε = 1 is the DDPM posterior q(x_s | x_t, x₀), ε = 0 deterministic DDIM. Since r₁₁ = exp((λ_t − λ_s)/2) ∈ (0, 1]
the factor ε² r₁₁ + 1 − ε² lies in [r₁₁, 1], so Σ ≥ 0 for every ε ∈ [0, 1]. At s = 0 (σ_s = 0) μ = x₀, Σ = 0.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .._rng import draw
from ..schedules import FlowMatching

__all__ = ["bridge", "bridge_step", "time_grid", "SPACINGS"]

SPACINGS = ("t", "lambda", "quadratic", "cubic")
_POWER = {"quadratic": 2, "cubic": 3}  # t_k = t_K (k/K)^ρ


def _check_churn(churn) -> float:
    churn = float(churn)
    if not 0.0 <= churn <= 1.0:
        raise ValueError(f"churn={churn}: need ε in [0, 1] (0 = DDIM, 1 = DDPM posterior).")
    return churn


def bridge(alpha_s, sigma_s, alpha_t, sigma_t, churn: float):
    """Coefficients (a, b, var) with μ = a x_t + b x₀ and Σ = var·I of the churn-ε bridge (math.md §3.2).

    Arguments are floats or tensors (broadcast together); σ_s = 0 gives (0, α_s, 0).
    """
    e2 = _check_churn(churn) ** 2
    alpha_s, sigma_s, alpha_t, sigma_t = (torch.as_tensor(v, dtype=torch.float64) for v in
                                          (alpha_s, sigma_s, alpha_t, sigma_t))
    ra = alpha_t / alpha_s  # (α_t/α_s)
    rs = sigma_s / sigma_t  # (σ_s/σ_t): the σ ratio, not σ²
    r01, r11, r12, r22 = rs, ra * rs, ra * rs**2, ra**2 * rs**2
    a = e2 * r12 + (1 - e2) * r01
    b = alpha_s * (1 - e2 * r22 - (1 - e2) * r11)
    c = e2 * r11 + 1 - e2
    var = (sigma_s**2 * (1 - c**2)).clamp_min(0.0)  # ≥ 0 in exact arithmetic (see the module docstring)
    return a, b, var


def bridge_step(x0: Tensor, x_t: Tensor, alpha_s, sigma_s, alpha_t, sigma_t, churn: float,
                generator: torch.Generator | None = None) -> Tensor:
    """One draw x_s ~ N(μ_{s,t}(x₀, x_t), Σ_{s,t}) of the bridge (scalar coefficients, one step of Algorithm 2)."""
    a, b, var = bridge(alpha_s, sigma_s, alpha_t, sigma_t, churn)
    a, b, sd = float(a), float(b), math.sqrt(float(var))
    x = a * x_t + b * x0
    if sd > 0:
        x = x + sd * draw("normal", x.shape, generator, dtype=x.dtype, device=x.device)
    return x


def time_grid(schedule, steps: int, spacing: str = "t") -> list[tuple[float, float, float]]:
    """The K = ``steps`` evaluation nodes of Algorithm 2 as [(λ_k, α_k, σ_k)] for k = K..1, then (inf, 1, 0) for t₀ = 0.

    The grid starts at λ_min (the prior's noise level; for FlowMatching t_K = sigmoid(−λ_min/2) = 1 − ε_safe) and
    ends at t₀ = 0, where the last step returns its x̂₀. ``spacing="t"``: t_k = t_K·k/K uniform in
    t = σ/(α + σ) = sigmoid(−λ/2) (FlowMatching's own time t = σ; for other schedules a monotone time in λ);
    ``"lambda"``: λ_k uniform in [λ_min, λ_max] over K+1 nodes whose last node (λ_max) is replaced by t₀ = 0;
    ``"quadratic"``: t_k = t_K·(k/K)² (DDIM's quadratic spacing, Song et al. 2021 §D.2: more steps at low noise);
    ``"cubic"``: t_k = t_K·(k/K)³ (finer still near the data; on ``checkerboard-distributional`` the best of the four
    at 2–4 steps).
    """
    from .._checks import check_count

    check_count(steps, "steps")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing={spacing!r}; choose one of {SPACINGS} (uniform in t, in λ = log SNR, t ∝ k² or k³).")
    K = int(steps)
    lo, hi = schedule.lambda_min, schedule.lambda_max
    if spacing == "lambda":
        lams = torch.linspace(lo, hi, K + 1, dtype=torch.float64)[:K]
    else:
        # t = σ/(α + σ) = sigmoid(−λ/2) is FlowMatching's time; for other schedules it is a monotone reparametrisation
        fm = FlowMatching()
        t_K = fm.lam_to_time(torch.tensor(lo, dtype=torch.float64))
        ts = t_K * torch.arange(K, 0, -1, dtype=torch.float64) / K
        ts = t_K * (ts / t_K) ** _POWER[spacing] if spacing in _POWER else ts
        lams = fm.time_to_lam(ts).clamp(lo, hi)
    nodes = []
    for lam in lams.tolist():
        a, s = schedule.alpha_sigma(torch.tensor(lam, dtype=torch.float64))
        nodes.append((lam, float(a), float(s)))
    nodes.append((math.inf, 1.0, 0.0))
    return nodes
