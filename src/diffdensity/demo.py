"""The main job (`make demo`): every capability on the shipped models, small enough for a 2-core CPU, written as
analysis folders (JSON + PNG each) and one self-contained HTML report (``<out>/report/index.html``).

Panels: the exact mixture (SDE tracking against the closed form); high-density samples per threshold beside PF-ODE
and SDE samples; log p versus PNG size; the blur curve; SDE-tracked versus PF-ODE log p for both digits models;
density- and prior-guidance sweeps; few-step distributional sampling against its regression baseline; held-out
bits/dim. Each panel is optional in the sense that a missing capability or shipped model is reported, not fatal.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor

from ._checks import NonFiniteError
from ._io_utils import atomic_write, write_json
from .likelihood import log_prob
from .oracle import GaussianMixture
from .sampling import sample_sde
from .schedules import VP

__all__ = ["run_demo", "DEMO_SETTINGS"]

# log p of finished digits: Heun on 32 steps with 4 Hutchinson probes (≈ 0.1 bits/dim from dopri5 on digits8)
DEMO_LOGP = {"divergence": "hutchinson", "n_probes": 4, "solver": "heun", "steps": 32}
DEMO_SETTINGS: dict[str, dict] = {
    "full": {"n": 24, "steps": 192, "mixture_n": 1000, "mixture_steps": 512, "n_test": 64,
             "thresholds": (8.0, 6.0, 4.0, 2.0, 0.0), "blur_n": 8, "q": (0.3, 0.4, 0.5, 0.6), "nfe": (1, 2, 4, 8, 32),
             "mmd_n": 1024},
    "quick": {"n": 8, "steps": 32, "mixture_n": 256, "mixture_steps": 128, "n_test": 16, "thresholds": (8.0, 4.0, 0.0),
              "blur_n": 4, "q": (0.3, 0.5, 0.6), "nfe": (1, 4), "mmd_n": 256},
}


def _log(msg):
    print(msg, flush=True)


def _mixture(out: Path, n: int, steps: int, seed: int) -> dict:
    """Reverse-SDE samples of an 8-component ring with log p tracked by both trackers, against the closed form."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    gm = GaussianMixture(2.0 * torch.stack([angles.cos(), angles.sin()], 1), torch.full((8,), 0.25, dtype=torch.float64))
    sch = VP()
    m = gm.diffused(sch)
    prior = lambda z: m.log_prob(z, sch.lambda_min)  # noqa: E731
    x_T = m.sample(n, sch.lambda_min, generator=torch.Generator().manual_seed(seed))
    res: dict
    res, best = {"analysis": "mixture", "n": n, "steps": steps}, None
    for tracker in ("corrected", "em"):
        smp = sample_sde(m, x_T, steps=steps, tracker=tracker, prior=prior, progress=False,
                         generator=torch.Generator().manual_seed(seed + 1))
        assert smp.logp is not None  # sample_sde tracks log p
        err = smp.logp - m.log_prob(smp.x, sch.lambda_max)
        res[tracker] = {"mean_error": err.mean().item(), "sem": (err.std() / math.sqrt(n)).item(),
                        "mean_abs_error": err.abs().mean().item(), "nfe": smp.nfe}
        best = smp if tracker == "corrected" else best
    assert best is not None and best.logp is not None  # the corrected tracker ran
    k = min(n, 256)
    lp, nfe = log_prob(m, best.x[:k], divergence="exact", prior=prior, return_nfe=True)
    res["pf_ode_log_prob"] = {"mean_abs_error": (lp - m.log_prob(best.x[:k], sch.lambda_max)).abs().mean().item(),
                              "nfe": nfe, "n": k}
    write_json(out / "mixture.json", res)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    sc = ax.scatter(best.x[:, 0].numpy(), best.x[:, 1].numpy(), c=best.logp.numpy(), s=4, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="tracked log p (nats)")
    ax.set_aspect("equal")
    ax.set_title("reverse-SDE samples, corrected tracker")
    fig.tight_layout()
    atomic_write(out / "mixture_sde_logp.png", lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    _log(f"  corrected tracker |err| {res['corrected']['mean_abs_error']:.3f} nats vs the authors' rule "
         f"{res['em']['mean_abs_error']:.3f}; PF-ODE log_prob |err| {res['pf_ode_log_prob']['mean_abs_error']:.1e}")
    return res


def _held_out_images(model) -> Tensor:
    """The held-out split (integers) of the data set the model was trained on, as its config names it."""
    from .data import load_dataset

    cfg, tr = getattr(model, "config", {}) or {}, getattr(model, "transform", None)
    if not cfg.get("dataset") or tr is None:
        raise ValueError("the demo's score-model panels need a model trained on a data set (its config names none); "
                         "pass a shipped image model (`diffdensity models`) or a run folder of `diffdensity train`.")
    if len(tr.model_shape) != 3 or tr.levels is None:
        raise ValueError(f"the demo's panels (PNG size, blur, bits/dim) need an image model with integer pixel levels; "
                         f"this one models {cfg['dataset']!r} of shape {tuple(tr.model_shape)} (levels {tr.levels}). "
                         "Pass an image model such as digits8 or patches16.")
    root = cfg.get("root") or (cfg.get("training") or {}).get("root")  # a folder data set's root, saved with the run
    return load_dataset(cfg["dataset"], root=root, **cfg.get("dataset_kwargs", {})).test


def _score_models(name: str, model, device) -> dict:
    """The model under study, and for the shipped digits8 also its quality-weighted twin (the paper's Fig. 4 pair)."""
    from .io import load

    models = {name: model}
    if name == "digits8":
        models["digits8-quality"] = load("digits8-quality", device=device)
    return models


def _digits_panels(out: Path, cfg: dict, seed: int, name: str, model, test: Tensor, device=None) -> dict:
    """High-density sampling, PNG size, blur, SDE vs ODE and held-out bits/dim of one score model (loaded, with its
    held-out images ``test``)."""
    from .analysis import blur_curve, compression_vs_logp, ode_vs_sde, threshold_sweep

    models = _score_models(name, model, device)
    g = lambda k: torch.Generator().manual_seed(seed + k)  # noqa: E731  (CPU generators drive any device)
    x_T = model.schedule.sample_prior((cfg["n"], *model.transform.model_shape), generator=g(0), device=device)
    res = {}
    _log("  high-density samples per threshold (Algorithm 1)")
    sweep = threshold_sweep(model, x_T, cfg["thresholds"], steps=cfg["steps"], log_prob_kw=DEMO_LOGP,
                            generator=g(1), out=out / "threshold", progress=False)
    res["threshold"] = {k: v["mean"] for k, v in sweep["hd"].items()} | {"pf_ode": sweep["pf_ode"]["mean"],
                                                                       "sde": sweep["sde"]["mean"]}
    _labelled_grid(out, model, sweep)
    _log("  log p versus PNG size")
    held = model.transform.forward(test[:cfg["n"]].double() + 0.5).float().to(x_T.device)
    comp = compression_vs_logp(model, {"samples": sweep["samples"]["pf_ode"], "held-out": held},
                               logp={"samples": torch.tensor(sweep["pf_ode"]["logp"])}, log_prob_kw=DEMO_LOGP,
                               generator=g(2), out=out / "png", progress=False)
    res["png"] = comp["pooled"]
    _log("  blur")
    blur = blur_curve(model, held[:cfg["blur_n"]], sigmas=(0.0, 0.5, 1.0, 1.5), log_prob_kw=DEMO_LOGP, generator=g(3),
                      out=out / "blur", progress=False)
    res["blur"] = {"mean": blur["mean"]}
    _log("  SDE-tracked versus PF-ODE log p (Fig. 4)")
    fig4 = ode_vs_sde(models, x_T, steps=2 * cfg["steps"],
                      log_prob_kw=DEMO_LOGP, generator=g(4), out=out / "fig4", progress=False)
    res["fig4"] = {k: v["gap"] for k, v in fig4["models"].items()}
    _log("  held-out bits/dim")
    from .likelihood import bits_per_dim

    t0 = time.perf_counter()
    bpd = bits_per_dim(model, test[:cfg["n_test"]].to(x_T.device), levels=None, generator=g(5), solver="heun",
                       steps=64, divergence="hutchinson", n_probes=4).cpu()
    lik = {"analysis": "likelihood", "title": f"Held-out bits per dimension of {name}", "model": name,
           "n": cfg["n_test"], "bits_per_dim": bpd.mean().item(),
           "sem": (bpd.std() / math.sqrt(bpd.numel())).item(), "solver": "heun", "steps": 64,
           "divergence": "hutchinson", "n_probes": 4, "seconds": time.perf_counter() - t0}
    if name == "digits8":
        lik["model_card"] = "1.748 ± 0.013 (dopri5 1e-5, all 360 held-out digits)"
    write_json(out / "likelihood" / "likelihood.json", lik)
    res["likelihood"] = lik
    return res


def _optional(name: str, fn, *args):
    """Run a panel; a capability that is missing is reported in the summary rather than stopping the demo."""
    try:
        return fn(*args)
    except (ImportError, AttributeError, FileNotFoundError, KeyError) as e:
        _log(f"  {name}: skipped ({type(e).__name__}: {e})")
        return {"skipped": f"{type(e).__name__}: {e}"}
    except NonFiniteError as e:  # a user's model that diverges in one panel: report it, show the other panels
        _log(f"  {name}: failed ({e})")
        return {"failed": str(e)}


def _run_panel(out: Path, model: str, score_model) -> bool:
    """For a run folder: its configuration, training-loss curve (from log.jsonl) and model card (its metrics) as the
    report's first panel; False for a shipped model."""
    import json

    folder = Path(model)
    if not (folder.is_dir() and (folder / "log.jsonl").is_file()):
        return False
    cfg = dict(getattr(score_model, "config", {}) or {})
    records = [json.loads(ln) for ln in (folder / "log.jsonl").read_text().splitlines() if ln.strip()]
    loss = [(r["step"], r["loss_per_dim"]) for r in records if "loss_per_dim" in r and "step" in r]
    panel = {"analysis": "run", "title": f"The model: {model}", "description":
             "The run's configuration (as saved with it), its training loss per dimension and its model card "
             "(the metrics of its last evaluation, if any).", "configuration": cfg.get("training", {}),
             "dataset": cfg.get("dataset"), "dataset_kwargs": cfg.get("dataset_kwargs", {}),
             "model_card": cfg.get("metrics", "none recorded (train with --eval-every to record one)"),
             "loss_steps": len(loss), "final_loss_per_dim": loss[-1][1] if loss else None}
    write_json(out / "run" / "run.json", panel)
    if loss:
        from .analysis.common import figure, save_figure

        fig, ax = figure(figsize=(5, 3))
        ax.plot([s for s, _ in loss], [v for _, v in loss], lw=1)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss per dimension")
        save_figure(fig, out / "run", "loss.png")
    return True


def _labelled_grid(out: Path, model, sweep: dict, k: int = 8, scale: int = 8) -> None:
    """The threshold panel's sample rows, each image upscaled by ``scale`` (nearest neighbour) with its log p under
    it; replaces threshold_grid.png."""
    from PIL import Image, ImageDraw

    from .analysis import to_uint8_images

    rows = {**{f"thr {t}": t for t in sweep["hd"]}, "PF-ODE": "pf_ode", "SDE": "sde"}  # (no λ glyph in PIL's font)
    tiles = []
    for label, key in rows.items():
        x = sweep["samples"]["hd " + key if key in sweep["hd"] else key][:k]
        lp = (sweep["hd"][key] if key in sweep["hd"] else sweep[key])["logp"][:k]
        tiles.append((label, to_uint8_images(model, x), lp))
    h, w = tiles[0][1].shape[1:3]
    cw, ch, lw = w * scale + 6, h * scale + 18, 64
    canvas = Image.new("RGB", (lw + k * cw, len(tiles) * ch), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, imgs, lp) in enumerate(tiles):
        draw.text((2, i * ch + ch // 2 - 6), label, fill="black")
        for j, (im, v) in enumerate(zip(imgs, lp)):
            tile = Image.fromarray(im).convert("RGB").resize((w * scale, h * scale), Image.Resampling.NEAREST)
            canvas.paste(tile, (lw + j * cw, i * ch))
            draw.text((lw + j * cw + 2, i * ch + h * scale + 2), f"{v:.0f}", fill="black")
    atomic_write(out / "threshold" / "threshold_grid.png", lambda tmp: canvas.save(tmp, format="PNG"))


def run_demo(out="demo_out", quick: bool = False, seed: int = 0, model: str = "digits8", device=None,
             others: bool = True) -> dict:
    """Run the demo on ``model`` (a shipped name or a run folder, on ``device``) into ``out`` and build its report;
    ``others``: also the panels of other models (exact mixture, shipped distributional pair), reported apart."""
    from . import __version__
    from .io import _check_device, load

    device = _check_device(device) or torch.device("cpu")
    score_model = load(model, device=device)  # an unknown name or a model without data fails before any work
    test = _held_out_images(score_model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = DEMO_SETTINGS["quick" if quick else "full"]
    t0 = time.perf_counter()
    summary = {"quick": quick, "seed": seed, "model": model, "device": str(device), "version": __version__,
               "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}
    is_run = _run_panel(out, model, score_model)
    if others:
        _log("[1/4] the exact Gaussian mixture")
        summary["mixture"] = _mixture(out / "mixture", cfg["mixture_n"], cfg["mixture_steps"], seed)
    _log(f"[2/4] {model}: high-density sampling, PNG size, blur, SDE vs ODE, bits/dim")
    summary[model] = _optional(model, _digits_panels, out, cfg, seed, model, score_model, test, device)
    _log("[3/4] density and prior guidance")
    summary["guidance"] = _optional("guidance", _guidance, out / "guidance", cfg, seed, score_model, device)
    if others:
        _log("[4/4] few-step distributional sampling")
        summary["distributional"] = _optional("distributional", _distributional, out / "distributional", cfg, seed,
                                              device)
    summary["seconds"] = time.perf_counter() - t0
    write_json(out / "summary.json", summary)
    index = _report(out, summary, is_run)
    _log(f"report: {index}")
    return summary


def _report(out: Path, summary: dict, is_run: bool) -> Path:
    """The demo's report: the model's own panels and findings first, other models' panels after."""
    from .report import build_report

    names = ("run",) * is_run + ("threshold", "png", "blur", "fig4", "guidance", "likelihood")
    mine = [out / k for k in names if (out / k).is_dir()]
    others = [p for p in (out / k for k in ("mixture", "distributional")) if p.is_dir()]
    model = summary["model"]
    intro = (f"Generated by `diffdensity demo` (version {summary['version']}, model {model}, seed {summary['seed']}"
             f"{', quick' if summary['quick'] else ''}, device {summary['device']}) in {summary['seconds']:.0f} s on "
             "this machine. Each finding below is the papers' claim judged on this model's data: it holds, does not "
             "hold, or is within noise (the effect is within two standard errors of zero).")
    return build_report(mine, out / "report", title=f"diffdensity demo: {model}", intro=intro, model=model,
                        others=others)


def _guidance(out: Path, cfg: dict, seed: int, model, device=None) -> dict:
    """Density beside prior guidance on the (loaded) score model (the second paper's q sweep)."""
    from .analysis import guidance_sweep

    x_T = model.schedule.sample_prior((cfg["n"], *model.transform.model_shape), device=device,
                                      generator=torch.Generator().manual_seed(seed + 10))
    res = guidance_sweep(model, x_T, cfg["q"], steps=max(16, cfg["steps"] // 2), log_prob_kw=DEMO_LOGP,
                         generator=torch.Generator().manual_seed(seed + 11), out=out, progress=False)
    return {kind: {f"{r['q']:g}": r.get("mean", "infeasible") for r in rows} for kind, rows in res["results"].items()}


def _distributional(out: Path, cfg: dict, seed: int, device=None) -> dict:
    """The shipped checkerboard pair in few steps: fraction on the squares and MMD² at 0.05 × the range to held-out
    points (De Bortoli et al. 2025)."""
    from .data import load_dataset
    from .distributional.experiments import nfe_sweep, write_nfe_report
    from .io import load

    models = {"distributional": load("checkerboard-distributional", device=device),
              "regression": load("checkerboard-regression", device=device)}
    ref = load_dataset("checkerboard").test_model_space(generator=torch.Generator().manual_seed(seed + 20))
    res = nfe_sweep(models, ref[:cfg["mmd_n"]], nfes=cfg["nfe"], n=cfg["mmd_n"], seed=seed, progress=False,
                    dataset="checkerboard")
    res["analysis"] = "distributional"
    write_nfe_report(res, out, title="checkerboard")
    return {f"{r['model']} nfe {r['nfe']}": {"on_squares": r["on_squares"], "mmd2@0.05R": r["mmd2@0.05R"]}
            for r in res["rows"]}
