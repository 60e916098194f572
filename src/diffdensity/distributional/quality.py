"""Sample-quality metrics that see fine structure, each with a standard error over disjoint sample sets (issue 21).

A median-heuristic RBF kernel (h ≈ 2 on data in [−2, 2]²) cannot see a checkerboard's unit squares, so:

* :func:`kernel_stats` — the energy distance ED = 2E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ and the unbiased RBF MMD²
  (k = exp(−‖x − y‖²/(2h²))) at the bandwidths of :func:`range_bandwidths`: h = f·R for fractions f of the data's
  range R = max_j (max y_j − min y_j) (default f = 0.05, 0.1, 0.2, 0.5);
* task metrics of the 2-D toys: :func:`checkerboard_fraction` (the fraction on the dark squares; data 1, uniform on
  [−2, 2]² 0.5) and :func:`gaussians8_stats` (the fraction within 3σ of a mode — exact data 1 − e^{−9/2} = 0.989 in
  2-D — and the number of modes holding at least half their fair share, n/16 of n samples);
* :func:`kid` — KID-style unbiased MMD² with the cubic polynomial kernel k = (x·y/d + 1)³, in pixel space or in the
  features of :func:`random_conv_features` (a fixed, seeded random conv net).

:func:`over_sets` splits the samples into S disjoint sets, evaluates a metric on each (set i of x against set i of
the reference) and reports mean, standard error std/√S and the values.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["over_sets", "range_bandwidths", "kernel_stats", "checkerboard_fraction", "gaussians8_stats",
           "toy_task_metrics", "poly_mmd2", "kid", "random_conv_features", "structure_metrics", "BANDWIDTH_FRACTIONS"]

BANDWIDTH_FRACTIONS = (0.05, 0.1, 0.2, 0.5)


def _flat(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"need a tensor of at least 2 samples (n, ...); got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}.")
    return x.reshape(x.shape[0], -1).to(torch.float64)


def over_sets(fn, x: Tensor, y: Tensor | None = None, sets: int = 4) -> dict:
    """{"mean", "se", "values"} of ``fn(x_i, y_i)`` (or ``fn(x_i)``) over ``sets`` disjoint chunks; se = std/√S."""
    if int(sets) < 2:
        raise ValueError(f"sets={sets}: need at least 2 sample sets for a standard error.")
    xs = torch.tensor_split(x, int(sets))
    ys = torch.tensor_split(y, int(sets)) if y is not None else [None] * int(sets)
    vals = [fn(a) if b is None else fn(a, b) for a, b in zip(xs, ys)]
    keys = vals[0].keys() if isinstance(vals[0], dict) else [None]
    out = {}
    for k in keys:
        v = torch.tensor([float(d if k is None else d[k]) for d in vals], dtype=torch.float64)
        out[k] = {"mean": float(v.mean()), "se": float(v.std() / math.sqrt(len(v))), "values": v.tolist()}
    return out[None] if keys == [None] else out


def range_bandwidths(ref: Tensor, fractions=BANDWIDTH_FRACTIONS) -> dict:
    """{f: f·R} with R = max_j (max ref_j − min ref_j), the range of the reference data."""
    r = _flat(ref)
    R = float((r.max(0).values - r.min(0).values).max())
    return {float(f): float(f) * R for f in fractions}


def _offdiag_mean(k: Tensor) -> Tensor:
    n = k.shape[0]
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def kernel_stats(x: Tensor, y: Tensor, bandwidths=()) -> dict:
    """{"energy_distance", "mmd2@LABEL"}: unbiased ED and RBF MMD² (module docstring); ``bandwidths`` h values
    (label f"{h:g}") or a dict label -> h."""
    x, y = _flat(x), _flat(y)
    bws = bandwidths if isinstance(bandwidths, dict) else {f"{float(h):g}": h for h in bandwidths}
    dxx, dyy, dxy = torch.cdist(x, x), torch.cdist(y, y), torch.cdist(x, y)
    out = {"energy_distance": float(2 * dxy.mean() - _offdiag_mean(dxx) - _offdiag_mean(dyy))}
    for label, h in bws.items():
        k = [torch.exp(-0.5 * (d / float(h)) ** 2) for d in (dxx, dyy, dxy)]
        out[f"mmd2@{label}"] = float(_offdiag_mean(k[0]) + _offdiag_mean(k[1]) - 2 * k[2].mean())
    return out


def checkerboard_fraction(x: Tensor) -> float:
    """Fraction of 2-D points on the dark squares of the 4×4 board on [−2, 2]² (⌊x₁⌋ + ⌊x₂⌋ even, inside)."""
    x = _flat(x)
    inside = (x >= -2).all(1) & (x < 2).all(1)
    dark = torch.remainder(torch.floor(x[:, 0]) + torch.floor(x[:, 1]), 2) == 0
    return float((inside & dark).double().mean())


def gaussians8_stats(x: Tensor, std: float = 0.15, radius: float = math.sqrt(2.0)) -> dict:
    """{"within_3sigma", "modes_covered"}: the fraction within 3σ of its nearest mode, and the modes holding at least
    n/16 of the n points (half the fair share n/8)."""
    x = _flat(x)
    ang = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    centres = radius * torch.stack([ang.cos(), ang.sin()], 1)
    d = torch.cdist(x, centres).min(1)
    ok = d.values < 3 * std
    counts = torch.bincount(d.indices[ok], minlength=8)
    return {"within_3sigma": float(ok.double().mean()), "modes_covered": int((counts >= x.shape[0] / 16).sum())}


def toy_task_metrics(dataset: str | None, x: Tensor) -> dict:
    """The task metrics of a 2-D toy data set ({} for a data set without one)."""
    if dataset == "checkerboard":
        return {"on_squares": checkerboard_fraction(x)}
    if dataset == "8gaussians":
        return gaussians8_stats(x)
    return {}


def poly_mmd2(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y/d + 1)³ (the KID kernel)."""
    x, y = _flat(x), _flat(y)
    d = x.shape[1]
    k = [(a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y))]
    return float(_offdiag_mean(k[0]) + _offdiag_mean(k[1]) - 2 * k[2].mean())


