"""``diffdensity align``: score alignment by Eq 12 and Eq 13 (diffdensity.analysis.alignment_study)."""
from __future__ import annotations

from pathlib import Path

import click

from . import main
from ._common import (COUNT, DEVICE, FINITE, SEED, claim_out, model_arg, overwrite_option, pipeline_options,
                      resolve_model)


@main.command("align")
@model_arg
@click.option("--n", "n", type=click.IntRange(min=2), default=128, help="number of latents (a correlation needs 2)")
@click.option("--lambda-target", type=FINITE, default=1.0, help="the target λ of the flow (the reference uses 1)")
@click.option("--steps", type=COUNT, default=1024, help="Euler steps of both estimators")
@click.option("--n-probes", type=COUNT, default=1, help="Hutchinson probes per step of Eq 13")
@click.option("--seed", type=SEED, default=0)
@click.option("--out", type=click.Path(), default="align_out", help="output folder")
@overwrite_option
@click.option("--device", type=DEVICE, default="cpu", help="cpu | cuda | cuda:N")
@pipeline_options()
def align_cmd(model, model_opt, device, n, lambda_target, steps, n_probes, seed, out, prompt, negative_prompt,
              guidance_scale, scheduler):
    """Score alignment of MODEL over N latents by Eq 12 (with the target score) and Eq 13 (without: Hutchinson),
    their correlation and the fraction of latents with SA > 0; OUT/summary.json, OUT/alignment.npz, OUT/alignment.png.

    Example: diffdensity align digits8 --n 64 --out align_out
    """
    from ..analysis import alignment_study
    from ..data.loading import load_model, prior_latents
    from ._common import torch_generator

    model = resolve_model(model, model_opt)
    out = claim_out(out)
    m = load_model(model, scheduler, None, device, prompt=prompt, negative_prompt=negative_prompt,
                   guidance_scale=guidance_scale)
    g = torch_generator(seed, device)
    s = alignment_study(m, prior_latents(m, n, g), lambda_target, steps, n_probes, generator=g, out=out,
                        meta={"model": model, "seed": seed})
    click.echo(f"Correlation of score alignment with and without score: {s['correlation']}")
    click.echo(f"Score alignment holds for {s['fraction_aligned']:.1%} of latents "
               f"(Eq 12; {s['fraction_aligned_eq13']:.1%} by Eq 13)")
    click.echo(f"-> {Path(out) / 'summary.json'}")
