"""Training throughput (images/s) of candidate networks for the 16×16 RGB ``patches16`` model, one CPU thread.

One training step = importance-sampled λ, ε-loss (ELBO weighting), backward, clip, AdamW, EMA update
(the same step as benchmarks/train_throughput.py). Candidates: the ``patches16`` preset, fewer attention layers,
fewer res blocks / levels, narrower channels, channels-last memory format and ``torch.compile``.

Usage: python benchmarks/patches16_profile.py [--threads 1] [--steps 30] [--batch 64] [--no-compile]
Prints a table and writes benchmarks/results/patches16_profile.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffdensity.nets import unet_preset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402
from train_throughput import measure  # noqa: E402

SHAPE = (3, 16, 16)

# (name, UNet overrides of the "patches16" preset, memory format, compile)
CANDIDATES = [
    ("patches16 preset", {}, "contiguous", False),
    ("preset, channels-last", {}, "channels_last", False),
    ("preset, torch.compile", {}, "contiguous", True),
    ("no attn at 8x8 (mid attn only)", dict(attn_resolutions=()), "contiguous", False),
    ("no attn, 1 res block", dict(attn_resolutions=(), num_res_blocks=1), "contiguous", False),
    (
        "no attn, 1 res block, mult (1,2)",
        dict(attn_resolutions=(), num_res_blocks=1, ch_mult=(1, 2)),
        "contiguous",
        False,
    ),
    ("ch 24, no attn, 1 res block", dict(ch=24, attn_resolutions=(), num_res_blocks=1), "contiguous", False),
    (
        "ch 48, no attn, 1 res block, mult (1,2)",
        dict(ch=48, attn_resolutions=(), num_res_blocks=1, ch_mult=(1, 2)),
        "contiguous",
        False,
    ),
    ("no attn, 1 res block, torch.compile", dict(attn_resolutions=(), num_res_blocks=1), "contiguous", True),
]


def build(overrides: dict, memory_format: str, compile_: bool):
    def make():
        net = unet_preset("patches16", **overrides)
        if memory_format == "channels_last":
            net = net.to(memory_format=torch.channels_last)
        if compile_:
            net = torch.compile(net)
        return net

    return make


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (compilation takes minutes)")
    ap.add_argument("--out", default=None, help="JSON path (default: results/latest/, or results/ when recording)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, {args.steps} timed steps after warm-up"
    )
    for name, overrides, fmt, comp in CANDIDATES:
        if comp and args.no_compile:
            continue
        try:
            r = measure(build(overrides, fmt, comp), SHAPE, args.batch, args.steps, warmup=3 if comp else 2)
        except Exception as e:  # e.g. torch.compile without a working C++ compiler: record it, keep going
            r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
        row = {
            "candidate": name,
            "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
            "memory_format": fmt,
            "compile": comp,
            **r,
        }
        rows.append(row)
        if "error" in r:
            print(f"{name:42s} failed: {r['error']}", flush=True)
        else:
            print(
                f"{name:42s} {r['params']:>10,d} {r['s_per_step']:>8.4f} s/step {r['images_per_s']:>8.1f} images/s",
                flush=True,
            )
    save(
        "patches16_profile",
        {
            "what": "one training step of candidate patches16 networks (CPU): importance-sampled λ, ε-loss, backward, clip, AdamW, EMA",
            "threads": args.threads,
            "batch": args.batch,
            "steps": args.steps,
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
