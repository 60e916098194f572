"""A residual MLP for low-dimensional data."""
from __future__ import annotations

import math

from torch import Tensor, nn

from .._checks import batch_lam
from .embedding import LambdaEmbedding

__all__ = ["MLP"]


class MLP(nn.Module):
    """net(x, λ) for x of shape (B, *shape) with prod(shape) == dim: ``depth`` residual SiLU layers, λ added per layer."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 3, emb_dim: int = 64):
        super().__init__()
        for name, v in (("dim", dim), ("hidden", hidden), ("depth", depth), ("emb_dim", emb_dim)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"MLP: {name} must be a positive integer, got {v!r}.")
        self.config = {"type": "MLP", "dim": int(dim), "hidden": int(hidden), "depth": int(depth), "emb_dim": int(emb_dim)}
        self.dim = int(dim)
        self.embed = nn.Sequential(
            LambdaEmbedding(emb_dim), nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.inp = nn.Linear(dim, hidden)
        self.emb_proj = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.layers = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, lam) -> Tensor:
        """(B, *shape), λ scalar or (B,) -> (B, *shape)."""
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(f"MLP(dim={self.dim}) got x of shape {tuple(x.shape)}; need (batch, ...) with {self.dim} values per sample.")
        lam = batch_lam(lam, x)
        e = self.embed(lam)
        h = self.inp(x.reshape(x.shape[0], -1))
        for proj, layer in zip(self.emb_proj, self.layers):
            h = h + layer(h + proj(e))
        return self.out(h).reshape(x.shape)
