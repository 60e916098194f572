"""``diffdensity demo``: every capability on the shipped models, with an HTML report."""
from __future__ import annotations

import click

from . import main


@main.command("demo")
@click.option("--out", type=click.Path(), default="demo_out")
@click.option("--quick", is_flag=True, help="a smaller, faster run")
@click.option("--seed", type=int, default=0)
@click.option("--model", default="digits8", show_default=True,
              help="score model of the sampling, guidance and likelihood panels (a shipped name or a run folder)")
@click.option("--device", default="cpu", help="cpu | cuda | cuda:N")
@click.option("--others/--no-others", default=True, show_default=True,
              help="also the panels of other models (exact mixture, shipped distributional pair), reported apart")
def demo_cmd(out, quick, seed, model, device, others):
    """The main job: every capability on the shipped models; writes OUT/<panel>/ (JSON + PNG) and OUT/report/index.html.

    Example: diffdensity demo --quick --out demo_out   (or --model patches16 for natural-image patches; slower)
    """
    from ..demo import run_demo

    run_demo(out, quick=quick, seed=seed, model=model, device=device, others=others)
