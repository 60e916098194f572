"""A sweep of wrong invocations (issue 13): each prints one clear line and exits non-zero, never a traceback."""
import pytest
from click.testing import CliRunner

from diffdensity.cli import main


def _wrong(tmp):
    bad_npz = tmp / "bad.npz"
    bad_npz.write_bytes(b"not a zip file")
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return [
        ["sample", "no-such-model"],
        ["sample", "digits8", "--n", "0"],
        ["sample", "digits8", "--n", "-4"],
        ["sample", "digits8", "--steps", "0"],
        ["sample", "digits8", "--sampler", "ode", "--solver", "rk4"],
        ["sample", "digits8", "--sampler", "ode", "--solver", "dopri5", "--steps", "10"],
        ["sample", "digits8", "--tracker", "milstein"],
        ["sample", str(tmp), "--n", "2"],
        ["sample", "digits8", "--n", "2", "--steps", "2", "--out", str(a_file)],
        ["log-prob", "no-such-model"],
        ["log-prob", "digits8", "--data", str(tmp / "missing.npz")],
        ["log-prob", "digits8", "--data", str(bad_npz)],
        ["log-prob", "digits8", "--n", "0"],
        ["log-prob", "digits8", "--repeats", "0"],
        ["log-prob", "digits8", "--divergence", "trace"],
        ["log-prob", "digits8", "--solver", "euler", "--steps", "-1"],
        ["log-prob", "digits8", "--data", "no-such-dataset"],
        ["log-prob", "digits8", "--split", "validation"],
        ["likelihood", "no-such-model"],
        ["likelihood", "digits8", "--batch-size", "0"],
        ["likelihood", "digits8", "--n-probes", "0"],
        ["likelihood", "digits8", "--device", "cuda:3"],
        ["likelihood", "digits8", "--data", str(tmp / "nothing-here")],
        ["likelihood", "digits8", "--levels", "1"],
        ["train"],
        ["train", "--steps", "10"],
        ["train", "--out", str(tmp / "r")],
        ["train", "--out", str(a_file), "--steps", "2"],
        ["train", "--out", str(tmp / "r2"), "--steps", "0"],
        ["train", "--out", str(tmp / "r3"), "--steps", "2", "--eval-solver", "rk4"],
        ["train", "--out", str(tmp / "r4"), "--steps", "2", "--dataset", "imagenet"],
        ["train", "--out", str(tmp / "r5"), "--steps", "2", "--lr", "-1"],
        ["no-such-command"],
    ]


def test_wrong_invocations_print_no_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output folders land here, not in the repository
    runner = CliRunner()
    cases = _wrong(tmp_path)
    assert len(cases) >= 30
    for args in cases:
        res = runner.invoke(main, args)
        assert res.exit_code != 0, (args, res.output)
        assert isinstance(res.exception, SystemExit), (args, repr(res.exception))  # handled, not escaped
        assert "Traceback" not in res.output, (args, res.output)
        assert "Error" in res.output, (args, res.output)
        assert "--debug for the traceback" not in res.output, (args, res.output)  # a message, not an escaped bug
