"""Stochastic density guidance: the reference's η' versus the exact-Itô η' (math.md §2.6) on the exact mixture.

Per path: R = log p_{λ1}(x_{λ1}) − log p_{λ0}(x_{λ0}) − ∫(−div u)dλ − ½√(2D)Φ⁻¹(q)(λ1 − λ0) (the realised rate minus
the target), with the oracle's exact Δ log p in the drift (so only the Itô term differs). math.md predicts
mean R = −½∫φ̃² g2 ŝᵀ∇²log p ŝ dλ for the reference's η' and 0 for the exact one.

Run: .venv/bin/python benchmarks/guidance_ito.py [--quick]; prints a table, writes benchmarks/results/guidance_ito.json.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

import diffdensity as dd
from diffdensity.guidance import sdg_rate_residual

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import save, table  # noqa: E402


def mixture(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(3, D, generator=g, dtype=torch.float64)
    stds = 0.4 * (0.5 + torch.rand(3, generator=g, dtype=torch.float64))
    return dd.GaussianMixture(means, stds, 0.2 + torch.rand(3, generator=g, dtype=torch.float64))


def rate_offset(m, exact_ito, phi, q=0.55):
    r, off = sdg_rate_residual(m, q, phi, exact_ito)
    return float(r.mean()), float(r.std() / math.sqrt(r.shape[0])), float(off.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    sch = dd.VP()
    rows = []
    for D in (32,) if args.quick else (32, 64):  # D = 16: a path overshoots a mode (the monitor stops it)
        m = mixture(D).diffused(sch)
        for phi in (0.3, 0.5):
            code, code_se, pred = rate_offset(m, False, phi)
            ex, ex_se, _ = rate_offset(m, True, phi)
            rows.append(
                {
                    "D": D,
                    "phi": phi,
                    "predicted_offset": pred,
                    "reference_eta_offset": code,
                    "reference_se": code_se,
                    "exact_ito_offset": ex,
                    "exact_se": ex_se,
                }
            )
            print(rows[-1], flush=True)
    cols = ["D", "phi", "predicted_offset", "reference_eta_offset", "reference_se", "exact_ito_offset", "exact_se"]
    print(table(rows, cols))
    save(
        "guidance_ito",
        {"setup": "VP, q=0.55, λ∈[−4,4], 256 EM steps, n=128 paths from p_{λ0}, exact Δ log p", "rows": rows},
    )


if __name__ == "__main__":
    main()
