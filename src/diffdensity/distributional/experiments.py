"""Experiments: the NFE sweep (sample quality vs number of steps), training sweeps, tables and plots.

:func:`nfe_sweep` draws ``n`` samples per model and step count with Algorithm 2 (generators) or the same bridge
with the Tweedie mean (score models, :func:`~diffdensity.sample_ddim`) and measures their RBF-MMD (median-heuristic
bandwidth of the held-out reference, one kernel for every row) and energy distance to held-out data.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from .metrics import median_bandwidth, sample_distances
from .quality import kernel_stats, range_bandwidths, toy_task_metrics
from .sampling import sample_ddim, sample_distributional

__all__ = ["NFES", "nfe_sweep", "write_nfe_report", "format_table", "plot_nfe", "draw_samples", "held_out_reference",
           "compare_models", "train_sweep", "save_samples"]

NFES = (1, 2, 4, 8, 16, 32)


def draw_samples(model, n: int, steps: int, churn: float = 1.0, generator=None, spacing: str = "t",
                 batch_size: int = 8192) -> Tensor:
    """n model-space samples in batches: Algorithm 2 for a generator, the mean bridge for a score model."""
    shape = tuple(model.transform.model_shape) if getattr(model, "transform", None) is not None else None
    if shape is None:
        raise ValueError("the model has no data transform; cannot tell the sample shape.")
    dev = next(model.parameters()).device if hasattr(model, "parameters") else torch.device("cpu")
    out = []
    for i in range(0, n, batch_size):
        x_T = model.schedule.sample_prior((min(batch_size, n - i), *shape), generator=generator,
                                          dtype=torch.get_default_dtype()).to(dev)
        if callable(getattr(model, "sample_x0", None)):
            x = sample_distributional(model, x_T, steps, churn, generator, spacing=spacing).x
        else:
            x = sample_ddim(model, x_T, steps, churn, generator, spacing=spacing).x
        out.append(x.detach().cpu())
    return torch.cat(out)


def nfe_sweep(models: dict, reference: Tensor, nfes=NFES, n: int = 4096, churn: float = 1.0, seed: int = 0,
              spacing: str = "t", progress: bool = True, dataset: str | None = None) -> dict:
    """{"rows": [{"model", "nfe", "mmd", "mmd2_unbiased", "energy_distance", "mmd2@0.05R", task metrics}],
    "bandwidth", ...} for each model (name -> model) and step count, against the held-out ``reference`` (model
    space); "mmd2@0.05R" is the unbiased MMD² at 0.05 × the reference's range (sees fine structure), the task
    metrics those of :func:`~.quality.toy_task_metrics` for ``dataset``."""
    ref = reference.reshape(reference.shape[0], -1).to(torch.float64)
    h, h_small = median_bandwidth(ref), range_bandwidths(ref, (0.05,))[0.05]
    rows = []
    todo = [(name, k) for name in models for k in nfes]
    it = todo
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(todo, desc="nfe sweep")
    for name, k in it:
        g = torch.Generator().manual_seed(seed)
        t0 = time.time()
        with torch.no_grad():
            x = draw_samples(models[name], n, k, churn, g, spacing)
        d = sample_distances(x, ref, h)
        rows.append({"model": name, "nfe": int(k), "mmd": d["mmd"], "mmd2_unbiased": d["mmd2_unbiased"],
                     "energy_distance": d["energy_distance"],
                     "mmd2@0.05R": kernel_stats(x, ref, {"h": h_small})["mmd2@h"],
                     **(toy_task_metrics(dataset, x) if dataset else {}), "seconds": round(time.time() - t0, 3)})
    return {"rows": rows, "bandwidth": h, "n": int(n), "n_reference": int(ref.shape[0]), "churn": float(churn),
            "spacing": spacing, "seed": int(seed), "kernel": "rbf, exp(-|x-y|^2/(2h^2)), h = median pairwise "
            "distance of the reference (median heuristic)", "mmd": "sqrt of the biased (V-statistic) MMD^2"}


def format_table(result: dict, metric: str = "mmd") -> str:
    """A markdown table: one row per model, one column per NFE."""
    rows = result["rows"]
    names = list(dict.fromkeys(r["model"] for r in rows))
    nfes = sorted({r["nfe"] for r in rows})
    val = {(r["model"], r["nfe"]): r[metric] for r in rows}
    lines = [f"| {metric} \\ NFE | " + " | ".join(str(k) for k in nfes) + " |",
             "|---|" + "---|" * len(nfes)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{val[(name, k)]:.4f}" for k in nfes) + " |")
    return "\n".join(lines)


def plot_nfe(results: dict, path, metric: str = "mmd") -> Path:
    """One panel per data set (``results``: title -> nfe_sweep result): metric vs NFE (log-log), one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results), 2.8), squeeze=False)
    for ax, (title, res) in zip(axes[0], results.items()):
        names = list(dict.fromkeys(r["model"] for r in res["rows"]))
        for name in names:
            rs = sorted((r for r in res["rows"] if r["model"] == name), key=lambda r: r["nfe"])
            ax.plot([r["nfe"] for r in rs], [r[metric] for r in rs], "o-", label=name, ms=3)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("NFE (steps)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric.upper())
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return path


def write_nfe_report(result: dict, out, title: str = "nfe sweep") -> dict:
    """Write OUT/nfe_sweep.json, OUT/nfe_sweep.md (MMD and energy-distance tables) and OUT/nfe_sweep.png."""
    from .._io_utils import atomic_write, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "nfe_sweep.json", result)
    md = (f"# {title}\n\n{format_table(result, 'mmd2@0.05R')}\n\n{format_table(result, 'mmd')}\n\n"
          f"{format_table(result, 'energy_distance')}\n")
    atomic_write(out / "nfe_sweep.md", lambda tmp: Path(tmp).write_text(md))
    plot_nfe({title: result}, out / "nfe_sweep.png")
    return {"json": out / "nfe_sweep.json", "md": out / "nfe_sweep.md", "png": out / "nfe_sweep.png"}


