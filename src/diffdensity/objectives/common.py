"""What the objectives share: the λ-weightings w(λ), stratified uniforms, and the schedule and network a training
config describes (one network rule for the score networks and the generator networks)."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["WEIGHTINGS", "get_weighting", "elbo_weight", "quality_weight", "low_discrepancy", "schedule_of",
           "net_config", "net_config_for"]


def elbo_weight(lam: Tensor) -> Tensor:
    """w(λ) = 1: the ELBO (maximum likelihood)."""
    return torch.ones_like(lam)


def quality_weight(lam: Tensor) -> Tensor:
    """w(λ) = sigmoid(2 − λ): the sample-quality weighting (Kingma & Gao 2023; reference ``weighted_model``)."""
    return torch.sigmoid(2.0 - lam)


WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {"elbo": elbo_weight, "quality": quality_weight}


def get_weighting(weighting) -> Callable[[Tensor], Tensor]:
    """``"elbo"``, ``"quality"`` or a callable λ -> w(λ) (returned unchanged)."""
    if callable(weighting):
        return weighting
    try:
        return WEIGHTINGS[weighting]
    except (KeyError, TypeError):
        raise ValueError(
            f"weighting={weighting!r}; choose one of {sorted(WEIGHTINGS)} or pass a callable lam -> w(lam)."
        ) from None


def low_discrepancy(n: int, generator: torch.Generator | None = None, dtype=torch.float64, device=None) -> Tensor:
    """n stratified uniforms on [0, 1): one u ~ U[0, 1), then (u + i/n) mod 1 for i = 0..n-1 (Kingma et al. 2021)."""
    if generator is not None and device is None:
        device = generator.device
    u = torch.rand((), generator=generator, dtype=torch.float64, device=device)
    i = torch.arange(n, dtype=torch.float64, device=device)
    return torch.remainder(u + i / n, 1.0).to(dtype)


def schedule_of(cfg):
    """The noise schedule a training config names (``schedule``, ``lambda_min``, ``lambda_max``; None: its default)."""
    from ..schedules import SCHEDULES

    kw = {k: getattr(cfg, k) for k in ("lambda_min", "lambda_max") if getattr(cfg, k) is not None}
    return SCHEDULES[cfg.schedule](**kw)


def net_config(cfg, ds, mlp, unet) -> dict:
    """The network config of a training config for a dataset: ``mlp(dim, hidden=, depth=, ...)`` for flat data,
    ``unet(preset, in_channels=, resolution=, ...)`` for images (C, H, W); both return a module with ``.config``.

    ``net="auto"``: a UNet for image data — the preset named like the dataset if there is one, else "patches16"
    (H < 32) or "cifar10" — and an MLP otherwise. ``net_kwargs`` override (a UNet's channels and resolution
    follow the data unless set there).
    """
    from ..nets import UNET_PRESETS

    image = len(ds.model_shape) == 3
    kind = ("unet" if image else "mlp") if cfg.net == "auto" else cfg.net
    if kind == "mlp":
        kw = {"hidden": cfg.hidden or 256, "depth": cfg.depth or 3, **cfg.net_kwargs}
        return mlp(math.prod(ds.model_shape), **kw).config
    if not image:
        raise ValueError(f"net='unet' needs image data (C, H, W); {ds.name} has model shape {ds.model_shape}.")
    default = ds.name if ds.name in UNET_PRESETS else ("patches16" if ds.model_shape[1] < 32 else "cifar10")
    kw = {"in_channels": ds.model_shape[0], "resolution": ds.model_shape[1], **cfg.net_kwargs}
    return unet(cfg.preset or default, **kw).config


def net_config_for(objective, dataset) -> dict:
    """An objective's network config for ``dataset`` (its ``net_config``: a dict or dataset -> dict); records the
    data set's transform and levels on the objective (for its model and evaluation hooks)."""
    objective.transform, objective.levels = dataset.transform, dataset.levels
    config = objective.net_config(dataset) if callable(objective.net_config) else objective.net_config
    if config is None:
        raise ValueError(f"{type(objective).__name__} needs net_config (a network config or dataset -> config).")
    return config
