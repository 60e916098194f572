"""The `diffdensity train` command: options, a run, --resume, errors, and a 2-process CPU run via accelerate."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import accelerate_launch_two_cpu_processes
from click.testing import CliRunner

import diffdensity.io as io
from diffdensity.cli import main
from diffdensity.training import load_checkpoint

torch.set_num_threads(1)
SRC = str(Path(__file__).resolve().parents[1] / "src")
TOY = [
    "--dataset",
    "8gaussians",
    "--data-opt",
    "n_train=256",
    "--data-opt",
    "n_test=32",
    "--net",
    "mlp",
    "--hidden",
    "16",
    "--depth",
    "1",
    "--batch-size",
    "16",
    "--warmup",
    "2",
    "--log-every",
    "2",
    "--no-eval-final",
    "--no-progress",
    "--threads",
    "1",
]


def test_help_lists_train_and_every_option():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "train" in r.output
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for opt in (
        "--dataset",
        "--root",
        "--net",
        "--preset",
        "--hidden",
        "--depth",
        "--net-opt",
        "--schedule",
        "--parametrization",
        "--weighting",
        "--importance / --no-importance",
        "--steps",
        "--batch-size",
        "--lr",
        "--warmup",
        "--clip",
        "--ema-decay",
        "--eval-every",
        "--sample-every",
        "--checkpoint-every",
        "--seed",
        "--out",
        "--resume",
    ):
        assert opt in r.output, opt


def test_train_and_resume(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(
        main,
        [
            "train",
            *TOY,
            "--steps",
            "4",
            "--lr",
            "3e-3",
            "--parametrization",
            "flow",
            "--schedule",
            "FlowMatching",
            "--no-importance",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    # --resume takes the stored settings for every option not given again (lr, schedule, ...)
    r = CliRunner().invoke(main, ["train", "--steps", "8", "--out", str(out), "--resume", "--no-progress"])
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == 8 and ck["config"]["lr"] == 3e-3 and ck["config"]["schedule"] == "FlowMatching"
    m = io.load(out)
    assert m.parametrization == "flow" and type(m.schedule).__name__ == "FlowMatching"
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines if "loss" in d] == [2, 4, 6, 8]


def test_train_errors_are_clean(tmp_path):
    r = CliRunner().invoke(main, ["train", *TOY, "--dataset", "nope", "--steps", "1", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "unknown dataset" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "0", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "steps" in r.output


def test_two_process_cpu_run_through_accelerate(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 ... train --cpu` (gloo) trains and writes a loadable model
    (about 5 s: two training processes)."""
    out = tmp_path / "mp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [
        *accelerate_launch_two_cpu_processes(),
        "-m",
        "diffdensity.cli",
        "train",
        "--cpu",
        *TOY,
        "--steps",
        "6",
        "--checkpoint-every",
        "3",
        "--out",
        str(out),
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    m = io.load(out)
    assert m.config["training"]["processes"] == 2 and m.config["training"]["step"] == 6
    assert [q.name for q in out.iterdir() if q.name.endswith(".tmp") or q.name == ".lock"] == []
    assert "terminate called" not in p.stderr  # the gloo exit-time abort (fixed by tearing the group down together)
    # the global batch is split over the processes, so one process gives (nearly) the same weights
    r = CliRunner().invoke(
        main, ["train", *TOY, "--steps", "6", "--checkpoint-every", "3", "--out", str(tmp_path / "sp")]
    )
    assert r.exit_code == 0, r.output
    a, b = load_checkpoint(out / "checkpoint.pt")["net"], load_checkpoint(tmp_path / "sp" / "checkpoint.pt")["net"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


# ------------------------------------------------------------------------------------------------ options from TrainConfig
def _parse(args):
    from diffdensity.cli import options_to_config_dict, train_cmd

    ctx = train_cmd.make_context("train", list(args))
    return options_to_config_dict(ctx, ctx.params)


def test_every_config_field_has_an_option_with_the_same_default():
    import dataclasses

    from diffdensity.cli import train_cmd
    from diffdensity.training import TrainConfig

    params = {p.name: p for p in train_cmd.params}
    fields = dataclasses.fields(TrainConfig)
    assert {f.name for f in fields} <= set(params)
    d = _parse([])
    for f in fields:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert d[f.name] == default, f.name
    assert TrainConfig.from_dict({**d, "steps": 1, "out": "x"}) == TrainConfig(steps=1, out="x")


def test_todays_option_names_and_flags_still_work():
    d = _parse(
        [
            "--no-dequantize",
            "--data-opt",
            "n_train=5000",
            "--net-opt",
            "ch=32",
            "--net-opt",
            "dropout=0.0",
            "--eval-solver",
            "heun",
            "--eval-steps",
            "16",
            "--clip",
            "0",
            "--no-importance",
            "--no-eval-final",
            "--no-progress",
            "--resume",
            "--cpu",
            "--betas",
            "0.8",
            "0.9",
            "--eval-opt",
            "n_probes=2",
        ]
    )
    assert d["dequantize"] is False and d["dataset_kwargs"] == {"n_train": 5000}
    assert d["net_kwargs"] == {"ch": 32, "dropout": 0.0} and d["clip"] is None and d["importance"] is False
    assert d["eval_kwargs"] == {"solver": "heun", "steps": 16, "n_probes": 2} and d["betas"] == (0.8, 0.9)
    assert d["eval_final"] is False and d["progress"] is False and d["resume"] is True and d["cpu"] is True
    assert _parse(["--eval-solver", "dopri5"])["eval_kwargs"] == {"solver": "dopri5"}  # adaptive: no step count


def _one_clean_line(r):
    return (
        r.exit_code == 1 and "Traceback" not in r.output and r.output.count("\n") == 1 and r.output.startswith("Error:")
    )


def test_train_needs_out_and_steps():
    r = CliRunner().invoke(main, ["train"])
    assert _one_clean_line(r) and "steps is required" in r.output
    r = CliRunner().invoke(main, ["train", "--steps", "10"])
    assert _one_clean_line(r) and "out is required" in r.output


@pytest.mark.parametrize(
    "bad, match",
    [
        (["--eval-solver", "rk4"], "rk4"),
        (["--eval-steps", "0"], "steps=0"),
        (["--eval-n", "0"], "eval_n"),
        (["--steps", "0"], "steps"),
    ],
)
def test_bad_options_fail_before_anything_runs(tmp_path, bad, match):
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "3", "--out", str(tmp_path / "r"), *bad])
    assert _one_clean_line(r) and match in r.output, r.output
    assert not (tmp_path / "r").exists()


