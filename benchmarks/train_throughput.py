"""Training throughput (images/s) of the CPU network presets: forward + backward + AdamW step + EMA update.

Usage: python benchmarks/train_throughput.py [--threads 1] [--steps 10] [--quick]
Prints a table and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from diffdensity.models import NetworkModel
from diffdensity.nets import MLP, unet_preset
from diffdensity.objectives.common import low_discrepancy
from diffdensity.objectives.denoising import denoising_loss
from diffdensity.objectives.importance import ImportanceSampler
from diffdensity.schedules import VP
from diffdensity.training import EMA

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402


def _shipped_net(name):
    import json

    from diffdensity.io import PRETRAINED_DIR
    from diffdensity.nets import build_net

    return build_net(json.loads((PRETRAINED_DIR / name / "config.json").read_text())["net"])


# (name, builder, model shape, batch size)
PRESETS = [
    ("mlp-toy2d (hidden 128, depth 3)", lambda: MLP(2, hidden=128, depth=3), (2,), 512),
    ("mlp-digits (hidden 512, depth 4)", lambda: MLP(64, hidden=512, depth=4), (1, 8, 8), 128),
    ("unet-digits (preset)", lambda: unet_preset("digits"), (1, 8, 8), 128),
    ("unet-digits8 (the shipped digits8 net)", lambda: _shipped_net("digits8"), (1, 8, 8), 64),
    ("unet-patches16 (preset)", lambda: unet_preset("patches16"), (3, 16, 16), 32),
    ("unet-cifar10 (preset)", lambda: unet_preset("cifar10"), (3, 32, 32), 4),
]


def measure(build, shape, batch, steps, warmup=2):
    torch.manual_seed(0)
    net = build()
    model = NetworkModel(net, VP())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    ema = EMA(net, 0.999)
    sampler = ImportanceSampler(-10, 10)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, *shape, generator=g)

    def step():
        lam, q = sampler.sample(low_discrepancy(batch, g))
        lam, q = lam.float(), q.float()
        eps = torch.randn(x0.shape, generator=g)
        loss, un = denoising_loss(model, x0, lam, eps, "elbo", density=q, return_unweighted=True)
        opt.zero_grad(set_to_none=True)
        (loss.mean() / math.prod(shape)).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sampler.update(lam, un)
        ema.update(net)

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "batch": batch,
        "s_per_step": dt,
        "images_per_s": batch / dt,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="skip the CIFAR-10 preset")
    ap.add_argument("--out", default=None, help="JSON path (default: results/latest/, or results/ when recording)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} timed steps after 2 warm-up steps")
    print(f"{'preset':42s} {'params':>10s} {'batch':>6s} {'s/step':>9s} {'images/s':>10s}")
    for name, build, shape, batch in PRESETS:
        if args.quick and "cifar10" in name:
            continue
        steps = max(2, args.steps // 4) if "cifar10" in name else args.steps
        r = {"preset": name, "shape": list(shape), **measure(build, shape, batch, steps)}
        rows.append(r)
        print(
            f"{name:42s} {r['params']:>10,d} {r['batch']:>6d} {r['s_per_step']:>9.4f} {r['images_per_s']:>10.1f}",
            flush=True,
        )
    save(
        "train_throughput",
        {
            "what": "one training step: importance-sampled λ, ε-loss, backward, clip, AdamW, EMA (CPU)",
            "threads": args.threads,
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
