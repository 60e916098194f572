"""Distances between sample sets: RBF-MMD with the median-heuristic bandwidth, and the energy distance.

For samples X (n, ...) and Y (m, ...), flattened, with k(x, y) = exp(−‖x − y‖²/(2h²)):

    MMD²_u = mean_{i≠i'} k(x_i, x_i') + mean_{j≠j'} k(y_j, y_j') − 2 mean_{i,j} k(x_i, y_j)   (unbiased; may be < 0)
    MMD²_b = the same with the diagonals included (biased V-statistic, ≥ 0);  MMD = sqrt(MMD²_b)
    ED     = 2 mean ‖x_i − y_j‖ − mean_{i≠i'} ‖x_i − x_i'‖ − mean_{j≠j'} ‖y_j − y_j'‖   (unbiased)

Median heuristic: h = median of the pairwise distances ‖z − z'‖ (z ≠ z') of a reference set (default: X and Y
pooled, at most 2048 points of each); pass ``bandwidth`` to compare several sets under one kernel.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["median_bandwidth", "mmd", "mmd2", "energy_distance", "sample_distances"]


def _flat(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a tensor of at least 2 samples (n, ...); got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}.")
    if x[0].numel() == 0 or not torch.isfinite(x).all():
        raise ValueError(f"{name} has NaN/inf values or empty samples (shape {tuple(x.shape)}); distances between "
                         "such sets are undefined: clean the samples first.")
    return x.reshape(x.shape[0], -1).to(torch.float64)


def _sq(a: Tensor, b: Tensor) -> Tensor:
    return torch.cdist(a, b).pow(2)


def median_bandwidth(*sets: Tensor, max_points: int = 2048) -> float:
    """The median pairwise distance of the pooled sets (each subsampled to its first ``max_points``)."""
    z = torch.cat([_flat(s, "samples")[:max_points] for s in sets])
    d = torch.pdist(z)
    return float(d.median())


def mmd2(x: Tensor, y: Tensor, bandwidth: float | None = None, unbiased: bool = True) -> float:
    """MMD² between the sample sets x and y with an RBF kernel (median heuristic when ``bandwidth`` is None)."""
    x, y = _flat(x, "x"), _flat(y, "y").to(x.device)
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth={h}: need a positive kernel bandwidth.")
    kxx, kyy, kxy = (torch.exp(-0.5 * _sq(a, b) / h**2) for a, b in ((x, x), (y, y), (x, y)))
    n, m = x.shape[0], y.shape[0]
    if unbiased:
        sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        sxx, syy = kxx.mean(), kyy.mean()
    return float(sxx + syy - 2 * kxy.mean())


def mmd(x: Tensor, y: Tensor, bandwidth: float | None = None) -> float:
    """MMD = sqrt of the biased (V-statistic, non-negative) RBF MMD² (median heuristic when ``bandwidth`` is None)."""
    return max(mmd2(x, y, bandwidth, unbiased=False), 0.0) ** 0.5


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Energy distance 2E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (unbiased within-set terms)."""
    x, y = _flat(x, "x"), _flat(y, "y").to(x.device)
    n, m = x.shape[0], y.shape[0]
    dxx = torch.cdist(x, x).sum() / (n * (n - 1))
    dyy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * torch.cdist(x, y).mean() - dxx - dyy)


def sample_distances(x: Tensor, y: Tensor, bandwidth: float | None = None) -> dict:
    """{"mmd", "mmd2_unbiased", "energy_distance", "bandwidth"} between x and the reference y."""
    h = median_bandwidth(y) if bandwidth is None else float(bandwidth)
    return {"mmd": mmd(x, y, h), "mmd2_unbiased": mmd2(x, y, h), "energy_distance": energy_distance(x, y),
            "bandwidth": h}