def random_conv_features(x: Tensor, seed: int = 0, widths=(32, 64, 128)) -> Tensor:
    """Features of a fixed random conv net: 3×3 convs (stride 1, 2, 2; He-normal weights from ``seed``, zero bias),
    ReLU, then global average pooling -> (n, widths[-1]). Images (n, C, H, W)."""
    if x.ndim != 4:
        raise ValueError(f"random_conv_features needs images (n, C, H, W); got shape {tuple(x.shape)}.")
    g = torch.Generator().manual_seed(int(seed))
    h, c_in = x.to(torch.float64), x.shape[1]
    for i, c_out in enumerate(widths):
        w = torch.randn(c_out, c_in, 3, 3, generator=g, dtype=torch.float64) * math.sqrt(2.0 / (9 * c_in))
        h = torch.relu(torch.nn.functional.conv2d(h, w, stride=1 if i == 0 else 2, padding=1))
        c_in = c_out
    return h.mean((2, 3))


def kid(x: Tensor, y: Tensor, features: str = "pixels", sets: int = 4, seed: int = 0) -> dict:
    """KID-style unbiased cubic-polynomial MMD² over ``sets`` disjoint sets ({"mean", "se", "values"}), in
    ``features`` "pixels" or "random_conv" (:func:`random_conv_features` with ``seed``)."""
    if features == "random_conv":
        x, y = random_conv_features(x, seed), random_conv_features(y, seed)
    elif features != "pixels":
        raise ValueError(f"features={features!r}; choose 'pixels' or 'random_conv'.")
    return over_sets(poly_mmd2, x, y, sets)


def structure_metrics(x: Tensor, ref: Tensor, dataset: str | None = None, sets: int = 4,
                      fractions=BANDWIDTH_FRACTIONS) -> dict:
    """ED and MMD² at h = f·R ("mmd2@{f}R", over ``sets`` sample sets) plus the toy's task metrics, each
    {"mean", "se", "values"}; "bandwidths" maps each fraction f of the range R to its h."""
    bws = range_bandwidths(ref, fractions)
    out = over_sets(lambda a, b: kernel_stats(a, b, {f"{f:g}R": h for f, h in bws.items()}), x, ref, sets)
    if dataset is not None and toy_task_metrics(dataset, x[:2]):
        out.update(over_sets(lambda a: toy_task_metrics(dataset, a), x, None, sets))
    out["bandwidths"] = bws
    return out
