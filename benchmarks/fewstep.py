"""Few-step sampling: distributional generators (Algorithm 2) against the strongest ODE solvers on the score model.

For each data set and NFE in 1, 2, 3, 4, 6, 8, 16, 32, 3 seeds of samples are compared with held-out data by
metrics that see fine structure (distributional/quality.py):

* 2-D toys (4096 samples vs 4096 held-out points): the toy's task metric (checkerboard: fraction on the squares;
  8 Gaussians: fraction within 3σ of a mode and modes covered), the energy distance and the unbiased RBF MMD² at
  h = 0.05·R (R = the data's range; 0.1·R, 0.2·R, 0.5·R in the JSON);
* images (``digits``: 360 samples vs the 360 held-out digits; ``patches16``: 512 vs 512 held-out patches), each
  sample quantized to the data's levels as an image is (values outside the data range clipped): KID-style
  unbiased MMD² with the cubic kernel in pixels (``kid_pixels``) and in the features of a fixed seeded random conv
  net (``kid_conv``: 3×3 convs of 32/64/128 channels, strides 1/2/2, He-normal weights from seed 0, ReLU, global
  average pooling), over 4 disjoint sample sets — against the held-out split and (``…_train``) against as many
  training examples, the distribution the models learned: ``patches16``'s held-out patches come from other photos,
  and its training crops are themselves at KID 0.23 (pixels) from them, a floor every model shares.

Methods:

* ``distributional ε=0`` / ``ε=1``: ``<data>-distributional``, Algorithm 2 with churn 0 / 1, NFE steps;
* ``regression DDIM``: ``<data>-regression`` (same net, β = 2, interaction 0), Algorithm 2 with churn 0 (toys, digits);
* on the score model (``toy2d-<toy>``, ``digits8``, ``patches16``): ``dpmpp2m``, ``ab2`` (NFE steps) and ``heun``
  (NFE/2 steps, even NFE only) of the library, and diffusers' ``unipc2`` / ``unipc3`` (UniPC-2/3, bh2, NFE steps,
  through ``dd.adapters.sample_scheduler`` on the model's own ᾱ table).

Every method runs on each of its grids (bridge: spacing "t", "lambda", "quadratic", "cubic"; library solvers: grid kinds
"lambda", "t", "edm"; UniPC: λ-uniform or Karras σ) with seed 0; the grid with the lowest selection metric (toys:
MMD² at h = 0.05·R, the finest kernel, which sees both the fine structure and a collapse; images: ``kid_pixels_train``)
is kept and run with the other seeds. Cells are mean ± standard error over the seeds. The strongest baseline per
NFE is the non-distributional method with the lowest selection metric.

    python benchmarks/fewstep.py            # the full table (benchmarks/results/fewstep.json, docs/figures/fewstep*.png)
    python benchmarks/fewstep.py --quick    # NFE 1, 2, 4, 8, 1 seed, 1024 samples; writes to benchmarks/results/latest/
    python benchmarks/fewstep.py --datasets digits --out benchmarks/results/fewstep_digits.json       # and patches16
"""

from __future__ import annotations

import argparse
import functools
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
from diffdensity.distributional.quality import kid, structure_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NFES = (1, 2, 3, 4, 6, 8, 16, 32)
TASK = {"checkerboard": "on_squares", "8gaussians": "within_3sigma", "digits": "kid_conv", "patches16": "kid_conv"}
SCORE_MODEL = {"digits": "digits8", "patches16": "patches16"}  # toys: toy2d-<toy>
IMAGE_N = {"digits": 360, "patches16": 512}  # samples per seed (digits: the whole held-out split)
SOLVER_GRIDS = ("lambda", "t", "edm")
UNIPC_GRIDS = ("lambda", "karras")
SPACINGS = ("t", "lambda", "quadratic", "cubic")
DISTRIBUTIONAL = ("distributional ε=0", "distributional ε=1")
IMAGE_KEYS = ("kid_pixels_train", "kid_conv_train", "kid_pixels", "kid_conv")


def select_key(ds: str) -> str:
    """The metric that picks each method's grid and the strongest baseline (lower is better)."""
    return "kid_pixels_train" if ds in IMAGE_N else "mmd2@0.05R"