def held_out_reference(dataset: str, n: int, seed: int) -> Tensor:
    """The first ``n`` held-out points of ``dataset`` in model space (its test split, seeded dequantization)."""
    from ..data import load_dataset

    ds = load_dataset(dataset)
    return ds.test_model_space(generator=torch.Generator().manual_seed(int(seed)))[:n]


def compare_models(models: dict, dataset: str, nfes=NFES, n: int = 4096, churn: float = 1.0, seed: int = 0,
                   spacing: str = "t", out=None, title: str | None = None) -> dict:
    """:func:`nfe_sweep` of ``models`` (name -> model) against held-out ``dataset`` data (n points, seed + 1);
    with ``out`` also OUT/nfe_sweep.{json,md,png}."""
    res = nfe_sweep(models, held_out_reference(dataset, n, seed + 1), nfes, n, churn, seed, spacing)
    res["dataset"] = dataset
    if out is not None:
        write_nfe_report(res, out, title=title or dataset)
    return res


def train_sweep(base: dict, betas, interactions, root) -> dict:
    """Train one model per (β, interaction) into ROOT/beta<β>_int<λ> (TrainConfig fields ``base``); name -> run."""
    from ..training import TrainConfig, train

    runs = {}
    for b in betas:
        for lam in interactions:
            name = f"beta{b:g}_int{lam:g}"
            cfg = {**base, "beta": b, "interaction": lam, "out": str(Path(root) / name)}
            runs[name] = train(TrainConfig.from_dict(cfg))
    return runs


def save_samples(model, z: Tensor, out) -> list[Path]:
    """OUT/samples.npz (model space ``z``, data units ``x``) and, for a model of a known data set, OUT/samples.png."""
    from .._io_utils import write_npz
    from ..data import load_dataset
    from ..training.visual import save_samples_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_npz(out / "samples.npz", z=z.numpy(), x=model.transform.inverse(z).numpy())
    name = (getattr(model, "config", {}) or {}).get("dataset")
    written = [out / "samples.npz"]
    if name and save_samples_png(load_dataset(name), z, out / "samples.png"):
        written.insert(0, out / "samples.png")
    return written
