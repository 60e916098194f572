"""``diffdensity reproduce``: the reference repository's experiments (diffdensity.analysis.reproduce)."""
from __future__ import annotations

import click

from . import main

EXPERIMENTS = ("sampling", "guidance", "alignment")  # analysis.reproduce.EXPERIMENTS (that module imports torch)


@main.command("reproduce")
@click.argument("experiment", type=click.Choice([*EXPERIMENTS, "all"]), default="all")
@click.option("--model", default="digits8", help="a shipped score model or a model folder")
@click.option("--quick", is_flag=True, help="8 latents and short grids instead of the reference's 64/128 and 1023 steps")
@click.option("--n", "n", type=click.IntRange(min=3), default=None, help="latents per experiment (overrides)")
@click.option("--steps", type=click.IntRange(min=2), default=None,
              help="steps of every sampler and estimator (overrides; the stochastic sampler takes twice as many)")
@click.option("--seed", type=int, default=0)
@click.option("--device", default="cpu")
@click.option("--out", type=click.Path(), default="reproduce_out", help="folder for one JSON per experiment")
def reproduce_cmd(experiment, model, quick, n, steps, seed, device, out):
    """The reference's sampling.py, guidance.py and score_alignment.py __main__ blocks on MODEL: their lines, our values.

    Example: diffdensity reproduce --quick   (without --quick: the reference's sizes, slow on a CPU)
    """
    from ..analysis import reproduce
    from ..io import load

    m = load(model, device=device)
    todo = EXPERIMENTS if experiment == "all" else (experiment,)
    reproduce(m, todo, quick=quick, n=n, steps=steps, seed=seed, out=out, echo=click.echo, device=device)
    click.echo(f"-> {out}")
