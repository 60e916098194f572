"""``diffdensity models``: the shipped pretrained models."""
from __future__ import annotations

import click

from . import main


@main.command("models")
def models_cmd():
    """List the shipped pretrained models (load one with dd.load(NAME); its card: MODEL/README.md).

    Example: diffdensity models
    """
    from ..io import list_models

    for name in list_models():
        click.echo(name)
