"""``diffdensity analyze``: the first paper's analyses (diffdensity.analysis), JSON + figures."""
from __future__ import annotations

from pathlib import Path

import click

from . import main
from ._common import is_adaptive, DIVERGENCES, solver_option


def _analysis_common(f):
    """--model, --n, --seed, --out, the log-density settings and --no-progress for every `analyze` command."""
    opts = [
        click.option("--n", "n", type=int, default=32, help="number of samples / held-out images"),
        click.option("--seed", type=int, default=0),
        click.option("--out", type=click.Path(), default=None, help="output folder (default: analysis_<name>)"),
        click.option("--logp-divergence", type=click.Choice(DIVERGENCES), default="hutchinson",
                     help="divergence of the PF-ODE encoder that scores finished samples"),
        click.option("--logp-probes", type=click.IntRange(min=1), default=4,
                     help="Hutchinson probes (per quadrature node with an adaptive solver)"),
        solver_option("--logp-solver", default="dopri5"),
        click.option("--logp-steps", type=click.IntRange(min=1), default=None,
                     help="steps of a fixed-step --logp-solver (default 64)"),
        click.option("--logp-nodes", type=click.IntRange(min=2), default=64,
                     help="quadrature nodes of the encoder's divergence integral (adaptive solver; math.md §I.4)"),
        click.option("--no-progress", "progress", is_flag=True, flag_value=False, default=None),
        click.option("--device", default="cpu", expose_value=False, help="cpu | cuda | cuda:N",
                     callback=lambda ctx, param, value: ctx.meta.__setitem__("device", value)),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _device() -> str:
    return click.get_current_context().meta.get("device", "cpu")


def _analysis_setup(model, n, seed, logp_divergence, logp_probes, logp_solver, logp_steps, logp_nodes):
    """(loaded model, seeded generator, log-density settings) of one analysis."""
    import torch

    from ..io import load
    from ._common import torch_generator

    torch.manual_seed(seed)
    m = load(model, device=_device())
    kw = {"divergence": logp_divergence, "solver": logp_solver}
    if is_adaptive(logp_solver):
        kw.update({"nodes": logp_nodes} if logp_divergence == "hutchinson" else {})
    else:
        kw["steps"] = logp_steps or 64
    if logp_divergence == "hutchinson":
        kw["n_probes"] = logp_probes
    if n < 1:
        raise click.UsageError(f"--n {n}: need at least one sample.")
    return m, torch_generator(seed, _device()), kw


def _done(out, names):
    click.echo("wrote " + ", ".join(str(Path(out) / n) for n in names))


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


@main.group("analyze")
def analyze():
    """The first paper's analyses (high-density samples, PNG size, blur, SDE vs ODE log p); JSON + figures."""


@analyze.command("threshold")
@click.option("--model", default="digits8", help="a shipped model name or a model folder")
@click.option("--thresholds", default="8,6,4,2,0", help="comma-separated λ thresholds")
@click.option("--steps", type=int, default=256, help="sampler steps (split between the legs)")
@click.option("--first", type=click.Choice(["ode", "sde"]), default="ode")
@_analysis_common
def analyze_threshold(model, thresholds, steps, first, n, seed, out, progress, **logp):
    """Mean/spread of log p of high-density samples per threshold beside PF-ODE and SDE samples (same latents).

    Example: diffdensity analyze threshold --model digits8 --thresholds 8,4,0 --n 16 --out an_thr
    """
    from ..analysis import threshold_sweep
    from ..data.loading import prior_latents

    m, g, kw = _analysis_setup(model, n, seed, **logp)
    out = out or "analysis_threshold"
    res = threshold_sweep(m, prior_latents(m, n, g), _floats(thresholds), steps=steps, first=first,
                          log_prob_kw=kw, generator=g, out=out, progress=progress)
    for t in res["thresholds"]:
        r = res["hd"][f"{t:g}"]
        click.echo(f"λ_thr={t:g}: log p {r['mean']:.2f} ± {r['sem']:.2f} (std {r['std']:.2f})")
    for k in ("pf_ode", "sde"):
        click.echo(f"{k}: log p {res[k]['mean']:.2f} ± {res[k]['sem']:.2f} (std {res[k]['std']:.2f})")
    _done(out, ["threshold_sweep.json", "threshold_sweep.png", "threshold_grid.png"])


@analyze.command("png")
@click.option("--model", default="digits8")
@click.option("--steps", type=int, default=256, help="PF-ODE sampler steps")
@click.option("--level", type=int, default=9, help="PNG / zlib compression level")
@_analysis_common
def analyze_png(model, steps, level, n, seed, out, progress, **logp):
    """log p versus PNG and zlib size of PF-ODE samples and held-out images (Pearson, Spearman).

    Example: diffdensity analyze png --model digits8 --n 32 --out an_png
    """
    from ..analysis import compression_vs_logp
    from ..data.loading import held_out, prior_latents
    from ..sampling import sample

    m, g, kw = _analysis_setup(model, n, seed, **logp)
    out = out or "analysis_png"
    samples = sample(m, prior_latents(m, n, g), "ode", steps, progress=progress).x
    sets = {"samples": samples, "held-out": held_out(m, n, _device())}
    res = compression_vs_logp(m, sets, level=level, log_prob_kw=kw, generator=g, out=out, progress=progress)
    for name, r in {**res["sets"], "pooled": res["pooled"]}.items():
        c, z = r["logp_vs_png"], r["logp_vs_zlib"]
        ci = "" if "spearman_ci" not in c else " [{:.2f}, {:.2f}]".format(*c["spearman_ci"])
        click.echo(f"{name}: log p vs PNG Pearson {c['pearson']:.3f} Spearman {c['spearman']:.3f}{ci}; "
                   f"vs zlib Pearson {z['pearson']:.3f} Spearman {z['spearman']:.3f}")
        if r.get("median_stderr") is not None:
            click.echo(f"  per-image log p s.e. (median) {r['median_stderr']:.2f}; pairs of images resolved beyond "
                       f"2 s.e.: {r['resolved_pairs']:.0%}")
    _done(out, ["compression.json", "compression.png"])


@analyze.command("blur")
@click.option("--model", default="digits8")
@click.option("--sigmas", default="0,0.25,0.5,0.75,1,1.5,2", help="comma-separated blur stds in pixels")
@_analysis_common
def analyze_blur(model, sigmas, n, seed, out, progress, **logp):
    """log p of held-out images under growing Gaussian blur: one curve per image and the mean.

    Example: diffdensity analyze blur --model patches16 --sigmas 0,0.5,1,2 --n 8 --out an_blur
    """
    from ..analysis import blur_curve
    from ..data.loading import held_out

    m, g, kw = _analysis_setup(model, n, seed, **logp)
    out = out or "analysis_blur"
    res = blur_curve(m, held_out(m, n, _device()), _floats(sigmas), log_prob_kw=kw, generator=g, out=out,
                     progress=progress)
    se = res["stderr"]
    for i, (s, mu) in enumerate(zip(res["sigmas"], res["mean"])):
        per = "" if se is None else f"; per-image s.e. (median) {sorted(se[i])[len(se[i]) // 2]:.2f}"
        click.echo(f"σ={s:g}: mean log p {mu:.2f} ± {res['std'][i] / max(1, res['n']) ** 0.5:.2f}{per}")
    click.echo(f"curves that never fall by a step resolved beyond 2 s.e.: {res['monotone_fraction']:.0%} "
               f"(steps resolved: {res['resolved_steps']:.0%}; never rise so: {res['falling_fraction']:.0%})")
    _done(out, ["blur.json", "blur.png"])


@analyze.command("ode-sde")
@click.option("--model", "models", multiple=True, default=("digits8", "digits8-quality"), show_default=True,
              help="repeat for several models")
@click.option("--steps", type=int, default=1024, help="reverse-SDE steps")
@_analysis_common
def analyze_ode_sde(models, steps, n, seed, out, progress, **logp):
    """SDE-tracked versus PF-ODE log p of the same samples, per model (the paper's Fig. 4).

    Example: diffdensity analyze ode-sde --model digits8 --model digits8-quality --n 16 --out an_fig4
    """
    from ..analysis import ode_vs_sde
    from ..data.loading import prior_latents
    from ._common import torch_generator

    loaded = {}
    for name in models:
        loaded[name], _, kw = _analysis_setup(name, n, seed, **logp)
    g = torch_generator(seed)
    x_T = prior_latents(next(iter(loaded.values())), n, g)
    out = out or "analysis_ode_sde"
    res = ode_vs_sde(loaded, x_T, steps=steps, log_prob_kw=kw, generator=g, out=out, progress=progress)
    for name, r in res["models"].items():
        click.echo(f"{name}: tracked {r['sde_tracked']['mean']:.2f}, PF-ODE {r['pf_ode']['mean']:.2f}, "
                   f"gap {r['gap']['mean']:.2f} ± {r['gap']['sem']:.2f} nats")
    _done(out, ["ode_sde.json", "ode_sde.png"])