def methods(ds: str, pretrained: str | None = None) -> dict:
    """name -> (model, kind, churn, grids, steps(nfe) or None when the NFE is not reachable)."""
    where = (lambda n: str(Path(pretrained) / n)) if pretrained else (lambda n: n)
    gen, score = dd.load(where(f"{ds}-distributional")), dd.load(SCORE_MODEL.get(ds, f"toy2d-{ds}"))
    same = lambda k: k  # noqa: E731
    half = lambda k: k // 2 if k % 2 == 0 else None  # noqa: E731
    out = {
        "distributional ε=0": (gen, "bridge", 0.0, SPACINGS, same),
        "distributional ε=1": (gen, "bridge", 1.0, SPACINGS, same),
    }
    if ds != "patches16":  # no regression twin for patches16 (its score-model twin is the shipped patches16)
        out["regression DDIM"] = (dd.load(where(f"{ds}-regression")), "bridge", 0.0, SPACINGS, same)
    out.update(
        {
            "dpmpp2m": (score, "dpmpp2m", None, SOLVER_GRIDS, same),
            "ab2": (score, "ab2", None, SOLVER_GRIDS, same),
            "heun": (score, "heun", None, SOLVER_GRIDS, half),
            "unipc2": (score, "unipc2", None, UNIPC_GRIDS, same),
            "unipc3": (score, "unipc3", None, UNIPC_GRIDS, same),
        }
    )
    return out


def _unipc(model, x_T, kind: str, grid: str, steps: int):
    import warnings

    from diffusers import UniPCMultistepScheduler

    from diffdensity.adapters import sample_scheduler, scheduler_for

    sched = scheduler_for(
        model,
        UniPCMultistepScheduler,
        solver_order=int(kind[-1]),
        final_sigmas_type="sigma_min",
        use_karras_sigmas=grid == "karras",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2's copy keyword inside diffusers
        return sample_scheduler(model, x_T, sched, steps)


def draw(model, kind: str, churn, grid: str, steps: int, n: int, seed: int, shape=(2,)):
    """(samples (n, *shape), measured NFE, seconds) for one method, grid, step count and seed."""
    g = torch.Generator().manual_seed(seed)
    x_T = model.schedule.sample_prior((n, *shape), generator=g, dtype=torch.get_default_dtype())
    t0 = time.perf_counter()
    with torch.no_grad():
        if kind == "bridge":
            out = dd.sample_distributional(model, x_T, steps=steps, churn=churn, generator=g, spacing=grid)
        elif kind.startswith("unipc"):
            out = _unipc(model, x_T, kind, grid, steps)
        else:
            out = dd.sample_ode(model, x_T, steps=steps, solver=kind, grid=grid, progress=False)
    return out.x.detach(), int(out.nfe), time.perf_counter() - t0


def _summary(vals: list) -> dict:
    v = torch.tensor(vals, dtype=torch.float64)
    se = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "se": se}


@functools.lru_cache(maxsize=None)
def _transform(ds: str):
    return load_dataset(ds).transform


@functools.lru_cache(maxsize=None)
def _train_reference(ds: str, n: int):
    """n training examples (evenly spaced over the training split), the models' own data distribution."""
    train = load_dataset(ds).train_model_space()
    return train[torch.linspace(0, train.shape[0] - 1, n).long()]


def metrics(x, ref, ds: str) -> dict:
    """The data set's metrics of one sample set (means over 4 disjoint sets)."""
    if ds in IMAGE_N:  # as images: quantized to the data's levels (clipped) like the reference, then model space
        tr = _transform(ds)
        x = tr.forward(tr.inverse(x, round=True).to(torch.float64)).to(ref.dtype)
        train = _train_reference(ds, x.shape[0])
        return {
            "kid_pixels": kid(x, ref, "pixels")["mean"],
            "kid_conv": kid(x, ref, "random_conv")["mean"],
            "kid_pixels_train": kid(x, train, "pixels")["mean"],
            "kid_conv_train": kid(x, train, "random_conv")["mean"],
        }
    m = structure_metrics(x, ref, ds, sets=4)
    return {k: m[k]["mean"] for k in m if k != "bandwidths"}


def evaluate(model, kind, churn, grid, steps, ds, ref, n, seeds) -> dict:
    """Metrics (mean ± SE over seeds) of one method on one grid at one step count."""
    per, nfe, secs = [], 0, 0.0
    for seed in seeds:
        x, nfe, s = draw(model, kind, churn, grid, steps, n, seed, tuple(ref.shape[1:]))
        secs += s
        per.append(metrics(x, ref, ds))
    out = {k: _summary([p[k] for p in per]) for k in per[0]}
    out.update(grid=grid, steps=steps, nfe=nfe, us_per_sample=1e6 * secs / (n * len(seeds)))
    return out


