"""Moved to :mod:`diffdensity.objectives.distributional`; this re-export serves ``cli.py`` until it imports the new
home (``PAPER_RECIPE``)."""
from ..objectives.distributional import PAPER_RECIPE

__all__ = ["PAPER_RECIPE"]
