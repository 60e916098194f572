"""The documentation site builds with `mkdocs build --strict` (broken links, missing pages, unresolvable API
references or docstring warnings fail), into a temporary folder. Nothing is downloaded."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mkdocs():
    exe = Path(sys.executable).with_name("mkdocs")
    if exe.exists():
        return [str(exe)]
    if shutil.which("mkdocs"):
        return [shutil.which("mkdocs")]
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "mkdocs"]


def test_docs_build_strict(tmp_path):
    cmd = _mkdocs()
    if cmd is None:
        pytest.skip(
            "mkdocs is not installed (pip install -e '.[test]' installs it with mkdocs-material and "
            "mkdocstrings[python])"
        )
    pytest.importorskip("material", reason="mkdocs-material is not installed (the 'test' extra installs it)")
    pytest.importorskip(
        "mkdocstrings_handlers.python", reason="mkdocstrings[python] is not installed (the 'test' extra installs it)"
    )
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    p = subprocess.run(
        [*cmd, "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    site = tmp_path / "site"
    for page in (
        "index.html",
        "api/index.html",
        "extending/index.html",
        "math/index.html",
        "changelog/index.html",
        "benchmarks/index.html",
    ):
        assert (site / page).exists(), page
    api = (site / "api" / "index.html").read_text()
    assert "sample_ode" in api and "integrate_ode" in api, "the API reference lost its docstrings"
    assert "Unreleased" in (site / "changelog" / "index.html").read_text(), "CHANGELOG.md is not included"
