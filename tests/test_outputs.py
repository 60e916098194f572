"""The one output writer (diffdensity._io_utils): atomic, never through links, never over earlier results or the
command's own inputs without --overwrite, one command per output folder, a full disk reported and the old file
kept; and the resume key of a likelihood evaluation (data, split, model, every value-changing setting)."""

import errno
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from diffdensity._io_utils import DiskFullError, FolderLock, output_file, output_folder, write_json
from diffdensity.cli import main

FAST = ["--solver", "euler", "--steps", "2", "--batch-size", "2", "--no-progress"]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_sample_overwrite_replaces_a_link_never_its_target(tmp_path):
    out, target = tmp_path / "s", tmp_path / "precious.txt"
    target.write_text("keep me")
    out.mkdir()
    (out / "samples.npz").symlink_to(target)
    r = _run("sample", "toy2d-moons", "--n", "4", "--steps", "4", "--out", out)
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = _run("sample", "toy2d-moons", "--n", "4", "--steps", "4", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert target.read_text() == "keep me" and not (out / "samples.npz").is_symlink()
    assert np.load(out / "samples.npz")["x"].shape == (4, 2)


def test_align_refuses_earlier_results_and_never_writes_through_a_link(tmp_path):
    out, target = tmp_path / "o", tmp_path / "elsewhere.json"
    target.write_text('{"mine": 1}')
    out.mkdir()
    (out / "summary.json").symlink_to(target)
    r = _run("align", "toy2d-moons", "--n", "4", "--steps", "4", "--out", out)
    assert r.exit_code == 1 and "already holds results" in r.output
    r = _run("align", "toy2d-moons", "--n", "4", "--steps", "4", "--out", out, "--overwrite")
    assert r.exit_code == 0, r.output
    assert json.loads(target.read_text()) == {"mine": 1} and not (out / "summary.json").is_symlink()


def test_log_prob_never_replaces_its_input_or_an_earlier_result(tmp_path):
    s = tmp_path / "s"
    assert _run("sample", "toy2d-moons", "--n", "4", "--steps", "4", "--out", s).exit_code == 0
    before = (s / "samples.npz").read_bytes()
    r = _run("log-prob", "toy2d-moons", "--data", s / "samples.npz", "--out", s / "samples.npz", "--overwrite")
    assert r.exit_code == 1 and "would overwrite the input" in r.output
    assert (s / "samples.npz").read_bytes() == before
    (tmp_path / "lp.json").write_text('{"earlier": true}')
    r = _run("log-prob", "toy2d-moons", "--data", s / "samples.npz", "--out", tmp_path / "lp.json")
    assert r.exit_code == 1 and "--overwrite" in r.output and "earlier" in (tmp_path / "lp.json").read_text()


@pytest.mark.parametrize(
    "cmd",
    [
        ["likelihood", "digits8", "--n", "2", *FAST],
        ["guide", "toy2d-moons", "--n", "2", "--q", "0.5", "--steps", "2", "--eval-steps", "2"],
    ],
)
def test_commands_refuse_folders_holding_other_results(tmp_path, cmd):
    out = tmp_path / "d"
    assert _run("sample", "toy2d-moons", "--n", "2", "--steps", "2", "--out", out).exit_code == 0
    before = (out / "summary.json").read_text()
    r = _run(*cmd, "--out", out)
    assert r.exit_code == 1 and "already holds results" in r.output, r.output
    assert (out / "summary.json").read_text() == before


def test_an_output_folder_belongs_to_one_command_at_a_time(tmp_path):
    out = tmp_path / "new"
    out.mkdir()
    other = FolderLock(out)  # a second `sample` into the same new --out, running now
    other.acquire()
    try:
        r = _run("sample", "toy2d-moons", "--n", "2", "--steps", "2", "--out", out)
        assert r.exit_code == 1 and "in use by another diffdensity command" in r.output
        assert not (out / "samples.npz").exists()
    finally:
        other.release()
    with output_folder(out) as claimed:  # an empty folder is claimed; the lock goes when the block ends
        assert (claimed / ".lock").exists()
    assert not (out / ".lock").exists()


def test_a_full_disk_keeps_the_earlier_file_and_says_so(tmp_path):
    path = tmp_path / "lp.json"
    write_json(path, {"mean": 1.0})

    def full(tmp):
        with open(tmp, "w") as f:
            f.write('{"mean": ')
        raise OSError(errno.ENOSPC, "No space left on device")

    from diffdensity._io_utils import atomic_write

    with pytest.raises(DiskFullError, match="no space left on device.*kept"):
        atomic_write(path, full)
    assert json.loads(path.read_text()) == {"mean": 1.0} and [p.name for p in tmp_path.iterdir()] == ["lp.json"]


def test_output_file_checks(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        output_file(tmp_path, overwrite=True)
    (tmp_path / "a").write_text("x")
    assert output_file(tmp_path / "a", overwrite=True) == tmp_path / "a"
    (tmp_path / "link").symlink_to(tmp_path / "a")
    with pytest.raises(ValueError, match="would overwrite the input"):
        output_file(tmp_path / "link", overwrite=True, inputs=[tmp_path / "a"])


# ------------------------------------------------------------------------------------------------ resume key
def test_a_resumed_evaluation_with_other_data_split_model_or_setting_is_refused(tmp_path):
    import diffdensity as dd
    from diffdensity.data import load_dataset
    from diffdensity.evaluate import evaluate_bits_per_dim

    m = dd.load("digits8")
    x = load_dataset("digits").test[:2]
    kw = dict(batch_size=2, levels=17, solver="euler", steps=2, out=tmp_path / "e", progress=False)
    first = evaluate_bits_per_dim(m, x, identity={"split": "test", "autocast": "no"}, **kw)
    again = evaluate_bits_per_dim(m, x, identity={"split": "test", "autocast": "no"}, **kw)
    assert again["batches_resumed"] == 1 and np.array_equal(again["per_example"], first["per_example"])
    other = dd.load("digits8")
    with torch.no_grad():
        next(other.net.parameters()).add_(1e-3)
    cases = {
        "data": dict(dataset=x.flip(0)),
        "split": dict(identity={"split": "train", "autocast": "no"}),
        "autocast": dict(identity={"split": "test", "autocast": "bf16"}),
        "model": dict(model=other),
        "repeats": dict(repeats=2),
    }
    for name, change in cases.items():
        args = {"model": m, "dataset": x, "identity": {"split": "test", "autocast": "no"}, **kw, **change}
        with pytest.raises(ValueError, match="different evaluation"):
            evaluate_bits_per_dim(args.pop("model"), args.pop("dataset"), **args)


def test_likelihood_cli_resume_refuses_another_split_and_overwrite_starts_afresh(tmp_path):
    out = tmp_path / "lik"
    r = _run("likelihood", "digits8", "--n", "2", *FAST, "--out", out)
    assert r.exit_code == 0 and "1 batches computed" in r.output, r.output
    r = _run("likelihood", "digits8", "--n", "2", *FAST, "--out", out)
    assert r.exit_code == 0 and "0 batches computed, 1 resumed" in r.output
    r = _run("likelihood", "digits8", "--n", "2", *FAST, "--split", "train", "--out", out)
    assert r.exit_code == 1 and "different evaluation" in r.output and "split" in r.output
    r = _run("likelihood", "digits8", "--n", "2", *FAST, "--split", "train", "--out", out, "--overwrite")
    assert r.exit_code == 0 and "1 batches computed, 0 resumed" in r.output, r.output
    assert json.loads((out / "settings.json").read_text())["split"] == "train"
