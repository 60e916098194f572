"""The `diffdensity train` command: options, a run, --resume, errors, and a 2-process CPU run via accelerate."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

import diffdensity.io as io
from diffdensity.cli import main
from diffdensity.training import load_checkpoint

torch.set_num_threads(1)
SRC = str(Path(__file__).resolve().parents[1] / "src")
TOY = ["--dataset", "8gaussians", "--data-opt", "n_train=256", "--data-opt", "n_test=32", "--net", "mlp",
       "--hidden", "16", "--depth", "1", "--batch-size", "16", "--warmup", "2", "--log-every", "2",
       "--no-eval-final", "--no-progress", "--threads", "1"]


def test_help_lists_train_and_every_option():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "train" in r.output
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for opt in ("--dataset", "--root", "--net", "--preset", "--hidden", "--depth", "--net-opt", "--schedule",
                "--parametrization", "--weighting", "--importance / --no-importance", "--steps", "--batch-size",
                "--lr", "--warmup", "--clip", "--ema-decay", "--eval-every", "--sample-every", "--checkpoint-every",
                "--seed", "--out", "--resume"):
        assert opt in r.output, opt


def test_train_and_resume(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "4", "--lr", "3e-3", "--parametrization", "flow",
                                  "--schedule", "FlowMatching", "--no-importance", "--out", str(out)])
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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_run_through_accelerate(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2 ... train --cpu` (gloo) trains and writes a loadable model."""
    out = tmp_path / "mp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    accelerate = Path(sys.executable).with_name("accelerate")
    launcher = [str(accelerate), "launch"] if accelerate.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    cmd = [*launcher, "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "diffdensity.cli", "train", "--cpu", *TOY, "--steps", "6", "--checkpoint-every", "3",
           "--out", str(out)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    m = io.load(out)
    assert m.config["training"]["processes"] == 2 and m.config["training"]["step"] == 6
    assert [q.name for q in out.iterdir() if q.name.endswith(".tmp")] == []
    # the global batch is split over the processes, so one process gives (nearly) the same weights
    r = CliRunner().invoke(main, ["train", *TOY, "--steps", "6", "--checkpoint-every", "3", "--out", str(tmp_path / "sp")])
    assert r.exit_code == 0, r.output
    a, b = load_checkpoint(out / "checkpoint.pt")["net"], load_checkpoint(tmp_path / "sp" / "checkpoint.pt")["net"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
