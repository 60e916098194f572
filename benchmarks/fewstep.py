"""Few-step sampling: distributional generators (Algorithm 2) against the strongest ODE solvers on the score model.

For each 2-D toy and NFE in 1, 2, 3, 4, 6, 8, 16, 32, 3 seeds of 4096 samples each are compared with 4096 held-out
points by metrics that see fine structure (distributional/quality.py): the toy's task metric (checkerboard: fraction
on the squares; 8 Gaussians: fraction within 3σ of a mode and modes covered), the energy distance and the unbiased
RBF MMD² at h = 0.05·R (R = the data's range; 0.1·R, 0.2·R, 0.5·R in the JSON). Methods:

* ``distributional ε=0`` / ``ε=1``: ``<toy>-distributional``, Algorithm 2 with churn 0 / 1, NFE steps;
* ``regression DDIM``: ``<toy>-regression`` (same net, β = 2, interaction 0), Algorithm 2 with churn 0;
* ``dpmpp2m``, ``ab2`` (NFE steps) and ``heun`` (NFE/2 steps, even NFE only) on the score model ``toy2d-<toy>``.

Every method runs on each of its grids (bridge: spacing "t", "lambda", "quadratic"; ODE solvers: grid kinds
"lambda", "t", "edm") and reports, per NFE, the grid with the lowest MMD² at h = 0.05·R (mean over seeds; the finest kernel, which sees
both the fine structure and a collapse — a task metric alone rewards a collapse onto one square). Cells are mean ±
standard error over the seeds. The strongest baseline per NFE is the non-distributional method with the lowest
MMD²@0.05R.

    python benchmarks/fewstep.py            # the full table (benchmarks/results/fewstep.json, docs/figures/fewstep*.png)
    python benchmarks/fewstep.py --quick    # NFE 1, 2, 4, 8, 1 seed, 1024 samples; writes to benchmarks/results/latest/
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

import diffdensity as dd  # noqa: E402
from diffdensity.data import load_dataset  # noqa: E402
from diffdensity.distributional.quality import structure_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NFES = (1, 2, 3, 4, 6, 8, 16, 32)
TASK = {"checkerboard": "on_squares", "8gaussians": "within_3sigma"}
SOLVER_GRIDS = ("lambda", "t", "edm")
SPACINGS = ("t", "lambda", "quadratic")
DISTRIBUTIONAL = ("distributional ε=0", "distributional ε=1")
SELECT = "mmd2@0.05R"  # grid choice and strongest baseline: lowest mean over seeds


def methods(ds: str, pretrained: str | None = None) -> dict:
    """name -> (model, kind, churn, grids, steps(nfe) or None when the NFE is not reachable)."""
    where = (lambda n: str(Path(pretrained) / n)) if pretrained else (lambda n: n)
    gen, reg, score = dd.load(where(f"{ds}-distributional")), dd.load(where(f"{ds}-regression")), dd.load(f"toy2d-{ds}")
    same = lambda k: k  # noqa: E731
    half = lambda k: k // 2 if k % 2 == 0 else None  # noqa: E731
    return {
        "distributional ε=0": (gen, "bridge", 0.0, SPACINGS, same),
        "distributional ε=1": (gen, "bridge", 1.0, SPACINGS, same),
        "regression DDIM": (reg, "bridge", 0.0, SPACINGS, same),
        "dpmpp2m": (score, "dpmpp2m", None, SOLVER_GRIDS, same),
        "ab2": (score, "ab2", None, SOLVER_GRIDS, same),
        "heun": (score, "heun", None, SOLVER_GRIDS, half),
    }


def draw(model, kind: str, churn, grid: str, steps: int, n: int, seed: int):
    """(samples (n, 2), measured NFE, seconds) for one method, grid, step count and seed."""
    g = torch.Generator().manual_seed(seed)
    x_T = model.schedule.sample_prior((n, 2), generator=g, dtype=torch.get_default_dtype())
    t0 = time.perf_counter()
    with torch.no_grad():
        if kind == "bridge":
            out = dd.sample_distributional(model, x_T, steps=steps, churn=churn, generator=g, spacing=grid)
        else:
            out = dd.sample_ode(model, x_T, steps=steps, solver=kind, grid=grid)
    return out.x.detach(), int(out.nfe), time.perf_counter() - t0


def _summary(vals: list) -> dict:
    v = torch.tensor(vals, dtype=torch.float64)
    se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "se": se}


def evaluate(model, kind, churn, grid, steps, ds, ref, n, seeds) -> dict:
    """Metrics (mean ± SE over seeds) of one method on one grid at one step count."""
    per, nfe, secs = [], 0, 0.0
    for seed in seeds:
        x, nfe, s = draw(model, kind, churn, grid, steps, n, seed)
        secs += s
        m = structure_metrics(x, ref, ds, sets=4)
        per.append({k: m[k]["mean"] for k in m if k != "bandwidths"})
    out = {k: _summary([p[k] for p in per]) for k in per[0]}
    out.update(grid=grid, steps=steps, nfe=nfe, us_per_sample=1e6 * secs / (n * len(seeds)))
    return out


def run_dataset(ds: str, nfes, n: int, seeds, pretrained=None) -> dict:
    """{method: {nfe: best-grid result, with "all_grids": {grid: {task, SELECT means}}}} for one toy."""
    ref = load_dataset(ds).test_model_space()[:n]
    task, res = TASK[ds], {}
    for name, (model, kind, churn, grids, steps_of) in methods(ds, pretrained).items():
        res[name] = {}
        for k in nfes:
            steps = steps_of(k)
            if not steps:
                continue
            cands = {gr: evaluate(model, kind, churn, gr, steps, ds, ref, n, seeds) for gr in grids}
            best = min(cands, key=lambda gr: cands[gr][SELECT]["mean"])
            res[name][k] = {
                **cands[best],
                "all_grids": {gr: {task: c[task]["mean"], SELECT: c[SELECT]["mean"]} for gr, c in cands.items()},
            }
            print(f"{ds:>12} {name:>20} NFE {k:>2}: {task} {cands[best][task]['mean']:.3f} ({best})", flush=True)
    return res


def strongest_baseline(res: dict, k: int):
    """(name, result) of the non-distributional method with the lowest MMD²@0.05R at NFE k (None if none ran)."""
    cands = [(m, r[k]) for m, r in res.items() if m not in DISTRIBUTIONAL and k in r]
    return min(cands, key=lambda c: c[1][SELECT]["mean"]) if cands else (None, None)


def _cell(r, key, digits=3) -> str:
    if r is None:
        return "–"
    v = r[key]
    se = "" if math.isnan(v["se"]) else f" ± {v['se']:.{digits}f}"
    return f"{v['mean']:.{digits}f}{se}"


def markdown(ds: str, res: dict, nfes, key: str, digits: int = 3) -> str:
    """One markdown table: methods × NFE for ``key``, the chosen grid in brackets, then the strongest baseline."""
    head = f"| {ds}: {key} \\ NFE | " + " | ".join(str(k) for k in nfes) + " |"
    lines = [head, "|---|" + "---|" * len(nfes)]
    for name, r in res.items():
        cells = [(_cell(r.get(k), key, digits) + f" ({r[k]['grid']})") if k in r else "–" for k in nfes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    strongest = [strongest_baseline(res, k)[0] or "–" for k in nfes]
    lines.append("| strongest baseline | " + " | ".join(strongest) + " |")
    return "\n".join(lines)


def plot_curves(results: dict, path: Path) -> None:
    """One panel per toy: the task metric (mean ± SE over seeds, best grid) against NFE, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.3), squeeze=False)
    for ax, (ds, res) in zip(axes[0], results.items()):
        task = TASK[ds]
        for name, r in res.items():
            ks = sorted(r)
            ax.errorbar(
                ks,
                [r[k][task]["mean"] for k in ks],
                [0 if math.isnan(r[k][task]["se"]) else r[k][task]["se"] for k in ks],
                fmt="o-" if name in DISTRIBUTIONAL else "s--",
                ms=3,
                label=name,
                lw=1.2,
            )
        ax.axhline(0.9, color="k", lw=0.6, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("NFE")
        ax.set_ylabel(task)
        ax.set_title(ds, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_scatter(results: dict, path: Path, n: int = 2048, pretrained=None) -> None:
    """Rows: toys; columns: data, the better distributional churn (by MMD²@0.05R) at 1/2/4 NFE, the strongest
    baseline at 4 NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 5, figsize=(13, 2.8 * len(results)), squeeze=False)
    for row, (ds, res) in zip(axes, results.items()):
        meths, task = methods(ds, pretrained), TASK[ds]
        panels = [("data", load_dataset(ds).test_model_space()[:n], None)]
        for k in (1, 2, 4):
            name = min(DISTRIBUTIONAL, key=lambda m: res[m][k][SELECT]["mean"])
            panels.append((name, k, res[name][k]))
        base, r4 = strongest_baseline(res, 4)
        panels.append((base, 4, r4))
        for ax, (name, k, r) in zip(row, [(p[0], None, p[1]) if p[2] is None else p for p in panels]):
            if k is None:
                x, title = r, f"{ds}: held-out data"
            else:
                model, kind, churn, _, steps_of = meths[name]
                x = draw(model, kind, churn, r["grid"], steps_of(k), n, 0)[0]
                title = f"{name}, NFE {k} ({r['grid']})\n{task} {r[task]['mean']:.3f}"
            ax.scatter(x[:, 0], x[:, 1], s=0.5, alpha=0.5)
            ax.set(xlim=(-2.6, 2.6), ylim=(-2.6, 2.6), xticks=[], yticks=[], aspect="equal")
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="NFE 1, 2, 4, 8, one seed, 1024 samples")
    ap.add_argument("--datasets", default="checkerboard,8gaussians")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--pretrained", default=None, help="folder with <toy>-distributional / -regression (default: shipped)"
    )
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/fewstep.json; --quick: latest/)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    nfes, n, seeds = ((1, 2, 4, 8), 1024, [0]) if args.quick else (NFES, args.n, list(range(args.seeds)))
    results = {ds: run_dataset(ds, nfes, n, seeds, args.pretrained) for ds in args.datasets.split(",")}
    text = []
    for ds, res in results.items():
        for key in [TASK[ds]] + (["modes_covered"] if ds == "8gaussians" else []) + [SELECT, "energy_distance"]:
            text.append(markdown(ds, res, nfes, key, 4 if key.startswith(("energy", "mmd")) else 3))
    print("\n\n".join(text))
    suffix = "_quick" if args.quick else ""
    out = (
        Path(args.out)
        if args.out
        else ROOT / "benchmarks" / "results" / ("latest" if args.quick else "") / f"fewstep{suffix}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "fewstep",
        "machine": machine(),
        "n": n,
        "seeds": seeds,
        "nfes": list(nfes),
        "results": results,
        "markdown": text,
    }
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    figs = out.parent if args.quick else ROOT / "docs" / "figures"
    plot_curves(results, figs / f"fewstep{suffix}.png")
    plot_scatter(results, figs / f"fewstep_scatter{suffix}.png", pretrained=args.pretrained)
    print(f"wrote {out}, {figs / f'fewstep{suffix}.png'}, {figs / f'fewstep_scatter{suffix}.png'}")


if __name__ == "__main__":
    main()
