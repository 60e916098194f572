"""Tiny randomly initialised diffusers pipelines (no download): for tests, examples and smoke runs only.

``tiny_pipeline("sd-eps" | "sd-v" | "sd3")`` builds a Stable-Diffusion-style pipeline (CLIP text encoder,
cross-attention UNet, VAE, DDIM scheduler with ε- or v-prediction) or an SD3-style one (two CLIP encoders,
``SD3Transformer2DModel``, flow-matching scheduler). Images are 16 × 16, latents 4 × 8 × 8. Needs diffusers and
transformers.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["tiny_pipeline", "KINDS"]

KINDS = ("sd-eps", "sd-v", "sd3")
_WORDS = "abcdefghijklmnopqrstuvwxyz"


def _tokenizer(folder: Path, max_length: int = 32):
    """A CLIP tokenizer over single letters (no merges) written to ``folder``."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["<|startoftext|>", "<|endoftext|>", "!"] + list(_WORDS) + [c + "</w>" for c in _WORDS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def _text_config(projection: bool):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=2 + 1 + 2 * len(_WORDS), hidden_size=16, intermediate_size=32,
                          num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                          projection_dim=16 if projection else 512, bos_token_id=0, eos_token_id=1, pad_token_id=1)


def _vae(**kw):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=4, norm_num_groups=4, sample_size=16, **kw)


def _sd(tmp: Path, prediction_type: str):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=4, attention_head_dim=2)
    sch = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                        set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    return StableDiffusionPipeline(vae=_vae(), text_encoder=CLIPTextModel(_text_config(False)),
                                   tokenizer=_tokenizer(tmp / "tok"), unet=unet, scheduler=sch, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def _sd3(tmp: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    net = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                caption_projection_dim=16, pooled_projection_dim=32, pos_embed_max_size=16)
    tok = _tokenizer(tmp / "tok")
    return StableDiffusion3Pipeline(
        transformer=net, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=_vae(scaling_factor=1.5, shift_factor=0.1),
        text_encoder=CLIPTextModelWithProjection(_text_config(True)), tokenizer=tok,
        text_encoder_2=CLIPTextModelWithProjection(_text_config(True)), tokenizer_2=tok,
        text_encoder_3=None, tokenizer_3=None)


def tiny_pipeline(kind: str = "sd-eps", folder=None, seed: int = 0):
    """A tiny random pipeline of ``kind`` (:data:`KINDS`); saved to ``folder`` (save_pretrained) when given."""
    import tempfile

    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; choose one of {KINDS}.")
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        pipe = _sd3(Path(tmp)) if kind == "sd3" else _sd(Path(tmp), "v_prediction" if kind == "sd-v" else "epsilon")
    pipe.set_progress_bar_config(disable=True)
    if folder is not None:
        pipe.save_pretrained(str(folder))
    return pipe
