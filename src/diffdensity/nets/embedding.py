"""Fourier embedding of λ = log SNR, shared by every network."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["LambdaEmbedding"]


class LambdaEmbedding(nn.Module):
    """[sin(f_k λ), cos(f_k λ)] with ``dim/2`` frequencies f_k spaced geometrically in [min_freq, max_freq].

    The defaults resolve λ over roughly [-20, 20]: the slowest wave turns by ~π/2 across that range.
    """

    freqs: Tensor  # a buffer

    def __init__(self, dim: int, min_freq: float = 1 / 32, max_freq: float = 16.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"emb dim must be an even integer >= 2, got {dim}.")
        freqs = torch.exp(torch.linspace(math.log(min_freq), math.log(max_freq), dim // 2, dtype=torch.float64))
        self.register_buffer("freqs", freqs.float(), persistent=False)
        self.dim = dim

    def forward(self, lam: Tensor) -> Tensor:
        """(batch,) -> (batch, dim), in lam's dtype."""
        arg = lam[:, None] * self.freqs.to(lam.dtype)[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
