"""Networks ``net(x, lam) -> tensor shaped like x`` with λ = log SNR, and :func:`build_net` to rebuild them from ``.config``."""
from __future__ import annotations

import copy

from torch import nn

from .embedding import LambdaEmbedding
from .mlp import MLP
from .unet import UNET_PRESETS, AttentionBlock, ResBlock, UNet, unet_preset

__all__ = ["MLP", "UNet", "unet_preset", "UNET_PRESETS", "build_net", "NETS", "LambdaEmbedding", "ResBlock", "AttentionBlock"]

NETS = {"MLP": MLP, "UNet": UNet}


def build_net(config: dict) -> nn.Module:
    """Rebuild a network from its ``.config`` (same class, parameter names and shapes; weights freshly initialised)."""
    if not isinstance(config, dict) or "type" not in config:
        raise ValueError(f"config must be a net's .config dict with a 'type' key, got {config!r}.")
    kw = copy.deepcopy(config)
    kind = kw.pop("type")
    if kind not in NETS:
        raise ValueError(f"unknown net type {kind!r} in config; valid types: {', '.join(NETS)}.")
    try:
        return NETS[kind](**kw)
    except TypeError as e:
        raise ValueError(f"config for {kind} has an unexpected key ({e}); use the .config of a {kind}.") from e
