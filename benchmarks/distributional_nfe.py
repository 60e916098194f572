"""Few-step sample quality of distributional diffusion (De Bortoli et al. 2025) vs its regression baseline.

For each 2-D data set, a generator trained with the energy score (β = 1, interaction 1, m = 8) and the same network
trained with the regression loss (β = 2, interaction 0; the standard diffusion x₀-loss) under the same budget are
sampled by Algorithm 2 (churn ε = 1, grid uniform in t) with 1, 2, 4, 8, 16, 32 steps; 4096 samples each are compared
with 4096 held-out points by RBF-MMD (median-heuristic bandwidth of the held-out set) and energy distance.

    python benchmarks/distributional_nfe.py [--runs DIR] [--churn 1.0]

Models: ``DIR/<dataset>-distributional`` and ``DIR/<dataset>-regression`` if DIR is given, else the shipped
``<dataset>-distributional`` / ``<dataset>-regression`` (moons is not shipped: pass --runs). Writes
benchmarks/results/distributional_nfe.json and docs/figures/distributional_nfe.png; prints the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save  # noqa: E402

import diffdensity as dd  # noqa: E402
from diffdensity.data import load_dataset  # noqa: E402
from diffdensity.distributional.experiments import NFES, format_table, nfe_sweep, plot_nfe  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default=None)
    ap.add_argument("--datasets", default="checkerboard,8gaussians,moons")
    ap.add_argument("--churn", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="distributional_nfe")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results, summary = {}, {}
    for ds_name in args.datasets.split(","):
        where = (lambda k: str(Path(args.runs) / f"{ds_name}-{k}")) if args.runs else (lambda k: f"{ds_name}-{k}")
        models = {k: dd.load(where(k)) for k in ("distributional", "regression")}
        ds = load_dataset(ds_name)
        ref = ds.test_model_space()[: args.n]
        res = nfe_sweep(models, ref, NFES, args.n, args.churn, args.seed, progress=False)
        results[ds_name] = res
        val = {(r["model"], r["nfe"]): r["mmd"] for r in res["rows"]}
        ratio = {k: val[("regression", k)] / val[("distributional", k)] for k in NFES}
        summary[ds_name] = {
            "mmd_ratio_regression_over_distributional": ratio,
            "few_step_2x": all(ratio[k] >= 2 for k in (1, 2, 4)),
            "nfe32_within_1.5x": ratio[32] >= 1 / 1.5,
        }  # distributional <= 1.5 x regression
        print(f"\n{ds_name} (churn {args.churn})\n{format_table(res)}\n{format_table(res, 'energy_distance')}")
        print("MMD ratio regression / distributional: " + ", ".join(f"{k}: {r:.2f}" for k, r in ratio.items()))
    save(args.name, {"datasets": results, "summary": summary, "churn": args.churn})
    fig = ROOT / "docs" / "figures" / f"{args.name}.png"
    plot_nfe(results, fig)
    print(f"wrote {fig}")


if __name__ == "__main__":
    main()