def run_dataset(ds: str, nfes, n: int, seeds, pretrained=None) -> dict:
    """{method: {nfe: best-grid result, with "all_grids": {grid: {task, selection metric} on seed 0}}} for one data
    set: every grid on the first seed, the best one on all seeds."""
    n = min(n, IMAGE_N.get(ds, n))
    ref = load_dataset(ds).test_model_space()[:n]
    task, sel, res = TASK[ds], select_key(ds), {}
    for name, (model, kind, churn, grids, steps_of) in methods(ds, pretrained).items():
        res[name] = {}
        for k in nfes:
            steps = steps_of(k)
            if not steps:
                continue
            cands = {gr: evaluate(model, kind, churn, gr, steps, ds, ref, n, seeds[:1]) for gr in grids}
            best = min(cands, key=lambda gr: cands[gr][sel]["mean"])
            res[name][k] = {
                **(evaluate(model, kind, churn, best, steps, ds, ref, n, seeds) if len(seeds) > 1 else cands[best]),
                "all_grids": {gr: {task: c[task]["mean"], sel: c[sel]["mean"]} for gr, c in cands.items()},
            }
            r = res[name][k]
            print(
                f"{ds:>12} {name:>20} NFE {k:>2}: {task} {r[task]['mean']:.4g}, {sel} {r[sel]['mean']:.4g} ({best})",
                flush=True,
            )
    return res


def strongest_baseline(res: dict, k: int, ds: str):
    """(name, result) of the non-distributional method with the lowest selection metric at NFE k (None if none ran)."""
    cands = [(m, r[k]) for m, r in res.items() if m not in DISTRIBUTIONAL and k in r]
    return min(cands, key=lambda c: c[1][select_key(ds)]["mean"]) if cands else (None, None)


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
    strongest = [strongest_baseline(res, k, ds)[0] or "–" for k in nfes]
    lines.append("| strongest baseline | " + " | ".join(strongest) + " |")
    return "\n".join(lines)


def card_section(ds: str, res: dict, nfes, n: int, seeds) -> str:
    """The model card's "Few-step sample quality" section of ``<ds>-distributional`` from this run's results."""
    extra = ["modes_covered"] if ds == "8gaussians" else []
    keys = IMAGE_KEYS if ds in IMAGE_N else [TASK[ds], *extra, select_key(ds), "energy_distance"]
    lines = [
        "## Few-step sample quality",
        "",
        f"`python benchmarks/fewstep.py --datasets {ds}` ({len(seeds)} seeds × {n} samples against {n} held-out "
        + (
            "examples — and, `…_train`, as many training examples, samples quantized like images"
            if ds in IMAGE_N
            else "examples"
        )
        + "; mean ± SE over seeds; per NFE the bridge grid with the lowest "
        f"{select_key(ds)} on the first seed; the strongest baseline is the score-model solver or regression "
        "twin with the lowest one, on its best grid).",
        "",
        "| NFE | " + " | ".join(str(k) for k in nfes) + " |",
        "|---|" + "---|" * len(nfes),
    ]
    for name in DISTRIBUTIONAL:
        r = res[name]
        for key in keys:
            digits = 5 if key.startswith("kid") else 4 if key.startswith(("energy", "mmd")) else 3
            lines.append(f"| {name}: {key} | " + " | ".join(_cell(r.get(k), key, digits) for k in nfes) + " |")
        lines.append(f"| {name}: grid | " + " | ".join(r[k]["grid"] if k in r else "–" for k in nfes) + " |")
    best = [strongest_baseline(res, k, ds) for k in nfes]
    lines.append("| strongest baseline | " + " | ".join(b[0] or "–" for b in best) + " |")
    sel = select_key(ds)
    lines.append(
        f"| … its {sel} | " + " | ".join(_cell(b[1], sel, 5 if sel.startswith("kid") else 4) for b in best) + " |"
    )
    return "\n".join(lines) + "\n"


def write_card(ds: str, section: str) -> Path:
    """Replace the "## Few-step sample quality" section of the shipped model card (or append it)."""
    path = ROOT / "src" / "diffdensity" / "pretrained" / f"{ds}-distributional" / "README.md"
    text = path.read_text()
    start = text.find("## Few-step sample quality")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 3)
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.write_text(text)
    return path


