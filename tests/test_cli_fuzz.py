"""A fuzz over the click tree (issue 24): random values per option type (bounded, seeded), commands run in-process on
tiny inputs with a per-example deadline; every run ends in success or a one-line error, never a traceback or a hang."""

import math
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffdensity.cli import main
from diffdensity.cli._common import Device

# each command with arguments that make it run in well under a second on a CPU
BASE = {
    "sample": ["toy2d-moons", "--n", "2", "--steps", "2"],
    "log-prob": ["toy2d-moons", "--n", "2", "--solver", "euler", "--steps", "2"],
    "likelihood": ["digits8", "--n", "2", "--solver", "euler", "--steps", "2", "--batch-size", "2", "--no-progress"],
    "align": ["toy2d-moons", "--n", "2", "--steps", "2"],
    "guide": ["toy2d-moons", "--n", "2", "--steps", "2", "--eval-steps", "2", "--q", "0.5"],
    "distributional sample": ["checkerboard-distributional", "--steps", "1", "--n", "2"],
}
FLOATS = [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-12, 0.5, 1.0, 3.0, 1e6]
STRINGS = ["", "no-such-thing", "moons", "-1", "1e999"]
DEVICES = ["cpu", "cpu:1", "cuda:9", "gpu", ""]
SKIP = {"out", "debug", "help", "model_opt", "progress", "threads"}  # --threads: process-wide torch state


def _command(path: str) -> click.Command:
    cmd = main
    for name in path.split():
        cmd = cmd.commands[name]
    return cmd


def _values(p: click.Option):
    """A bounded strategy of command-line values for option ``p`` by its click type."""
    t = p.type
    if p.is_flag:
        return st.just(None)
    if isinstance(t, click.Choice):
        return st.sampled_from([*t.choices, "bogus"])
    if isinstance(t, click.IntRange):
        lo = -3 if t.min is None else t.min - 2
        return st.integers(lo, min(lo + 8, t.max if t.max is not None else lo + 8)).map(str)
    if isinstance(t, click.types.IntParamType):
        return st.integers(-3, 6).map(str)
    if isinstance(t, (click.types.FloatParamType, click.FloatRange)):
        return st.sampled_from(FLOATS).map(repr)
    if isinstance(t, Device):
        return st.sampled_from(DEVICES)
    return st.sampled_from(STRINGS)


def _options(path: str):
    """The options to fuzz: single-valued, not --out / --debug / --help (--out is always a fresh folder)."""
    return [
        p
        for p in _command(path).params
        if isinstance(p, click.Option) and p.name not in SKIP and p.nargs == 1 and not p.multiple
    ]


@st.composite
def _invocation(draw, path: str):
    opts = _options(path)
    chosen = draw(st.lists(st.sampled_from(opts), min_size=1, max_size=3, unique_by=lambda p: p.name))
    args = []
    for p in chosen:
        flag = p.opts[0]
        value = draw(_values(p))
        args += [flag] if value is None else [flag, value]
    return args


def _check(res, args):
    assert res.exit_code in (0, 1, 2), (args, res.output, repr(res.exception))
    if res.exit_code:
        assert isinstance(res.exception, SystemExit), (args, repr(res.exception))
        assert "Traceback" not in res.output and "Error" in res.output, (args, res.output)
        assert "--debug for the traceback" not in res.output, (args, res.output)  # an escaped bug, not a message
        assert len(res.output.strip().splitlines()[-1]) > 10, (args, res.output)


@pytest.mark.parametrize("path", list(BASE))
def test_cli_fuzz_no_traceback_no_hang(path, tmp_path_factory):
    out_root = tmp_path_factory.mktemp("fuzz")
    counter = iter(range(10**6))

    @settings(
        max_examples=12,
        deadline=timedelta(seconds=60),
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(args=_invocation(path))
    def run(args):
        out = out_root / f"o{next(counter)}"
        target = [str(out / "r.json")] if path == "log-prob" else [str(out)]
        full = [*path.split(), *BASE[path], *args, "--out", *target]
        res = CliRunner().invoke(main, full)
        _check(res, full)

    run()
