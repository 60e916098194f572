"""Per-image log-density you can trust (issue 25): noise over probe seeds, calibration of the reported standard
error, and cost — the default ``log_prob`` (quadrature scheme, math.md §I.4) against the previous default (one
Hutchinson probe held for a dopri5 solve with batch-shared control: ``nodes=0, control="batch"``).

For each case, ``seeds`` probe seeds on the same dequantized inputs: per-image std of log p over seeds (median over
images), the median reported standard error and their ratio (calibration; 1 is perfect), the mean error against the
exact log p where there is one (the mixture oracle, D = 64 and 768), score calls (NFE) and VJPs per image, and wall
time per solve, each as a ratio to the previous default measured side by side in this run. One torch thread.

Run: .venv/bin/python benchmarks/precision.py [--quick] [--only oracle64,oracle768,digits8,patches16]
Prints a table and writes benchmarks/results/precision.json (results/latest/ unless DIFFDENSITY_BENCH_RECORD=1).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import diffdensity as dd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save, table  # noqa: E402

OLD = {"nodes": 0, "control": "batch"}


class Counted:
    """The model with its score calls and VJPs counted per image (a VJP is one backward through a score call)."""

    def __init__(self, model):
        self.model, self.schedule, self.calls = model, model.schedule, 0
        self.transform = getattr(model, "transform", None)

    def score(self, x, lam):
        self.calls += x.shape[0]
        return self.model.score(x, lam)


def oracle(D: int, n: int):
    g = torch.Generator().manual_seed(0)
    K = 3
    means = torch.randn(K, D, generator=g, dtype=torch.float64)
    stds = 0.4 * (0.5 + torch.rand(K, D, generator=g, dtype=torch.float64))  # anisotropic
    m = dd.GaussianMixture(means, stds, 0.2 + torch.rand(K, generator=g, dtype=torch.float64)).diffused(dd.VP())
    x = m.sample(n, m.schedule.lambda_max, generator=g)
    return m, x, m.log_prob(x, m.schedule.lambda_max)


def image_model(name: str, n: int):
    from diffdensity.data.loading import model_dataset
    from diffdensity.data.transforms import to_model_space

    m = dd.load(name)
    ints = model_dataset(m, "held-out images").test[:n]
    return m, to_model_space(ints, m.transform, True, torch.Generator().manual_seed(0)), None


def measure(model, x, exact, seeds: int, kw: dict) -> dict:
    c = Counted(model)
    lps, ses, t0 = [], [], time.perf_counter()
    for s in range(seeds):
        out = dd.log_prob(c, x, generator=torch.Generator().manual_seed(s), return_stderr="nodes" not in kw, **kw)
        lps.append(out[0] if isinstance(out, tuple) else out)
        ses.append(out[1] if isinstance(out, tuple) else None)
    lp = torch.stack(lps)
    row = {
        "std": float(lp.std(0).median()),
        "calls": c.calls / (seeds * x.shape[0]),
        "seconds": (time.perf_counter() - t0) / seeds,
    }
    if ses[0] is not None:
        se = float(torch.stack(ses).median())
        row.update(stderr=se, calibration=row["std"] / se)
    if exact is not None:
        err = lp - exact
        row.update(mean_err=float(err.mean()), mc=float(lp.std(0).pow(2).mean().sqrt() / math.sqrt(lp.numel())))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 seeds, fewer images (16 digits, 8 patches)")
    ap.add_argument("--only", default="oracle64,oracle768,digits8,patches16")
    ap.add_argument("--seeds", type=int, default=None, help="probe seeds (default 8, 4 with --quick)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = args.seeds or (4 if args.quick else 8)
    cases = {
        "oracle64": lambda: oracle(64, 16 if args.quick else 32),
        "oracle768": lambda: oracle(768, 8 if args.quick else 16),
        "digits8": lambda: image_model("digits8", 16 if args.quick else 64),
        "patches16": lambda: image_model("patches16", 8 if args.quick else 32),
    }
    rows = []
    for name in args.only.split(","):
        model, x, exact = cases[name]()
        old = measure(model, x, exact, seeds, OLD)
        new = measure(model, x, exact, seeds, {})
        for label, r in (("previous default (held probe)", old), ("default (quadrature)", new)):
            rows.append(
                {
                    "case": name,
                    "D": x[0].numel(),
                    "scheme": label,
                    **r,
                    "cost_ratio": r["calls"] / old["calls"],
                    "wall_ratio": r["seconds"] / old["seconds"],
                }
            )
            print(rows[-1], flush=True)
    cols = [
        "case",
        "D",
        "scheme",
        "std",
        "stderr",
        "calibration",
        "mean_err",
        "mc",
        "calls",
        "cost_ratio",
        "seconds",
        "wall_ratio",
    ]
    print(table(rows, cols))
    save("precision", {"what": __doc__.split("\n\n")[0], "seeds": seeds, "rows": rows})


if __name__ == "__main__":
    main()
