"""docs/figures/patches16_samples.png: 64 PF-ODE samples of the shipped ``patches16`` model next to 64 held-out patches.

Usage: python docs/figures/make_patches16_samples.py [--model patches16] [--steps 128] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import diffdensity as dd
from diffdensity.data import images
from diffdensity.training.visual import image_grid


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="patches16")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscaling of the PNG")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "patches16_samples.png"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = dd.load(args.model)
    g = torch.Generator().manual_seed(args.seed)
    x_T = model.schedule.sample_prior((args.n, 3, 16, 16), generator=g)
    with torch.no_grad():
        z = dd.sample_ode(model, x_T, steps=args.steps, solver="heun", generator=g, progress=True).x
    samples = model.transform.inverse(z, round=True).reshape(args.n, 3, 16, 16)
    held_out = images.photo_patches(images.PATCH_TEST_IMAGES, args.n, 16, 4, 1)  # first n of the 2000 test patches
    left, right = image_grid(samples, 256), image_grid(held_out, 256)
    gap = np.full((left.shape[0], 6, 3), 255, dtype=np.uint8)
    im = Image.fromarray(np.concatenate([left, gap, right], axis=1))
    im = im.resize((im.width * args.scale, im.height * args.scale), Image.NEAREST)
    im.save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
