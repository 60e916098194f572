"""Every script in examples/ runs with --quick (a small, fast run) and exits 0: the examples the docs show work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_examples_exist():
    assert len(EXAMPLES) >= 4, "examples/ should hold the scripts the docs show"


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    """Each examples/*.py --quick runs and exits 0 (up to about 5 s each: a subprocess importing torch)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    }
    p = subprocess.run(
        [sys.executable, str(script), "--quick"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, f"{script.name} --quick failed:\n{p.stdout}\n{p.stderr}"
    assert p.stdout.strip(), f"{script.name} printed nothing"
