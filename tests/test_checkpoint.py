"""training/checkpoint.py: atomic checkpoints, version-1 checkpoints still resume, corrupt ones are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import toy_train_config

from diffdensity.training import load_checkpoint, train
from diffdensity.training.checkpoint import CHECKPOINT_NAME, CHECKPOINT_VERSION, save_checkpoint

torch.set_num_threads(1)


def _cfg(out, **kw):
    return toy_train_config(out, **kw)


def _as_version_1(path: Path) -> None:
    """Rewrite a checkpoint in the layout written before the objective was pluggable (λ-sampler under "sampler")."""
    ck = torch.load(path, weights_only=True)
    ck["version"] = 1
    ck["sampler"] = ck.pop("objective")["sampler"]
    torch.save(ck, path)


@pytest.mark.parametrize("importance", [True, False])
def test_version_1_checkpoint_resumes_bit_for_bit(tmp_path, importance):
    train(_cfg(tmp_path / "full", importance=importance))
    train(_cfg(tmp_path / "old", steps=7, importance=importance))
    ckpt = tmp_path / "old" / CHECKPOINT_NAME
    _as_version_1(ckpt)
    if not importance:  # the former UniformLambda class wrote {"kind": "uniform", ...}
        ck = torch.load(ckpt, weights_only=True)
        ck["sampler"] = {
            "kind": "uniform",
            "lambda_min": ck["sampler"]["lambda_min"],
            "lambda_max": ck["sampler"]["lambda_max"],
        }
        torch.save(ck, ckpt)
    assert load_checkpoint(ckpt)["version"] == CHECKPOINT_VERSION
    train(_cfg(tmp_path / "old", importance=importance, resume=True))
    a, b = load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME), load_checkpoint(ckpt)
    for k in a["net"]:
        assert torch.equal(a["net"][k], b["net"][k]), k


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path):
    p = tmp_path / CHECKPOINT_NAME
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="cannot read the training checkpoint.*corrupt"):
        load_checkpoint(p)
    torch.save({"version": 99}, p)
    with pytest.raises(ValueError, match="not a diffdensity training checkpoint"):
        load_checkpoint(p)
    save_checkpoint(p, {"step": 3})
    assert load_checkpoint(p)["step"] == 3 and [q.name for q in tmp_path.iterdir()] == [CHECKPOINT_NAME]
