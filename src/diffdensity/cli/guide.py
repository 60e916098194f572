"""``diffdensity guide``: the q sweep of density beside prior guidance (diffdensity.analysis.guidance_sweep)."""
from __future__ import annotations

from pathlib import Path

import click

from . import main
from ._common import (COUNT, DEVICE, DIVERGENCES, SEED, claim_out, csv, model_arg, overwrite_option, pipeline_options,
                      resolve_model)


def echo_guidance(results: dict) -> None:
    """One line per sampler and q: the mean log p, or the feasible q of an infeasible one."""
    for kind, rows in results.items():
        for r in rows:
            if "mean" in r:
                click.echo(f"{kind} guidance with q={r['q']:g}; average logp: {r['mean']:.2f}")
            else:
                click.echo(f"{kind} guidance with q={r['q']:g}: infeasible (feasible q ≤ {r['feasible_q']:.4g})")


@main.command("guide")
@model_arg
@click.option("--q", "qs", default="0.3,0.4,0.5,0.6,0.7", callback=csv(float, 0, 1),
              help="log-density quantiles (higher q = higher log p, for prior and density guidance alike)")
@click.option("--n", "n", type=COUNT, default=32, help="samples per q (the same latents for every q)")
@click.option("--steps", type=COUNT, default=64, help="Euler steps of the guided samplers")
@click.option("--noise", type=click.Choice(["none", "early", "late"]), default="none",
              help="also run stochastic density guidance with this noise window (128 steps)")
@click.option("--eval-steps", type=COUNT, default=256, help="Euler steps of the PF-ODE encoder that evaluates log p")
@click.option("--divergence", type=click.Choice(DIVERGENCES), default="hutchinson",
              help="divergence of the log-p evaluation")
@click.option("--seed", type=SEED, default=0)
@click.option("--out", type=click.Path(), default="guide_out", help="output folder")
@overwrite_option
@click.option("--device", type=DEVICE, default="cpu", help="cpu | cuda | cuda:N")
@pipeline_options()
def guide_cmd(model, model_opt, device, qs, n, steps, noise, eval_steps, divergence, seed, out, prompt, negative_prompt,
              guidance_scale, scheduler):
    """q sweep of density guidance beside prior guidance (and optionally stochastic density guidance) on MODEL:
    per q a sample grid and the mean log p (model space, PF-ODE encoder); OUT/guidance.json, OUT/logp_vs_q.png and
    a grid per sampler.

    Example: diffdensity guide digits8 --q 0.3,0.5,0.6 --n 16 --out guide_out
    """
    from ..analysis import guidance_sweep
    from ..data.loading import load_model, prior_latents
    from ._common import torch_generator

    out = claim_out(out)
    m = load_model(resolve_model(model, model_opt), scheduler, None, device, prompt=prompt,
                   negative_prompt=negative_prompt, guidance_scale=guidance_scale)
    g = torch_generator(seed, device)
    res = guidance_sweep(m, prior_latents(m, n, g), qs, steps=steps, noise=None if noise == "none" else noise,
                         log_prob_kw={"divergence": divergence, "solver": "euler", "steps": eval_steps}, generator=g,
                         out=out)
    echo_guidance(res["results"])
    click.echo(f"-> {Path(out) / 'guidance.json'}")
