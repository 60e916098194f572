"""A BigGAN/ADM-style U-Net (Ho et al. 2020; Dhariwal & Nichol 2021) conditioned on λ = log SNR."""
from __future__ import annotations

import math
from typing import Iterable, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import batch_lam
from .embedding import LambdaEmbedding

__all__ = ["UNet", "ResBlock", "AttentionBlock", "unet_preset", "UNET_PRESETS"]


def _groups(ch: int, max_groups: int) -> int:
    """The largest divisor of ch that is <= max_groups (GroupNorm needs ch % groups == 0)."""
    return max(g for g in range(1, min(ch, max_groups) + 1) if ch % g == 0)


def _zero(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class ResBlock(nn.Module):
    """GroupNorm–SiLU–[resample]–Conv, λ scale/shift (or bias only) after the 2nd GroupNorm, SiLU–Dropout–zero Conv, + skip."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, up: bool = False,
                 down: bool = False, norm_groups: int = 32, scale_shift: bool = True):
        super().__init__()
        self.up, self.down, self.scale_shift = up, down, scale_shift
        self.norm1 = nn.GroupNorm(_groups(in_ch, norm_groups), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, (2 if scale_shift else 1) * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch, norm_groups), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    @staticmethod
    def _resample(h: Tensor, up: bool, size) -> Tensor:
        if up:
            return F.interpolate(h, size=size, mode="nearest") if size is not None else F.interpolate(h, scale_factor=2.0, mode="nearest")
        return F.avg_pool2d(h, 2, ceil_mode=True)  # odd sizes: the last partial window is averaged over what it holds

    def forward(self, x: Tensor, emb: Tensor, size=None) -> Tensor:
        """x (B, in_ch, H, W), emb (B, emb_dim) already passed through SiLU; ``size`` = target size when up=True."""
        h = F.silu(self.norm1(x))
        if self.up or self.down:
            h, x = self._resample(h, self.up, size), self._resample(x, self.up, size)
        h = self.conv1(h)
        e = self.emb(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over pixels with a residual zero-initialised output projection.

    ``num_heads`` heads of ``head_dim`` channels each; num_heads=None uses channels // head_dim heads.
    """

    def __init__(self, ch: int, head_dim: int = 16, num_heads: int | None = None, norm_groups: int = 32):
        super().__init__()
        if num_heads is None:
            if ch % head_dim:
                raise ValueError(f"attention at {ch} channels needs head_dim dividing {ch}, got head_dim={head_dim}.")
            num_heads = ch // head_dim
        self.num_heads, self.head_dim = num_heads, head_dim
        inner = num_heads * head_dim
        self.norm = nn.GroupNorm(_groups(ch, norm_groups), ch)
        self.qkv = nn.Conv2d(ch, 3 * inner, 1)
        self.proj = _zero(nn.Conv2d(inner, ch, 1))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.num_heads, self.head_dim, H * W).unbind(1)
        # plain einsum attention (not SDPA) so float64, double backward, forward-mode AD and vmap all work
        w = torch.einsum("bhdi,bhdj->bhij", q, k) * (self.head_dim ** -0.5)
        o = torch.einsum("bhij,bhdj->bhdi", w.softmax(dim=-1), v)
        return x + self.proj(o.reshape(B, self.num_heads * self.head_dim, H, W))


