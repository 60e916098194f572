"""``diffdensity sample``: any registered sampler, run through diffdensity.sampling.sample."""
from __future__ import annotations

import json

import click

from . import main
from ._common import (COUNT, DEVICE, DIVERGENCES, FINITE, PIPELINE_PARAMS, QUANTILE, SEED, UNIT, csv, default_steps,
                      method_choice, model_arg, pipeline_options, resolve_model, solver_option)

# sampler option -> the click parameter holding it
_OPTION_PARAMS = {"track_logp": "track", "tracker": "tracker", "solver": "solver", "divergence": "divergence",
                  "n_probes": "n_probes",
                  "threshold": "threshold", "first": "first", "q": "q", "noise": "noise", "churn": "churn"}
_RECORDED = ("threshold", "first", "q", "noise", "n_probes")  # written to summary.json where they apply


def sampler_options(ctx, method: str) -> dict:
    """The options of ``method`` (its registry entry's); one the user gave that does not apply is passed on too
    (the runner refuses it with a clear message), one left at its default is not."""
    from ..registry import SAMPLERS

    applies = SAMPLERS.get(method).meta.get("options", ())
    given = {p for p in _OPTION_PARAMS.values() if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE}
    return {k: ctx.params[p] for k, p in _OPTION_PARAMS.items() if k in applies or p in given}


def _summary(model, method, steps, n, nfe, seed, device, divergence, options) -> dict:
    from .. import __version__

    summary = {"model": model, "method": method, "steps": steps, "n": n, "nfe": nfe, "seed": seed,
               "solver": options.get("solver"), "tracker": options.get("tracker") if options.get("track_logp") else None,
               "divergence": divergence, "device": device, "version": __version__}
    summary.update({k: options[k] for k in _RECORDED if k in options})
    return summary


def _run(m, x_T, method, steps, g, options, qs):
    """One sampler run, or one per q of ``qs`` from the same latents (concatenated) -> (samples, labels or None)."""
    import torch

    from ..integrate import Samples
    from ..sampling import sample

    if not qs:
        return sample(m, x_T, method, steps, g, progress=None, **options), None
    runs = [sample(m, x_T, method, steps, g, progress=None, **{**options, "q": q}) for q in qs]
    logp = None if runs[0].logp is None else torch.cat([r.logp for r in runs])
    se = None if any(r.stderr is None for r in runs) else torch.cat([r.stderr for r in runs])
    labels = [f"q={q:g}" for q in qs for _ in range(x_T.shape[0])]
    return Samples(torch.cat([r.x for r in runs]), logp, sum(r.nfe for r in runs), stderr=se), labels


@main.command("sample")
@model_arg
@click.option("--method", type=method_choice(), default=None, help="sampler (default: sde)")
@click.option("--sampler", type=click.Choice(["sde", "ode"]), default=None, hidden=True, help="old name of --method")
@click.option("--n", "n", type=click.IntRange(min=1), default=64, help="number of samples")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="steps (default: the method's usual count)")
@click.option("--track-logp/--no-track-logp", "track", default=True, help="track log p along the sampler")
@click.option("--no-track", "track", flag_value=False, hidden=True)
@click.option("--tracker", type=click.Choice(["corrected", "em"]), default="corrected", help="SDE log-density tracker")
@solver_option(help="ODE solver")
@click.option("--divergence", type=click.Choice(DIVERGENCES), default="hutchinson",
              help="Δ log p estimator where a sampler needs it")
@click.option("--n-probes", type=COUNT, default=1,
              help="Hutchinson probes per evaluation (ode, hd, density-guided); 2 or more give log p a standard error")
@click.option("--threshold", type=FINITE, default=4.0, help="hd: the λ where the high-density ODE takes over")
@click.option("--first", type=click.Choice(["ode", "sde"]), default="ode", help="hd: the sampler before the threshold")
@click.option("--q", type=QUANTILE, default=0.6, help="guided samplers: the quantile (higher q, higher log p)")
@click.option("--qs", default="", callback=csv(float, 0, 1, allow_empty=True), help="guided samplers: several quantiles, comma-separated "
              "(e.g. 0.3,0.5,0.7): one run per q from the same latents")
@click.option("--noise", default="late", help="stochastic-density-guided: noise window preset (early | late)")
@click.option("--churn", type=UNIT, default=None, help="distributional / ddim: 0 = DDIM, 1 = DDPM posterior")
@click.option("--seed", type=SEED, default=0)
@click.option("--device", type=DEVICE, default="cpu", help="cpu | cuda | cuda:N")
@click.option("--out", type=click.Path(), default="samples", help="output folder (must be new or empty)")
@click.option("--overwrite", is_flag=True, help="write into an --out that already holds results")
@pipeline_options()
@click.pass_context
def sample_cmd(ctx, model, model_opt, method, sampler, n, steps, divergence, seed, device, out, overwrite, **_):
    """Sample a model with any of the library's samplers; writes samples.npz (model space `x`, data units `x_data`,
    `logp`, `nfe`), samples.png (a grid, highest log p first, each labelled) and summary.json; for a diffusers
    pipeline (folder or hub id, with --prompt) the samples are latents and images.npz / images.png hold them decoded.

    Example: diffdensity sample --model digits8 --method hd --threshold 4 --n 16 --out hd_samples
    """
    from .._io_utils import output_folder
    from ..adapters.pipelines import write_images
    from ..data.loading import load_model, prior_latents
    from ..sample_files import write_sample_files
    from ._common import torch_generator

    model = resolve_model(model, model_opt)
    method = method or sampler or "sde"
    steps = steps or default_steps(method)
    options = sampler_options(ctx, method)
    out = ctx.with_resource(output_folder(out, overwrite))  # claimed (locked) until the files are written
    pipe = {k: ctx.params[k] for k in PIPELINE_PARAMS if ctx.params[k] is not None}
    m = load_model(model, ctx.params["scheduler"], None, device, **pipe)
    g = torch_generator(seed, device)
    smp, labels = _run(m, prior_latents(m, n, g), method, steps, g, options, ctx.params["qs"])
    summary = {**_summary(model, method, steps, n, smp.nfe, seed, device, divergence, options), **pipe}
    summary.update({"qs": list(ctx.params["qs"])} if labels else {})
    summary.update(write_images(m, smp.x, smp.logp, out, labels))
    click.echo(json.dumps(write_sample_files(m, smp, out, summary), indent=2))
