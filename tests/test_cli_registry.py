"""The command line takes its choices from the registries, starts without torch, and the package root is lazy."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import time
from pathlib import Path

import click
from test_cli import _leaves

from diffdensity.cli import main
from diffdensity.registry import SAMPLERS, SOLVERS

SRC = str(Path(__file__).resolve().parents[1] / "src")
HEAVY = ("torch", "scipy", "sklearn", "matplotlib")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_solver_and_method_choices_are_the_registries():
    seen = {"solver": 0, "logp_solver": 0, "method": 0}
    for name, cmd in _leaves(main):
        for p in cmd.params:
            if p.name in ("solver", "logp_solver"):
                assert isinstance(p.type, click.Choice), f"{name} --{p.name}"
                assert tuple(p.type.choices) == SOLVERS.names(), f"{name} --{p.name}"
            elif p.name == "method":
                assert tuple(p.type.choices) == SAMPLERS.names(), name
            else:
                continue
            seen[p.name] += 1
    assert seen["solver"] >= 3 and seen["logp_solver"] == 4 and seen["method"] == 1, seen


def test_sample_default_steps_come_from_the_registry(tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "s"
    res = CliRunner().invoke(main, ["sample", "toy2d-moons", "--method", "ddim", "--n", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    import json

    assert json.loads((out / "summary.json").read_text())["steps"] == SAMPLERS.get("ddim").meta["default_steps"]


def test_an_option_that_does_not_apply_is_an_error(tmp_path):
    from click.testing import CliRunner

    res = CliRunner().invoke(
        main,
        [
            "sample",
            "toy2d-moons",
            "--method",
            "sde",
            "--solver",
            "heun",
            "--n",
            "2",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 1 and "solver" in res.output and "'sde'" in res.output, res.output


def test_reproduce_experiments_match_the_library():
    from diffdensity.analysis.reproduce import EXPERIMENTS
    from diffdensity.cli.reproduce import EXPERIMENTS as CLI_EXPERIMENTS

    assert CLI_EXPERIMENTS == EXPERIMENTS


def test_cli_imports_no_torch_and_help_is_fast():
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import diffdensity.cli"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    modules = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
    assert "diffdensity" in modules and not modules & set(HEAVY), sorted(modules & set(HEAVY))
    script = Path(sys.executable).parent / "diffdensity"  # the console script, else python -m diffdensity
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "diffdensity"]
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, "--help"], env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0 and "sample" in r.stdout, r.stderr
    assert seconds < 1.0, f"diffdensity --help took {seconds:.2f} s"


def test_package_root_is_lazy_and_complete():
    code = (
        "import sys, diffdensity as dd; assert 'torch' not in sys.modules; "
        "missing = [n for n in dd.__all__ if not hasattr(dd, n)]; assert not missing, missing; "
        "assert set(dd.__all__) <= set(dir(dd)); print(dd.__version__)"
    )
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == importlib.metadata.version("diffdensity")
    import diffdensity as dd

    assert dd.__version__ == importlib.metadata.version("diffdensity")
    assert len(dd.__all__) == len(set(dd.__all__)) and callable(dd.sample_ode) and callable(dd.sample)