class UNet(nn.Module):
    """net(x, λ) -> ε̂-shaped output for images (B, in_channels, H, W); H, W need not be powers of two.

    ``ch_mult[i]·ch`` channels at level i, ``num_res_blocks`` ResBlocks per level (one more on the way up),
    down/up-sampling inside ResBlocks, attention wherever the nominal resolution (``resolution`` halved, rounded up,
    per level) is in ``attn_resolutions``, and attention in the middle. ``scale_shift=False`` adds λ as a
    per-channel bias (DDPM/DDPM++) instead of a scale and shift (ADM).
    """

    def __init__(
        self,
        in_channels: int = 3,
        resolution: int = 32,
        ch: int = 128,
        ch_mult=(1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions=(16,),
        dropout: float = 0.1,
        head_dim: int = 16,
        num_heads: int | None = None,
        out_channels: int | None = None,
        emb_dim: int | None = None,
        norm_groups: int = 32,
        scale_shift: bool = True,
    ):
        super().__init__()
        self.config = _unet_config(in_channels, resolution, ch, ch_mult, num_res_blocks, attn_resolutions, dropout,
                                   head_dim, num_heads, out_channels, emb_dim, norm_groups, scale_shift)
        ch_mult, attn_resolutions = self.config["ch_mult"], self.config["attn_resolutions"]
        out_channels, emb_dim = self.config["out_channels"], self.config["emb_dim"]
        self.in_channels = int(in_channels)
        rb = lambda i, o, **kw: ResBlock(i, o, emb_dim, dropout, norm_groups=norm_groups, scale_shift=scale_shift, **kw)  # noqa: E731
        attn = lambda c: AttentionBlock(c, head_dim, num_heads, norm_groups)  # noqa: E731

        fourier = max(2, ch - ch % 2)  # even number of Fourier features
        self.embed = nn.Sequential(LambdaEmbedding(fourier), nn.Linear(fourier, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur, res = [ch], ch, int(resolution)
        for level, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [rb(cur, ch * m)]
                cur = ch * m
                if res in attn_resolutions:
                    layers.append(attn(cur))
                self.down.append(nn.ModuleList(layers))
                skips.append(cur)
            if level != len(ch_mult) - 1:
                self.down.append(nn.ModuleList([rb(cur, cur, down=True)]))
                skips.append(cur)
                res = math.ceil(res / 2)
        self.mid = nn.ModuleList([rb(cur, cur), attn(cur), rb(cur, cur)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks + 1):
                layers = [rb(cur + skips.pop(), ch * m)]
                cur = ch * m
                if res in attn_resolutions:
                    layers.append(attn(cur))
                self.up.append(nn.ModuleList(layers))
            if level != 0:
                self.up.append(nn.ModuleList([rb(cur, cur, up=True)]))
                res = res * 2  # nominal only; the real size comes from the skip tensor
        self.out = nn.Sequential(nn.GroupNorm(_groups(cur, norm_groups), cur), nn.SiLU(),
                                 _zero(nn.Conv2d(cur, out_channels, 3, padding=1)))

    @staticmethod
    def _run(layers: nn.ModuleList, h: Tensor, emb: Tensor, size=None) -> Tensor:
        for layer in layers:
            h = layer(h, emb, size) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: Tensor, lam) -> Tensor:
        """x (B, in_channels, H, W), λ scalar or (B,) -> (B, out_channels, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet(in_channels={self.in_channels}) got x of shape {tuple(x.shape)}; need (batch, {self.in_channels}, H, W).")
        emb = F.silu(self.embed(batch_lam(lam, x)))
        h = self.conv_in(x)
        hs = [h]
        for layers in cast(Iterable[nn.ModuleList], self.down):
            h = self._run(layers, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for layers in cast(Iterable[nn.ModuleList], self.up):
            if layers[0].up:
                h = self._run(layers, h, emb, size=hs[-1].shape[-2:])
            else:
                h = self._run(layers, torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


UNET_PRESETS = {
    # the CIFAR-10 network of the first paper: hidden 128, (1,2,2,2), 4 res blocks, attention at 16×16, 8 heads × 16 ch
    "cifar10": dict(in_channels=3, resolution=32, ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=4,
                    attn_resolutions=(16,), dropout=0.1, head_dim=16, num_heads=8, scale_shift=False),
    # small CPU-trainable nets
    "digits": dict(in_channels=1, resolution=8, ch=32, ch_mult=(1, 2), num_res_blocks=2,
                   attn_resolutions=(4,), dropout=0.1, head_dim=16, norm_groups=8),
    "patches16": dict(in_channels=3, resolution=16, ch=32, ch_mult=(1, 2, 2), num_res_blocks=2,
                      attn_resolutions=(8,), dropout=0.1, head_dim=16, norm_groups=8),
}


def unet_preset(name: str, **overrides) -> UNet:
    """A UNet from :data:`UNET_PRESETS` ("cifar10", "digits", "patches16"), any argument overridable."""
    if name not in UNET_PRESETS:
        raise ValueError(f"unknown UNet preset {name!r}; valid presets: {', '.join(UNET_PRESETS)}.")
    return UNet(**{**UNET_PRESETS[name], **overrides})


def _unet_config(in_channels, resolution, ch, ch_mult, num_res_blocks, attn_resolutions, dropout, head_dim, num_heads,
                 out_channels, emb_dim, norm_groups, scale_shift) -> dict:
    """The UNet's arguments checked and completed (defaults filled in) as its JSON config."""
    ch_mult, attn_resolutions = [int(m) for m in ch_mult], [int(r) for r in attn_resolutions]
    for name, v in (("in_channels", in_channels), ("resolution", resolution), ("ch", ch),
                    ("num_res_blocks", num_res_blocks), ("head_dim", head_dim), ("norm_groups", norm_groups)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"UNet: {name} must be a positive integer, got {v!r}.")
    if not ch_mult or min(ch_mult) < 1:
        raise ValueError(f"UNet: ch_mult must be a non-empty sequence of positive integers, got {ch_mult}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"UNet: dropout must be in [0, 1), got {dropout}.")
    out_channels = in_channels if out_channels is None else int(out_channels)
    emb_dim = 4 * ch if emb_dim is None else int(emb_dim)
    return {
        "type": "UNet", "in_channels": int(in_channels), "resolution": int(resolution), "ch": int(ch),
        "ch_mult": ch_mult, "num_res_blocks": int(num_res_blocks), "attn_resolutions": attn_resolutions,
        "dropout": float(dropout), "head_dim": int(head_dim), "num_heads": num_heads,
        "out_channels": out_channels, "emb_dim": emb_dim, "norm_groups": int(norm_groups),
        "scale_shift": bool(scale_shift),
    }
