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


# ------------------------------------------------------------------ issue 24: option ranges checked before any work
RANGES = [
    (["sample", "digits8", "--device", "cpu:1"], "--device"),
    (["log-prob", "digits8", "--repeats", "-3"], "--repeats"),
    (["likelihood", "digits8", "--n", "4", "--levels", "0"], "--levels"),
    (["align", "toy2d-moons", "--n", "1"], "--n"),
    (["sample", "toy2d-moons", "--threshold", "nan", "--method", "hd"], "--threshold"),
    (["sample", "toy2d-moons", "--q", "7", "--method", "density-guided"], "--q"),
    (["sample", "toy2d-moons", "--churn", "2", "--method", "ddim"], "--churn"),
    (["likelihood", "digits8", "--rtol", "inf"], "--rtol"),
    (["guide", "toy2d-moons", "--q", "nan"], "--q"),
    (["train", "--out", "r", "--steps", "2", "--lr", "nan"], "--lr"),
]


@pytest.mark.parametrize("args,option", RANGES, ids=[" ".join(a) for a, _ in RANGES])
def test_option_ranges_are_checked_by_click_before_any_work(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and option in res.output and "Traceback" not in res.output, res.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_option_that_does_not_apply_to_the_sampler_is_an_error(tmp_path):
    res = CliRunner().invoke(
        main, ["sample", "toy2d-moons", "--method", "sde", "--q", "0.7", "--n", "2", "--out", str(tmp_path / "s")]
    )
    assert res.exit_code == 1 and "q do(es) not apply to the 'sde' sampler" in res.output


def test_kv_options_read_true_false_none():
    from diffdensity.cli._common import parse_kv

    assert parse_kv(None, None, ["grayscale=False", "a=true", "b=None", "n=3", "s=x"]) == {
        "grayscale": False,
        "a": True,
        "b": None,
        "n": 3,
        "s": "x",
    }


def test_likelihood_input_errors_are_one_line(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "rgb").mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "rgb" / f"{i}.png")
    for args in (
        ["likelihood", "digits8", "--n", "2", "--data", str(tmp_path / "rgb"), "--out", str(tmp_path / "a")],
        ["log-prob", "toy2d-moons", "--data", str(tmp_path / "rgb"), "--out", str(tmp_path / "b.json")],
        ["likelihood", "digits8", "--data", "", "--out", str(tmp_path / "c")],
    ):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 1 and "Traceback" not in res.output and "--debug" not in res.output, res.output


def test_accelerate_launch_without_multi_gpu_is_detected(monkeypatch):
    import subprocess
    import sys

    from diffdensity.cli._common import check_launch

    fake = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(30)",
            "launch",
            "--num_processes",
            "2",
            "-m",
            "diffdensity.cli",
            "likelihood",
        ]
    )
    import time

    for _ in range(100):  # until the child's command line is readable
        with open(f"/proc/{fake.pid}/cmdline", "rb") as f:
            if b"--num_processes" in f.read():
                break
        time.sleep(0.05)
    try:
        monkeypatch.setenv("ACCELERATE_USE_CPU", "False")
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        monkeypatch.setattr("os.getppid", lambda: fake.pid)
        with pytest.raises(ValueError, match="--multi_gpu"):
            check_launch()
        monkeypatch.setenv("WORLD_SIZE", "2")  # a real multi-process launch
        check_launch()
    finally:
        fake.kill()
        fake.wait()


def test_train_resume_of_a_checkpoint_without_config_is_one_line(tmp_path):
    import torch

    (tmp_path / "r").mkdir()
    torch.save({"version": 2, "step": 3}, tmp_path / "r" / "checkpoint.pt")
    res = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r"), "--steps", "4", "--resume"])
    assert res.exit_code == 1 and "incomplete training checkpoint" in res.output and "Traceback" not in res.output