def cards_from(path: Path) -> None:
    """Rewrite the model cards' few-step sections from a run's JSON (NFE keys back to integers)."""
    payload = json.loads(path.read_text())
    for ds, res in payload["results"].items():
        res = {m: {int(k): v for k, v in r.items()} for m, r in res.items()}
        n = min(payload["n"], IMAGE_N.get(ds, payload["n"]))
        print("wrote", write_card(ds, card_section(ds, res, payload["nfes"], n, payload["seeds"])))


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
        if ds in IMAGE_N:
            ax.set_yscale("log")
        else:
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
            name = min(DISTRIBUTIONAL, key=lambda m: res[m][k][select_key(ds)]["mean"])
            panels.append((name, k, res[name][k]))
        base, r4 = strongest_baseline(res, 4, ds)
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


def plot_image_grids(ds: str, res: dict, path: Path, n: int = 36, pretrained=None) -> None:
    """Rows: the better distributional churn and the strongest baseline; columns: NFE 1, 2, 4 (seed 0, best grid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffdensity.training.visual import image_grid

    meths, sel = methods(ds, pretrained), select_key(ds)
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4), squeeze=False)
    shape = tuple(load_dataset(ds).test_model_space().shape[1:])
    for j, k in enumerate((1, 2, 4)):
        dist = min(DISTRIBUTIONAL, key=lambda m: res[m][k][sel]["mean"])
        for i, name in enumerate((dist, strongest_baseline(res, k, ds)[0])):
            model, kind, churn, _, steps_of = meths[name]
            r = res[name][k]
            x = draw(model, kind, churn, r["grid"], steps_of(k), n, 0, shape)[0]
            tr = meths[DISTRIBUTIONAL[0]][0].transform
            axes[i][j].imshow(
                image_grid(tr.inverse(x, round=True).reshape(n, *shape), tr.levels).squeeze(), cmap="gray"
            )
            axes[i][j].set(xticks=[], yticks=[])
            axes[i][j].set_title(f"{name}, NFE {k} ({r['grid']})\n{sel} {r[sel]['mean']:.4f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="NFE 1, 2, 4, 8, one seed, 1024 samples")
    ap.add_argument("--datasets", default="checkerboard,8gaussians", help="toys and/or digits, patches16")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--pretrained", default=None, help="folder with <data>-distributional / -regression (default: shipped)"
    )
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/fewstep.json; --quick: latest/)")
    ap.add_argument("--write-cards", action="store_true", help="rewrite the shipped model cards' few-step sections")
    ap.add_argument("--cards-from", default=None, help="only rewrite the model cards from this JSON of an earlier run")
    args = ap.parse_args(argv)
    if args.cards_from:
        return cards_from(Path(args.cards_from))
    torch.set_num_threads(1)
    nfes, n, seeds = ((1, 2, 4, 8), 1024, [0]) if args.quick else (NFES, args.n, list(range(args.seeds)))
    results = {ds: run_dataset(ds, nfes, n, seeds, args.pretrained) for ds in args.datasets.split(",")}
    text = []
    for ds, res in results.items():
        keys = (
            list(IMAGE_KEYS)
            if ds in IMAGE_N
            else [TASK[ds]] + (["modes_covered"] if ds == "8gaussians" else []) + [select_key(ds), "energy_distance"]
        )
        for key in keys:
            text.append(
                markdown(
                    ds, res, nfes, key, 5 if key.startswith("kid") else 4 if key.startswith(("energy", "mmd")) else 3
                )
            )
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
    toys = {ds: r for ds, r in results.items() if ds not in IMAGE_N}
    tag = "" if toys else "_images"
    plot_curves(results, figs / f"fewstep{tag}{suffix}.png")
    if toys:
        plot_scatter(toys, figs / f"fewstep_scatter{suffix}.png", pretrained=args.pretrained)
    for ds in set(results) - set(toys):
        plot_image_grids(ds, results[ds], figs / f"fewstep_grids_{ds}{suffix}.png", pretrained=args.pretrained)
    if args.write_cards:
        for ds, res in results.items():
            print("wrote", write_card(ds, card_section(ds, res, nfes, min(n, IMAGE_N.get(ds, n)), seeds)))
    print(f"wrote {out} and figures in {figs}")


if __name__ == "__main__":
    main()
