"""Peak memory of ``dd.log_prob`` with default settings (issue 25): all 1,797 scikit-learn digits against 64 of them
under ``digits8``; each run in a fresh subprocess, peak resident memory (ru_maxrss) above the process's baseline after
the model is loaded. ``log_prob`` encodes its input in chunks of ``batch_size`` (64), so the peak should not grow
with the number of images (target: within 2×).

Run: .venv/bin/python benchmarks/memory.py [--quick: 256 digits instead of 1,797]; table + results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import save, table  # noqa: E402

CHILD = r"""
import json, resource, sys, time, torch
torch.set_num_threads(1)
import diffdensity as dd
from diffdensity.data.transforms import to_model_space
from sklearn.datasets import load_digits
n = int(sys.argv[1])
m = dd.load("digits8")
d = torch.tensor(load_digits().images[:n], dtype=torch.float32)
x = to_model_space(d, m.transform, True, torch.Generator().manual_seed(0))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
lp = dd.log_prob(m, x, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n": n, "baseline_mb": base / 1024, "peak_mb": peak / 1024, "above_baseline_mb": (peak - base) / 1024,
                  "seconds": time.perf_counter() - t0, "finite": bool(torch.isfinite(lp).all())}))
"""


def run(n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    rows = [run(64), run(256 if a.quick else 1797)]
    rows[1]["ratio_to_64"] = rows[1]["above_baseline_mb"] / rows[0]["above_baseline_mb"]
    print(table(rows, ["n", "baseline_mb", "peak_mb", "above_baseline_mb", "ratio_to_64", "seconds", "finite"]))
    save("memory", {"what": __doc__.split("\n\n")[0], "rows": rows})


if __name__ == "__main__":
    main()
