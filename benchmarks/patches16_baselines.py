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

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_baselines import baseline_args, run_baselines  # noqa: E402


def main():
    args = baseline_args(__doc__, threads=1)
    torch.set_num_threads(args.threads)
    run_baselines(
        "patches16",
        "patches16 (diffdensity.data.load_dataset('patches16'): 16×16 RGB crops, 4× downscaled "
        "photos; train: astronaut, coffee, rocket, motorcycle_left, china; test: chelsea, flower)",
        args,
        "patches16_baselines",
    )


if __name__ == "__main__":
    main()
