"""``diffdensity report``: one HTML page from saved analysis outputs."""
from __future__ import annotations

import click

from . import main


@main.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(), default="report", help="report folder (index.html + images)")
@click.option("--title", default="diffdensity report")
@click.option("--model", default="", help="the model the findings are about (picks its row where a panel has several)")
def report_cmd(run_dirs, out, title, model):
    """Build OUT/index.html from saved analysis outputs (folders of JSON + PNG files).

    Example: diffdensity report demo_out/threshold demo_out/blur --out my_report
    """
    from ..report import build_report

    click.echo(str(build_report(run_dirs, out, title=title, model=model)))
