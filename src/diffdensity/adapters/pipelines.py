"""Latent text-to-image pipelines (Stable-Diffusion- and SD3-class) as models of their latents.

:class:`PipelineModel` is the pipeline's denoising network (UNet or transformer) + scheduler as a model on the
*latent* space z (shape ``latent_shape``), conditioned on the prompt embeddings the pipeline's own encoders give
(``pipe.encode_prompt``). Every density it reports is a density of latents: log p(z) in nats under the model's
flow (the guided PF-ODE when ``guidance_scale`` is set). An image x enters only through the VAE, z = E(x)
(:meth:`PipelineModel.encode`, the posterior mode, scaled); ``log_prob_images(x)`` is log p(E(x)), not a density of
images (the decoder has no tractable Jacobian, and images of one latent differ by the VAE's reconstruction error).

**guidance_scale.** Here it means what it means in diffusers: ε̂ = ε_u + guidance_scale·(ε_c − ε_u).
The library's own classifier-free-guidance weight w (s_w = (1 + w) s_c − w s_u, :class:`~diffdensity.Guided`) is
w = guidance_scale − 1 (:func:`library_w`, the one place the two meet). diffusers' pipelines skip guidance for
guidance_scale ≤ 1; here the formula is applied for every value (1: the conditional model, 0: the unconditional).
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch
from torch import Tensor

from .diffusers import DiffusersModel, _require_diffusers

__all__ = ["PipelineModel", "library_w", "load_pipeline", "is_hub_id", "guided_latents", "from_pipeline",
           "write_images", "image_log_probs"]

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def library_w(guidance_scale):
    """diffusers' ``guidance_scale`` → the library's w: ε_u + g(ε_c − ε_u) = (1 + w) ε_c − w ε_u with w = g − 1."""
    return None if guidance_scale is None else float(guidance_scale) - 1.0


def is_hub_id(spec) -> bool:
    """A string that is no local path and reads as "org/name": a Hugging Face hub id."""
    return isinstance(spec, str) and not Path(spec).expanduser().exists() and bool(_HUB_ID.match(spec))


def load_pipeline(spec, *, local_files_only=None, revision=None, torch_dtype=None, variant=None, cache_dir=None):
    """A pipeline from a local folder or a hub id through ``DiffusionPipeline.from_pretrained`` (the hub cache,
    ``HF_HUB_CACHE``/``HF_HUB_OFFLINE`` apply; options passed through); a clear error names a missing id."""
    diffusers = _require_diffusers()
    dtype_key = "dtype" if hasattr(getattr(diffusers.utils, "deprecation_utils", None), "_resolve_dtype") else \
        "torch_dtype"  # diffusers ≥ 0.36 renamed it
    kw = {k: v for k, v in {"local_files_only": local_files_only, "revision": revision, dtype_key: torch_dtype,
                            "variant": variant, "cache_dir": cache_dir}.items() if v is not None}
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(str(spec), **kw)
    except (OSError, ValueError) as e:  # huggingface_hub's not-found and offline errors are OSErrors
        where = "folder" if Path(str(spec)).expanduser().exists() else "hub id"
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot load the diffusers pipeline {where} {str(spec)!r} (local_files_only="
                         f"{local_files_only}, revision={revision}): {why.rstrip('.')}."
                         " Check the id, download it first (hf download ID) or allow downloads "
                         "(local_files_only=False, HF_HUB_OFFLINE unset).") from None
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return pipe


def _embed(pipe, prompt, negative_prompt, device):
    """(condition, uncondition) from ``pipe.encode_prompt``: embeddings, or a dict with SD3's pooled projections."""
    params = inspect.signature(pipe.encode_prompt).parameters
    kw = dict(prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=True,
              negative_prompt=negative_prompt)
    kw.update({k: None for k in ("prompt_2", "prompt_3") if k in params})
    with torch.no_grad():
        out = pipe.encode_prompt(**kw)
    if len(out) == 4:  # SD3: (embeds, negative embeds, pooled, negative pooled)
        return ({"encoder_hidden_states": out[0], "pooled_projections": out[2]},
                {"encoder_hidden_states": out[1], "pooled_projections": out[3]})
    if len(out) == 2:
        return out[0], out[1]
    raise ValueError(f"{type(pipe).__name__}.encode_prompt returned {len(out)} values; supported pipelines are the "
                     "Stable-Diffusion (2) and SD3 (4) classes.")


