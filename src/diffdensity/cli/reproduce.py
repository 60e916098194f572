"""``diffdensity reproduce``: the reference repository's experiments (diffdensity.analysis.reproduce)."""
from __future__ import annotations

import click

from . import main
from ._common import DEVICE, SEED

EXPERIMENTS = ("sampling", "guidance", "alignment")  # analysis.reproduce.EXPERIMENTS (that module imports torch)


@main.command("reproduce")
@click.argument("experiment", type=click.Choice([*EXPERIMENTS, "all"]), default="all")
@click.option("--model", default="digits8", help="a shipped score model or a model folder")
@click.option("--n", "n", type=click.IntRange(min=2), default=16, help="latents per experiment")
@click.option("--steps", type=click.IntRange(min=2), default=256, help="sampler / estimator steps")
@click.option("--seed", type=SEED, default=0)
@click.option("--device", type=DEVICE, default="cpu")
@click.option("--out", type=click.Path(), default="reproduce_out", help="folder for one JSON per experiment")
def reproduce_cmd(experiment, model, n, steps, seed, device, out):
    """The reference repository's three experiments (sampling.py, guidance.py, score_alignment.py of
    rafalkarczewski/diffusion-density) on MODEL, printing the same kind of summary lines.

    Example: diffdensity reproduce sampling --model digits8 --n 16 --steps 256
    """
    from ..analysis import reproduce
    from ..data.loading import prior_latents
    from ..io import load
    from ._common import torch_generator

    m = load(model, device=device)
    x_T = prior_latents(m, n, torch_generator(seed, device)).to(device)
    todo = EXPERIMENTS if experiment == "all" else (experiment,)
    reproduce(m, x_T, todo, steps=steps, seed=seed, out=out, echo=click.echo)
    click.echo(f"-> {out}")