def test_run_folder_protection_from_the_command_line(tmp_path):
    out = str(tmp_path / "r")
    assert CliRunner().invoke(main, ["train", *TOY, "--steps", "2", "--out", out]).exit_code == 0
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "2", "--out", out])
    assert _one_clean_line(r) and "holds an earlier run" in r.output
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "3", "--out", out, "--overwrite"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", "--steps", "4", "--out", out, "--resume", "--overwrite"])
    assert _one_clean_line(r) and "exclude each other" in r.output


def test_unusable_out_and_corrupt_checkpoint_are_one_line(tmp_path, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "2", "--out", str(f)])
    assert _one_clean_line(r) and "it is a file" in r.output
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "2", "--out", str(f / "sub")])
    assert _one_clean_line(r) and "cannot use" in r.output
    out = tmp_path / "r"
    assert CliRunner().invoke(main, ["train", *TOY, "--steps", "2", "--out", str(out)]).exit_code == 0
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    r = CliRunner().invoke(main, ["train", "--steps", "4", "--out", str(out), "--resume"])
    assert _one_clean_line(r) and "cannot read the training checkpoint" in r.output
    import diffdensity.training.runfolder as rf

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(rf.os, "open", denied)  # a read-only folder (chmod does not stop root, who runs CI here)
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "2", "--out", str(tmp_path / "ro")])
    assert _one_clean_line(r) and "cannot write in the run folder" in r.output and "Permission denied" in r.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_out_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "2", "--out", str(ro)])
    assert _one_clean_line(r) and "cannot write" in r.output


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--dataset", "nope", "--steps", "1", "--out", "{tmp}/a"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--data-opt", "nokey"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--dataset", "8gaussians", "--data-opt", "bogus=1"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--dataset", "cifar10"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--dataset", "moons", "--net", "unet"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--dataset", "moons", "--batch-size", "100000"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--lr", "-1"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--ema-decay", "1"],
        ["train", "--steps", "1", "--out", "{tmp}/a", "--betas", "2", "0.9"],
        ["sample", "no-such-model", "--out", "{tmp}/s"],
        ["sample", "toy2d-moons", "--n", "0", "--out", "{tmp}/s"],
        ["log-prob", "toy2d-moons", "--data", "{tmp}/missing.npz", "--out", "{tmp}/l.json"],
        ["log-prob", "no-such-model"],
    ],
)
def test_wrong_invocations_print_one_line_and_no_traceback(tmp_path, args):
    r = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert r.exit_code != 0 and "Traceback" not in r.output and len(errors) == 1, r.output
    if r.exit_code == 1:  # a library error (2 is click's usage error, which adds its usage lines)
        assert r.output.count("\n") == 1, r.output


def test_train_help_shows_the_chosen_objectives_options_only():
    """Issue 20: `train --help` lists the denoising objective's options; `--objective distributional --help` that
    objective's (each objective's own config names them: objectives.OBJECTIVES)."""
    from click.testing import CliRunner

    from diffdensity.cli import main

    den = CliRunner().invoke(main, ["train", "--help"]).output
    dis = CliRunner().invoke(main, ["train", "--objective", "distributional", "--help"]).output
    assert "--is-bins" in den and "--parametrization" in den and "--population" not in den
    assert "--population" in dis and "--scoring" in dis and "--is-bins" not in dis and "--parametrization" not in dis
    assert "--steps" in den and "--steps" in dis  # the run's own options stay
