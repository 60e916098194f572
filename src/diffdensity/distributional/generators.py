"""Generator models x̂₀ = G(x_λ, λ, ξ), ξ ~ N(0, I): samplers of the posterior p(x₀ | x_λ) (math.md §3.3).

A generator is its own model kind: it has ``.schedule`` and ``sample_x0(x, lam, generator)``, and no score.
Three implementations:

* :class:`GeneratorModel` — a trained network ``net(x, λ, ξ)``; ``sample_population(x, λ, m)`` draws m samples
  per row as ONE batched forward pass (rows repeated m times), which is what training needs.
* :class:`OracleGenerator` — the exact posterior sampler of the Gaussian-mixture oracle (for tests).
* :class:`MeanGenerator` — any score model's Tweedie mean x̂₀ = (x + σ² s)/α: "sampling" the posterior by its
  mean, which turns the bridge sampler into DDIM/DDPM for ordinary diffusion models.

Networks. ξ has the data's shape and enters by **concatenation** with x_λ: as extra input features of the MLP,
as extra input channels of the UNet (the paper does not say how ξ enters; concatenation is the simplest choice
that leaves the backbone unchanged, and the follow-up iDDM paper found it competitive).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .._checks import batch_lam, bcast
from .._rng import draw
from ..nets.embedding import LambdaEmbedding
from ..nets.unet import UNet, unet_preset
from ..schedules import Schedule

__all__ = ["Generator", "GeneratorModel", "GeneratorMLP", "GeneratorUNet", "OracleGenerator", "MeanGenerator",
           "build_generator_net", "GENERATOR_NETS"]


@runtime_checkable
class Generator(Protocol):
    """The generator protocol: a schedule and one draw x̂₀ ~ p(x₀ | x_λ = x) per row of x."""

    schedule: Schedule

    def sample_x0(self, x: Tensor, lam, generator: torch.Generator | None = None) -> Tensor: ...


# ------------------------------------------------------------------------------------------------ networks
class GeneratorMLP(nn.Module):
    """net(x, λ, ξ) -> x̂₀ for flat data: a residual SiLU MLP on [x, ξ] with λ added per block; ``fourier`` > 0 adds
    sin/cos of ``fourier`` random projections x·B, B ~ N(0, fourier_scale²) (seed 0), to the input."""

    fourier_B: Tensor  # a buffer when ``fourier`` > 0

    def __init__(self, dim: int, noise_dim: int | None = None, hidden: int = 256, depth: int = 3, emb_dim: int = 64,
                 precondition: bool = False, sigma_data: float = 1.0, fourier: int = 0, fourier_scale: float = 6.0):
        super().__init__()
        noise_dim = dim if noise_dim is None else noise_dim
        for name, v in (("dim", dim), ("noise_dim", noise_dim), ("hidden", hidden), ("depth", depth),
                        ("emb_dim", emb_dim)):
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"GeneratorMLP: {name} must be a positive integer, got {v!r}.")
        self.config = {"type": "GeneratorMLP", "dim": int(dim), "noise_dim": int(noise_dim), "hidden": int(hidden),
                       "depth": int(depth), "emb_dim": int(emb_dim)}
        if precondition:  # read by GeneratorModel, which knows the schedule (see GeneratorModel.apply_net)
            self.config.update(precondition=True, sigma_data=float(sigma_data))
        self.dim, self.noise_dim, self.fourier = int(dim), int(noise_dim), int(fourier)
        if self.fourier:  # random Fourier features of x (Tancik et al. 2020): sharp functions of x despite spectral bias
            self.config.update(fourier=self.fourier, fourier_scale=float(fourier_scale))
            g = torch.Generator().manual_seed(0)
            self.register_buffer("fourier_B", torch.randn(self.dim, self.fourier, generator=g) * float(fourier_scale))
        self.noise_shape = (self.noise_dim,)
        self.embed = nn.Sequential(LambdaEmbedding(emb_dim), nn.Linear(emb_dim, hidden), nn.SiLU(),
                                   nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim + 2 * self.fourier + noise_dim, hidden)
        self.emb_proj = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth))
        self.layers = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                                  nn.Linear(hidden, hidden)) for _ in range(depth))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, lam, xi: Tensor) -> Tensor:
        """x (B, *shape) with prod(shape) = dim, λ scalar or (B,), ξ (B, noise_dim) -> x̂₀ (B, *shape)."""
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(f"GeneratorMLP(dim={self.dim}) got x of shape {tuple(x.shape)}.")
        e = self.embed(batch_lam(lam, x))
        feats = [x.reshape(x.shape[0], -1)]
        if self.fourier:
            z = feats[0] @ self.fourier_B.to(x.dtype)
            feats += [torch.sin(z), torch.cos(z)]
        h = self.inp(torch.cat([*feats, xi.reshape(x.shape[0], -1)], 1))
        for proj, layer in zip(self.emb_proj, self.layers):
            h = h + layer(h + proj(e))
        return self.out(h).reshape(x.shape)


class GeneratorUNet(nn.Module):
    """net(x, λ, ξ) -> x̂₀ for images: a :class:`~diffdensity.nets.UNet` whose input is [x, ξ] along channels.

    ``preset`` (a UNet preset name) or UNet keyword arguments; ``noise_channels`` (default: the image's channels).
    """

    def __init__(self, in_channels: int = 1, noise_channels: int | None = None, preset: str | None = None, **unet):
        super().__init__()
        noise_channels = int(in_channels if noise_channels is None else noise_channels)
        kw = {**unet, "in_channels": int(in_channels) + noise_channels, "out_channels": int(in_channels)}
        self.unet = unet_preset(preset, **kw) if preset else UNet(**kw)
        ucfg = {k: v for k, v in self.unet.config.items() if k not in ("type", "in_channels", "out_channels")}
        self.config = {"type": "GeneratorUNet", "in_channels": int(in_channels), "noise_channels": noise_channels,
                       **ucfg}
        self.in_channels, self.noise_channels = int(in_channels), noise_channels
        res = self.unet.config["resolution"]
        self.noise_shape = (noise_channels, res, res)

    def forward(self, x: Tensor, lam, xi: Tensor) -> Tensor:
        """x (B, C, H, W), λ scalar or (B,), ξ (B, noise_channels, H, W) -> x̂₀ (B, C, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"GeneratorUNet(in_channels={self.in_channels}) got x of shape {tuple(x.shape)}.")
        return self.unet(torch.cat([x, xi.reshape(x.shape[0], self.noise_channels, *x.shape[2:])], 1), lam)


GENERATOR_NETS = {"GeneratorMLP": GeneratorMLP, "GeneratorUNet": GeneratorUNet}


def build_generator_net(config: dict) -> nn.Module:
    """Rebuild a generator network from its ``.config`` (weights freshly initialised)."""
    if not isinstance(config, dict) or config.get("type") not in GENERATOR_NETS:
        raise ValueError(f"not a generator network config: {config!r}; types: {', '.join(GENERATOR_NETS)}.")
    kw = copy.deepcopy(config)
    try:
        return GENERATOR_NETS[kw.pop("type")](**kw)
    except TypeError as e:
        raise ValueError(f"generator network config has an unexpected key ({e}).") from None


# ------------------------------------------------------------------------------------------------ models
def _randn(shape, generator, like: Tensor) -> Tensor:
    return draw("normal", shape, generator, dtype=like.dtype, device=like.device)


class GeneratorModel(nn.Module):
    """A generator network as a model: x̂₀ = net(x_λ, λ, ξ), ξ ~ N(0, I) of the net's ``noise_shape``."""

    model_kind = "generator"
    net: Any  # an nn.Module with a .noise_shape tuple (checked in __init__)

    def __init__(self, net: nn.Module, schedule: Schedule, transform=None):
        super().__init__()
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a diffdensity Schedule, got {schedule!r}.")
        if not hasattr(net, "noise_shape"):
            raise ValueError(f"{type(net).__name__} has no noise_shape; use GeneratorMLP or GeneratorUNet "
                             "(or give your net(x, lam, xi) a .noise_shape tuple).")
        self.net, self.schedule, self.transform = net, schedule, transform

    def apply_net(self, x: Tensor, lam_b: Tensor, xi: Tensor) -> Tensor:
        """net(x, λ, ξ); with ``precondition`` in the net's config EDM's x̂₀ = c_skip x̃ + c_out F(c_in x̃, λ, ξ) on
        x̃ = x/α, σ̃² = e^{−λ} (Karras et al. 2022, Table 1), so F learns a residual that shrinks with the noise."""
        cfg = getattr(self.net, "config", {})
        if not cfg.get("precondition"):
            return self.net(x, lam_b, xi)
        sd2 = float(cfg.get("sigma_data", 1.0)) ** 2
        a = bcast(self.schedule.alpha_sigma(lam_b)[0].to(x.dtype), x)
        s2 = bcast(torch.exp(-lam_b).to(x.dtype), x)
        xt = x / a
        c_out = torch.sqrt(s2 * sd2 / (s2 + sd2))
        return sd2 / (s2 + sd2) * xt + c_out * self.net(xt * torch.rsqrt(s2 + sd2), lam_b, xi)

    def sample_x0(self, x: Tensor, lam, generator: torch.Generator | None = None) -> Tensor:
        """One x̂₀ per row of x (B, *shape) at λ (scalar or (B,))."""
        xi = _randn((x.shape[0], *self.net.noise_shape), generator, x)
        return self.apply_net(x, batch_lam(lam, x), xi)

    def sample_population(self, x: Tensor, lam, m: int, generator: torch.Generator | None = None,
                          xi: Tensor | None = None) -> Tensor:
        """m draws per row as one batched forward -> (B, m, *shape); ``xi`` (B, m, *noise_shape) fixes ξ."""
        B = x.shape[0]
        lam_b = batch_lam(lam, x)
        if xi is None:
            xi = _randn((B, int(m), *self.net.noise_shape), generator, x)
        xr = x.repeat_interleave(int(m), dim=0)
        out = self.apply_net(xr, lam_b.repeat_interleave(int(m)), xi.reshape(B * int(m), *self.net.noise_shape))
        return out.reshape(B, int(m), *x.shape[1:])

    def forward(self, x: Tensor, lam, xi: Tensor) -> Tensor:
        return self.apply_net(x, batch_lam(lam, x), xi)


class OracleGenerator:
    """The exact posterior sampler of a :class:`~diffdensity.DiffusedMixture` as a generator (for tests)."""

    model_kind = "generator"

    def __init__(self, oracle):
        if not callable(getattr(oracle, "posterior", None)):
            raise ValueError(f"{type(oracle).__name__} has no posterior(x, lam); pass GaussianMixture(...).diffused(schedule).")
        self.oracle, self.schedule = oracle, oracle.schedule
        self.transform = None

    def sample_x0(self, x: Tensor, lam, generator: torch.Generator | None = None) -> Tensor:
        return self.oracle.posterior(x, lam).sample(generator)


class MeanGenerator:
    """A score model as a (degenerate) generator: x̂₀ = E[x₀ | x_λ] = (x + σ² s)/α (Tweedie, math.md §0.1)."""

    model_kind = "generator"

    def __init__(self, model):
        if not callable(getattr(model, "score", None)) or not hasattr(model, "schedule"):
            raise ValueError(f"{type(model).__name__} is not a score model (.schedule and .score(x, lam)).")
        self.model, self.schedule = model, model.schedule
        self.transform = getattr(model, "transform", None)

    def sample_x0(self, x: Tensor, lam, generator: torch.Generator | None = None) -> Tensor:
        lam_b = batch_lam(lam, x)
        s = self.schedule.coefficients(lam_b, x)[1]
        return self.schedule.denoise(x, -s * self.model.score(x, lam_b), lam_b)  # ε̂ = −σ s


def check_generator(model) -> None:
    """TypeError unless ``model`` follows the generator protocol."""
    if not callable(getattr(model, "sample_x0", None)) or not isinstance(getattr(model, "schedule", None), Schedule):
        hint = " (a score model: use dd.sample_ddim)" if callable(getattr(model, "score", None)) else ""
        raise TypeError(f"{type(model).__name__} is not a generator model: it needs .schedule and "
                        f".sample_x0(x, lam, generator){hint}.")
