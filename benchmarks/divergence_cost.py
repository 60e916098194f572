"""Cost of one exact-divergence evaluation against one plain score call, per network size (issue 15, item 3).

For D = 2 (`toy2d-moons`, MLP), D = 64 (`digits8`, UNet) and D = 768 (`patches16`, UNet): wall time of the score
alone, of score + exact divergence (`Divergence("exact")`: torch.func VJPs vmapped over chunks of basis vectors,
chunk size "auto"), and of score + Hutchinson (one probe), on a batch of 16 at λ = 0, one thread, median of repeats.
Run: .venv/bin/python benchmarks/divergence_cost.py [--quick]; prints the table and writes divergence_cost.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import diffdensity as dd
from diffdensity.evaluation import make_probes, score_and_divergence

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import save, table  # noqa: E402

MODELS = (("toy2d-moons", 2), ("digits8", 64), ("patches16", 768))


def timed(fn, repeats):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, D in MODELS:
        m = dd.load(name)
        shape = tuple(m.transform.model_shape)
        x = torch.randn((a.batch, *shape), generator=torch.Generator().manual_seed(0))
        lam = torch.tensor(0.0)
        probes = make_probes(x, 1, generator=torch.Generator().manual_seed(1))
        reps = 2 if a.quick or D == 768 else 5
        t_score = timed(lambda: score_and_divergence(m, x, lam, None), reps)
        t_exact = timed(lambda: score_and_divergence(m, x, lam, "exact"), reps)
        t_hutch = timed(lambda: score_and_divergence(m, x, lam, "hutchinson", probes), reps)
        rows.append(
            {
                "model": name,
                "D": D,
                "batch": a.batch,
                "score_s": t_score,
                "exact_s": t_exact,
                "exact_over_score": t_exact / t_score,
                "exact_over_score_per_dim": t_exact / t_score / D,
                "hutchinson_s": t_hutch,
                "hutchinson_over_score": t_hutch / t_score,
            }
        )
        print(rows[-1], flush=True)
    print(
        table(
            rows,
            [
                "model",
                "D",
                "score_s",
                "exact_s",
                "exact_over_score",
                "exact_over_score_per_dim",
                "hutchinson_over_score",
            ],
        )
    )
    save("divergence_cost", {"rows": rows})
