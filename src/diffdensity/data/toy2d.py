"""Two-dimensional toy distributions (after FFJORD's toy set), rescaled to roughly unit scale.

All sampling uses the given ``torch.Generator`` only, so a seeded generator gives identical points everywhere.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["TOY2D", "sample_toy2d"]


def _rand(n, generator, *shape):
    return torch.rand(n, *shape, generator=generator, dtype=torch.float64)


def _randn(n, generator, *shape):
    return torch.randn(n, *shape, generator=generator, dtype=torch.float64)


def _eight_gaussians(n, g):
    """8 isotropic Gaussians (std 0.15) centred on the circle of radius √2 (per-coordinate variance ≈ 1)."""
    k = torch.randint(0, 8, (n,), generator=g)
    ang = k.double() * (math.pi / 4)
    centres = math.sqrt(2.0) * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return centres + 0.15 * _randn(n, g, 2)


def _checkerboard(n, g):
    """Uniform on the 8 dark squares of a 4×4 checkerboard covering [-2, 2]²."""
    x1 = _rand(n, g) * 4 - 2
    x2 = _rand(n, g) - 2 * torch.randint(0, 2, (n,), generator=g).double()
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1)


def _moons(n, g):
    """sklearn's two moons (noise 0.05), centred and scaled by 1.2."""
    t = _rand(n, g) * math.pi
    upper = torch.rand(n, generator=g) < 0.5
    outer = torch.stack([torch.cos(t), torch.sin(t)], 1)
    inner = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1)
    x = torch.where(upper[:, None], outer, inner) + 0.05 * _randn(n, g, 2)
    return (x - torch.tensor([0.5, 0.25], dtype=x.dtype)) * 1.2


def _swissroll(n, g):
    """2-D swiss roll t(cos t, sin t), t ∈ [1.5π, 4.5π], divided by 7, plus noise of std 0.1."""
    t = 1.5 * math.pi * (1 + 2 * _rand(n, g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 7.0
    return x + 0.1 * _randn(n, g, 2)


def _pinwheel(n, g):
    """FFJORD's pinwheel: 5 arms (radial std 0.3, tangential std 0.1, rate 0.25), scaled by 1.2."""
    k = torch.randint(0, 5, (n,), generator=g)
    feats = _randn(n, g, 2) * torch.tensor([0.3, 0.1], dtype=torch.float64)
    feats[:, 0] += 1.0
    ang = k.double() * (2 * math.pi / 5) + 0.25 * torch.exp(feats[:, 0])
    c, s = torch.cos(ang), torch.sin(ang)
    x = torch.stack([feats[:, 0] * c - feats[:, 1] * s, feats[:, 0] * s + feats[:, 1] * c], 1)
    return 1.2 * x


TOY2D = {
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "moons": _moons,
    "swissroll": _swissroll,
    "pinwheel": _pinwheel,
}


def sample_toy2d(name: str, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """n points (n, 2) of the named toy distribution (one of :data:`TOY2D`), in the default float dtype."""
    if name not in TOY2D:
        raise ValueError(f"unknown toy distribution {name!r}; valid names: {', '.join(TOY2D)}.")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}.")
    x = TOY2D[name](int(n), generator)
    return x.to(dtype or torch.get_default_dtype())
