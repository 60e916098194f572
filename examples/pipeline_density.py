"""Density tools on a text-to-image pipeline: images for a prompt at three detail levels (density guidance) and the
log p of each, then the same inside the pipeline's own call with the library's schedulers.

The density is that of the pipeline's *latents* under the guided flow (docs/guides/own-model.md): higher q, higher
log p of the latent, smoother images. Without a pipeline folder or hub id the script builds a tiny random
Stable-Diffusion-style pipeline (its images are noise; the numbers show the machinery, not a real model).

    python examples/pipeline_density.py --quick
    python examples/pipeline_density.py --pipeline stabilityai/stable-diffusion-2-1-base --device cuda --steps 50
"""

import argparse
import tempfile
import time

import torch

import diffdensity as dd
from diffdensity.adapters import DensityGuidanceScheduler, TrackedSDEScheduler, guided_latents


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default=None, help="a pipeline folder or hub id (default: a tiny random one)")
    ap.add_argument("--prompt", default="a lighthouse")
    ap.add_argument("--guidance-scale", type=float, default=3.0, help="as in diffusers")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="a small, fast run")
    args = ap.parse_args()
    steps = 8 if args.quick else args.steps
    folder = args.pipeline
    if folder is None:
        from diffdensity.adapters.tiny import tiny_pipeline

        folder = tempfile.mkdtemp()
        tiny_pipeline("sd-eps", folder=folder)
    t0 = time.time()
    # --8<-- [start:five-lines]
    model = dd.from_diffusers(folder, prompt=args.prompt, guidance_scale=args.guidance_scale, device=args.device)
    x_T = guided_latents(model, args.n, generator=torch.Generator().manual_seed(0), device=args.device)
    runs = {
        q: dd.sample_density_guided(model, x_T, q, steps, track_logp=True, divergence="hutchinson")
        for q in (0.3, 0.5, 0.7)
    }
    images = {q: model.decode(r.x) for q, r in runs.items()}  # uint8 (n, 3, H, W)
    # --8<-- [end:five-lines]
    for q, r in runs.items():
        print(
            f"q={q}: images {tuple(images[q].shape)}, log p of the latents (nats): "
            f"{[round(v, 1) for v in r.logp.tolist()]}"
        )
    print(f"({time.time() - t0:.1f}s)")

    # the same inside the pipeline's own __call__: density guidance, and SDE sampling with log p tracked
    pipe = model.pipeline  # the diffusers pipeline the model was made from
    pipe.scheduler = DensityGuidanceScheduler.from_config(pipe.scheduler.config, q=0.7)
    lat = pipe(
        args.prompt,
        num_inference_steps=steps,
        guidance_scale=args.guidance_scale,
        latents=x_T[:1].clone(),
        output_type="latent",
        height=images[0.7].shape[-1],
        width=images[0.7].shape[-1],
    ).images
    print(
        f"DensityGuidanceScheduler in the pipeline vs dd.sample_density_guided: max |Δx| = "
        f"{(lat - dd.sample_density_guided(model, x_T[:1], 0.7, steps=steps).x).abs().max():.2e}"
    )
    pipe.scheduler = TrackedSDEScheduler.from_config(pipe.scheduler.config)
    pipe(
        args.prompt,
        num_inference_steps=steps,
        guidance_scale=args.guidance_scale,
        latents=x_T[:1].clone(),
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
        height=images[0.7].shape[-1],
        width=images[0.7].shape[-1],
    )
    print(f"TrackedSDEScheduler: log p of the latent read back after the call: {pipe.scheduler.logp.tolist()}")


if __name__ == "__main__":
    main()
