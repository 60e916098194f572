"""Two simple density baselines on the held-out ``patches16`` photo patches, in dequantized bits/dim (256 levels).

The same estimators and conventions as benchmarks/digits_baselines.py (imported from there):

* independent per-pixel histograms (one per colour channel and pixel, D = 3·16·16 = 768) with add-one (Laplace,
  alpha = 1) smoothed counts of the 20 000 training patches; under uniform dequantization the density is piecewise
  constant on the unit cells, so the dequantized bits/dim equals the discrete −log₂ P(x)/D exactly;
* a full-covariance Gaussian fitted (maximum likelihood, + ridge·I) to the uniformly dequantized training patches
  in data units (x ∈ [0, 256)), evaluated on uniformly dequantized held-out patches (``repeats`` draws averaged).

Both are in the data units of :func:`diffdensity.bits_per_dim`, so they compare directly with the model's bits/dim.
Usage: python benchmarks/patches16_baselines.py  (prints a table, writes benchmarks/results/patches16_baselines.json)
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from diffdensity.data import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402
from digits_baselines import gaussian_bpd, histogram_bpd  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--alpha", type=float, default=1.0, help="Laplace smoothing of the histograms (add-one)")
    ap.add_argument("--ridge", type=float, default=1e-6, help="added to the covariance diagonal")
    ap.add_argument("--repeats", type=int, default=10, help="dequantization draws for the Gaussian")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "patches16_baselines.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset("patches16")
    levels = ds.levels
    train, test = ds.train.reshape(len(ds.train), -1), ds.test.reshape(len(ds.test), -1)
    rows = {}
    for name, bpd in (
        ("independent per-pixel histograms", histogram_bpd(train, test, levels, args.alpha)),
        ("full-covariance Gaussian", gaussian_bpd(train, test, args.repeats, args.ridge, args.seed)),
    ):
        rows[name] = {"test_bpd": float(bpd.mean()), "stderr": float(bpd.std() / math.sqrt(len(bpd)))}
    print(f"patches16: {len(train)} train / {len(test)} test, {train.shape[1]} dims, {levels} levels, uniform dequantization")
    print(f"{'baseline':36s} {'held-out bits/dim':>18s}")
    for name, r in rows.items():
        print(f"{name:36s} {r['test_bpd']:>10.4f} ± {r['stderr']:.4f}")
    save("patches16_baselines", {
        "dataset": "patches16 (diffdensity.data.load_dataset('patches16'): 16×16 RGB crops, 4× downscaled photos; "
                   "train: astronaut, coffee, rocket, motorcycle_left, china; test: chelsea, flower)",
        "levels": levels,
        "n_train": len(train),
        "n_test": len(test),
        "settings": vars(args),
        "baselines": rows,
    }, args.out)


if __name__ == "__main__":
    main()
