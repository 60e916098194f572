"""Two simple density baselines on the held-out sklearn digits, in dequantized bits/dim (17 levels).

* independent per-pixel histograms: p(x) = Π_d h_d(x_d) with Laplace-smoothed (+alpha) counts of the training
  set; under uniform dequantization the density is piecewise constant on the unit cells, so the dequantized
  bits/dim equals the discrete −log₂ P(x)/D exactly.
* full-covariance Gaussian fitted (maximum likelihood, + ridge·I) to the uniformly dequantized training data,
  evaluated on uniformly dequantized test data (``repeats`` draws of the noise averaged).

Both are in the data units of :func:`diffdensity.bits_per_dim` (x ∈ [0, 17) after dequantization, cells of volume 1),
so they compare directly with the models' held-out bits/dim.
Usage: python benchmarks/digits_baselines.py  (prints a table, writes benchmarks/results/digits_baselines.json)
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


def histogram_bpd(train: torch.Tensor, test: torch.Tensor, levels: int, alpha: float = 1.0) -> torch.Tensor:
    """Per-test-example bits/dim of independent per-pixel histograms (train/test (N, D) integer-valued)."""
    tr, te = train.long(), test.long()
    counts = torch.zeros(tr.shape[1], levels, dtype=torch.float64)
    counts.scatter_add_(1, tr.T, torch.ones_like(tr.T, dtype=torch.float64))
    probs = (counts + alpha) / (tr.shape[0] + alpha * levels)
    logp = torch.log(probs).gather(1, te.T).T.sum(1)  # (N,)
    return -logp / (te.shape[1] * math.log(2))


def gaussian_bpd(train: torch.Tensor, test: torch.Tensor, repeats: int, ridge: float, seed: int) -> torch.Tensor:
    """Per-test-example bits/dim of a full-covariance Gaussian fitted to dequantized training data."""
    g = torch.Generator().manual_seed(seed)
    xtr = train.double() + torch.rand(train.shape, generator=g, dtype=torch.float64)
    mean = xtr.mean(0)
    cov = torch.cov(xtr.T, correction=0) + ridge * torch.eye(xtr.shape[1], dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    total = torch.zeros(test.shape[0], dtype=torch.float64)
    for _ in range(repeats):
        xte = test.double() + torch.rand(test.shape, generator=g, dtype=torch.float64)
        total += dist.log_prob(xte)
    return -(total / repeats) / (test.shape[1] * math.log(2))


def baseline_args(description: str, **extra) -> argparse.Namespace:
    """The baselines' command line (shared by the digits and patches16 scripts)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--alpha", type=float, default=1.0, help="Laplace smoothing of the histograms (add-one)")
    ap.add_argument("--ridge", type=float, default=1e-6, help="added to the covariance diagonal")
    ap.add_argument("--repeats", type=int, default=10, help="dequantization draws for the Gaussian")
    ap.add_argument("--seed", type=int, default=0)
    for name, default in extra.items():
        ap.add_argument(f"--{name}", type=type(default), default=default)
    ap.add_argument("--out", default=None, help="JSON path (default: results/latest/, or results/ when recording)")
    return ap.parse_args()


def run_baselines(dataset: str, description: str, args, name: str) -> dict:
    """Both baselines on ``dataset``'s split in dequantized bits/dim: print the table, write JSON, return the rows."""
    ds = load_dataset(dataset)
    levels = ds.levels
    train, test = ds.train.reshape(len(ds.train), -1), ds.test.reshape(len(ds.test), -1)
    rows = {}
    for label, bpd in (
        ("independent per-pixel histograms", histogram_bpd(train, test, levels, args.alpha)),
        ("full-covariance Gaussian", gaussian_bpd(train, test, args.repeats, args.ridge, args.seed)),
    ):
        rows[label] = {"test_bpd": float(bpd.mean()), "stderr": float(bpd.std() / math.sqrt(len(bpd)))}
    print(
        f"{dataset}: {len(train)} train / {len(test)} test, {train.shape[1]} dims, {levels} levels, "
        "uniform dequantization"
    )
    print(f"{'baseline':36s} {'held-out bits/dim':>18s}")
    for label, r in rows.items():
        print(f"{label:36s} {r['test_bpd']:>10.4f} ± {r['stderr']:.4f}")
    save(
        name,
        {
            "dataset": description,
            "levels": levels,
            "n_train": len(train),
            "n_test": len(test),
            "settings": vars(args),
            "baselines": rows,
        },
        args.out,
    )
    return rows


def main():
    args = baseline_args(__doc__)
    run_baselines(
        "digits", "digits (sklearn, split of diffdensity.data.load_dataset('digits'))", args, "digits_baselines"
    )


if __name__ == "__main__":
    main()
