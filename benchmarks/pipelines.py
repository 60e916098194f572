"""Density tools on a real text-to-image pipeline (for GPU users): density guidance (a q sweep), high-density
sampling and SDE sampling with log p tracked, each with wall time, score calls and peak GPU memory.

The pipeline is a folder or hub id (`--pipeline`; default: a tiny random SD pipeline, a smoke run only). The network
runs under `--autocast fp16|bf16` while the ODE/SDE state and log p stay float32. Density guidance tracks log p
with one Hutchinson probe per step; high density and SDE use the corrected tracker / no tracking as named.
UNMEASURED: written for a CUDA GPU and not run on one (the machine it was written on has none).

Run: python benchmarks/pipelines.py --pipeline stabilityai/stable-diffusion-2-1-base --device cuda \\
         --autocast fp16 --prompt "a lighthouse" --guidance-scale 5 --n 4 --steps 50
Prints a table and writes benchmarks/results/latest/pipelines.json (results/ with DIFFDENSITY_BENCH_RECORD=1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import diffdensity as dd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save, table  # noqa: E402


def timed(name, device, fn) -> dict:
    """Run ``fn() -> Samples`` once; wall time (synchronised), NFE, peak memory and log p statistics."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        smp = fn()
    except ValueError as e:  # e.g. InfeasibleGuidance at an extreme q
        return {"run": name, "error": str(e).splitlines()[0][:120]}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    row = {
        "run": name,
        "seconds": time.perf_counter() - t0,
        "nfe": smp.nfe,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
    }
    if smp.logp is not None:
        row.update(logp_mean=float(smp.logp.mean()), logp_min=float(smp.logp.min()), logp_max=float(smp.logp.max()))
    return row


def runs(model, x_T, args) -> list[dict]:
    """The q sweep of density guidance, high-density sampling and the tracked SDE on the same latents."""
    g = lambda: torch.Generator(device="cpu").manual_seed(args.seed)  # noqa: E731
    rows = [
        timed(
            f"density q={q:g}",
            args.device,
            lambda q=q: dd.sample_density_guided(
                model, x_T, q, steps=args.steps, track_logp=True, divergence="hutchinson", generator=g()
            ),
        )
        for q in args.qs
    ]
    rows.append(
        timed(
            f"high density thr={args.threshold:g}",
            args.device,
            lambda: dd.sample_hd(model, x_T, args.threshold, steps=args.steps, generator=g()),
        )
    )
    rows.append(
        timed("sde tracked", args.device, lambda: dd.sample_sde(model, x_T, steps=args.sde_steps, generator=g()))
    )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default=None, help="pipeline folder or hub id (default: a tiny random one)")
    ap.add_argument("--prompt", default="a lighthouse")
    ap.add_argument("--guidance-scale", type=float, default=5.0, help="as in diffusers")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--autocast", choices=["no", "fp16", "bf16"], default="no")
    ap.add_argument(
        "--torch-dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="dtype the pipeline's weights are loaded in",
    )
    ap.add_argument(
        "--attention",
        choices=["classic", "fused"],
        default="fused",
        help="fused: the pipeline's own attention (fast; no JVPs needed here)",
    )
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sde-steps", type=int, default=200)
    ap.add_argument("--qs", default="0.3,0.5,0.7")
    ap.add_argument("--threshold", type=float, default=2.0, help="λ where the high-density ODE takes over")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--local-files-only", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny pipeline, few steps (a smoke run)")
    args = ap.parse_args()
    args.qs = [float(q) for q in args.qs.split(",")]
    if args.quick:
        args.steps, args.sde_steps, args.n = 4, 8, 2
    source = args.pipeline
    if source is None:
        from diffdensity.adapters.tiny import tiny_pipeline

        source = tempfile.mkdtemp()
        tiny_pipeline("sd-eps", folder=source)
    load = {"torch_dtype": getattr(torch, args.torch_dtype)}
    if args.local_files_only:
        load["local_files_only"] = True
    model = dd.from_diffusers(
        source,
        prompt=args.prompt,
        guidance_scale=args.guidance_scale,
        device=args.device,
        autocast=None if args.autocast == "no" else args.autocast,
        attention=args.attention,
        **load,
    )
    x_T = model.schedule.sample_prior(
        (args.n, *model.latent_shape), generator=torch.Generator().manual_seed(0), device=args.device
    )  # float32 state whatever the weights' dtype
    rows = runs(model, x_T, args)
    print(table(rows, ["run", "seconds", "nfe", "peak_gib", "logp_mean", "logp_min", "logp_max", "error"]))
    save(
        "pipelines",
        {
            "pipeline": args.pipeline or "tiny random (smoke run)",
            "measured_on_gpu": args.device.startswith("cuda"),
            "args": {k: v for k, v in vars(args).items()},
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
