"""mypy on src/diffdensity passes with the ``[tool.mypy]`` settings in pyproject.toml (issue 20, item 8).

Slower than the other unit tests: mypy reads torch's (large) stubs and checks the whole package in a subprocess,
about 40 s of CPU the first time (2 min of wall time on a busy shared machine). Later runs reuse mypy's incremental
cache (``.mypy_cache`` in the repository root) and take a few seconds; the subprocess is cut off at 300 s so a stuck
run cannot hold up the suite.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install mypy)")
def test_mypy_passes_on_src():
    # no arguments: files, python_version and every other setting come from pyproject.toml's [tool.mypy]
    p = subprocess.run(
        [sys.executable, "-m", "mypy"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, f"mypy reported errors:\n{p.stdout}{p.stderr}"