def _as_float_images(images: Tensor) -> Tensor:
    """Images (B, C, H, W) as floats in [0, 1]: uint8 divided by 255, floats checked."""
    if images.ndim != 4:
        raise ValueError(f"images must be (batch, channels, height, width), got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point() or images.min() < 0 or images.max() > 1:
        raise ValueError("images must be uint8 or floats in [0, 1].")
    return images.float()


class PipelineModel(DiffusersModel):
    """A latent text-to-image pipeline as a model of its latents (module docstring: which density, guidance_scale)."""

    def __init__(self, pipe, prompt, negative_prompt=None, guidance_scale=None, **kw):
        net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        if net is None or getattr(pipe, "scheduler", None) is None:
            raise ValueError(f"{type(pipe).__name__} has no unet/transformer and scheduler: not a diffusion pipeline.")
        if not hasattr(pipe, "encode_prompt"):
            raise ValueError(f"{type(pipe).__name__} takes no prompt; load its network without prompt=.")
        if not isinstance(prompt, (str, list)):
            raise ValueError("this is a text-conditional pipeline: pass prompt= a string or a list of strings, one per "
                             "sample (\"\" for its unconditional model); --prompt on the command line.")
        device = next(net.parameters()).device
        cond, uncond = _embed(pipe, prompt, negative_prompt, device)
        super().__init__(net, pipe.scheduler, condition=cond, uncondition=uncond,
                         guidance_scale=library_w(guidance_scale), **kw)
        self.vae = getattr(pipe, "vae", None)
        self.pipeline = pipe  # the diffusers pipeline (not a module: its parts are registered above)
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.diffusers_guidance_scale = guidance_scale
        self.latent_shape = (int(net.config.in_channels), int(net.config.sample_size), int(net.config.sample_size))
        f = 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1
        self.image_shape = (3, f * self.latent_shape[1], f * self.latent_shape[2]) if self.vae is not None else None

    def _vae_factors(self):
        if self.vae is None:
            raise ValueError("this pipeline has no VAE: its model space is its data space.")
        cfg = self.vae.config
        return float(cfg.scaling_factor), float(getattr(cfg, "shift_factor", None) or 0.0)

    @torch.no_grad()
    def decode(self, latents: Tensor, output: str = "uint8") -> Tensor:
        """Images (B, C, H, W) from latents through the VAE: z / scaling + shift, decoded; uint8 or floats in [0, 1]."""
        scale, shift = self._vae_factors()
        p = next(self.vae.parameters())
        img = self.vae.decode((latents / scale + shift).to(p.device, p.dtype), return_dict=False)[0]
        img = (img.float() / 2 + 0.5).clamp(0, 1)
        return (img * 255).round().to(torch.uint8) if output == "uint8" else img

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Latents (float32) of images (uint8 or [0, 1] floats, (B, C, H, W)): (E(2x − 1) − shift)·scaling, E the
        mode of the VAE's posterior (deterministic)."""
        scale, shift = self._vae_factors()
        p = next(self.vae.parameters())
        x = 2 * _as_float_images(images).to(p.device, p.dtype) - 1
        z = self.vae.encode(x, return_dict=False)[0].mode()
        return ((z.float() - shift) * scale)

    def log_prob_images(self, images: Tensor, **options) -> Tensor:
        """log p(E(images)) in nats: the latents' log-density (dd.log_prob with ``options``), not an image density."""
        from ..likelihood import log_prob

        return log_prob(self, self.encode(images), **options)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prompt={self.prompt!r}, guidance_scale={self.diffusers_guidance_scale}"


def from_pipeline(pipe, prompt=None, negative_prompt=None, guidance_scale=None, *, load=None, device=None,
                  attention="classic", scheduler=None, **kw):
    """``pipe`` (an instance, folder or hub id; ``load``: options of :func:`load_pipeline`) on ``device`` as a model:
    a :class:`PipelineModel` for a text pipeline (prompts encoded there), else its network + scheduler (``scheduler``,
    an instance or folder, replaces the pipeline's)."""
    if isinstance(pipe, (str, Path)):
        pipe = load_pipeline(pipe, **(load or {}))
    if scheduler is not None:
        from .diffusers import _load_scheduler

        pipe.scheduler = _load_scheduler(Path(scheduler).expanduser()) if isinstance(scheduler, (str, Path)) \
            else scheduler
    if device is not None:
        pipe.to(device)
    if hasattr(pipe, "encode_prompt"):
        m = PipelineModel(pipe, prompt, negative_prompt, guidance_scale, **kw)
    else:
        if prompt is not None or negative_prompt is not None:
            raise ValueError(f"{type(pipe).__name__} takes no prompt (it has no encode_prompt).")
        net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        m = DiffusersModel(net, pipe.scheduler, **kw)
    m.net.eval().requires_grad_(False)
    from .core import classic_attention

    classic_attention(m.net, attention)
    return m


def guided_latents(model, n: int, q: float | None = None, generator=None, dtype=torch.float32, device=None) -> Tensor:
    """``n`` latents for ``pipe(latents=...)`` from the model's prior: at the median norm σ_T·χ_D⁻¹(½) (what density
    guidance starts from, q=None) or prior-guided to quantile q (higher q = higher log p; math.md §2.3)."""
    from ..guidance import median_rescale, prior_rescale

    cfg = model.net.config
    shape = getattr(model, "latent_shape", None) or (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    x = model.schedule.sample_prior((int(n), *shape), generator=generator, dtype=dtype, device=device)
    return median_rescale(model.schedule, x) if q is None else prior_rescale(model.schedule, x, q)


def write_images(model, latents: Tensor, logp, out, labels=None) -> dict:
    """OUT/images.npz (uint8 (B, H, W, C) as ``x``, ``logp``) and OUT/images.png (each titled with its latent log p
    in nats; highest first, or in order with ``labels``) of the decoded latents -> their paths; {} without a VAE."""
    import numpy as np

    if getattr(model, "vae", None) is None:
        return {}
    out = Path(out)
    img = model.decode(latents).permute(0, 2, 3, 1).cpu()
    lp = None if logp is None else logp.detach().cpu()
    np.savez(out / "images.npz", x=img.numpy(), **({} if lp is None else {"logp": lp.numpy()}))
    _image_grid(img, lp, out / "images.png", labels)
    return {"images": str(out / "images.npz"), "images_png": str(out / "images.png")}


def _image_grid(img: Tensor, lp, path, labels=None) -> None:
    """A grid (one row per label when labelled) of (B, H, W, C) uint8 images titled with label and log p."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = img.shape[0]
    order = torch.argsort(lp, descending=True) if lp is not None and labels is None else torch.arange(n)
    rows = len(dict.fromkeys(labels)) if labels else max(1, round(n ** 0.5))
    cols = -(-n // rows)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, order.tolist()):
        ax.imshow(img[k].numpy(), interpolation="nearest")
        title = ("" if labels is None else f"{labels[k]} ") + ("" if lp is None else f"{float(lp[k]):.1f}")
        ax.set_title(title, fontsize=7)
    fig.suptitle("decoded; log p of the latents (nats)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def image_log_probs(model, images: Tensor, batch_size: int = 64, **log_prob_kw) -> Tensor:
    """log p(E(x)) in nats of integer images (B, C, H, W) through the VAE encoder, in batches."""
    return torch.cat([model.log_prob_images(images[i:i + batch_size].to(torch.uint8), **log_prob_kw)
                      for i in range(0, images.shape[0], batch_size)])
