"""The sampling, likelihood and demo sub-commands (training has tests/test_cli_train.py)."""

import json

import numpy as np
from click.testing import CliRunner

from diffdensity.cli import main


def test_models_sample_and_log_prob(tmp_path):
    r = CliRunner()
    res = r.invoke(main, ["models"])
    assert res.exit_code == 0 and "digits8" in res.output.split()
    out = tmp_path / "s"
    res = r.invoke(main, ["sample", "toy2d-moons", "--n", "32", "--steps", "64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    arr = np.load(out / "samples.npz")
    assert arr["x"].shape == (32, 2) and arr["logp"].shape == (32,) and int(arr["nfe"]) == 65
    assert (out / "samples.png").is_file()
    res = r.invoke(
        main,
        ["log-prob", "toy2d-moons", "--data", str(out / "samples.npz"), "--n", "8", "--out", str(tmp_path / "lp.json")],
    )
    assert res.exit_code == 0, res.output
    lp = json.loads((tmp_path / "lp.json").read_text())
    assert len(lp["log_prob_nats"]) == 8 and np.isfinite(lp["mean"]) and lp["density"] == "lambda_max"
    res = r.invoke(
        main,
        [
            "log-prob",
            "toy2d-moons",
            "--data",
            str(out / "samples.npz"),
            "--n",
            "8",
            "--density",
            "data",
            "--out",
            str(tmp_path / "lp0.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    lp0 = json.loads((tmp_path / "lp0.json").read_text())
    assert lp0["density"] == "data" and np.isfinite(lp0["log_prob_nats"]).all()
    assert lp0["log_prob_nats"] != lp["log_prob_nats"]
    res = r.invoke(
        main,
        ["log-prob", "digits8", "--n", "4", "--solver", "euler", "--steps", "16", "--out", str(tmp_path / "bpd.json")],
    )
    assert res.exit_code == 0, res.output
    bpd = json.loads((tmp_path / "bpd.json").read_text())
    assert len(bpd["bits_per_dim"]) == 4 and 0.5 < bpd["mean"] < 4.0


def test_sample_with_the_multistep_solver(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "sample",
            "toy2d-moons",
            "--method",
            "ode",
            "--solver",
            "ab2",
            "--n",
            "8",
            "--steps",
            "16",
            "--out",
            str(tmp_path / "ab2"),
        ],
    )
    assert res.exit_code == 0, res.output
    arr = np.load(tmp_path / "ab2" / "samples.npz")
    assert arr["x"].shape == (8, 2) and np.isfinite(arr["logp"]).all()
    assert json.loads((tmp_path / "ab2" / "summary.json").read_text())["solver"] == "ab2"


def test_sample_unknown_model_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["sample", "no-such-model", "--out", str(tmp_path)])
    assert res.exit_code == 1 and "shipped models" in res.output and "Traceback" not in res.output
    assert res.output.count("\n") == 1  # one line
    # --debug (a group option, so every sub-command has it) lets the exception through with its traceback
    res = CliRunner().invoke(main, ["--debug", "sample", "no-such-model", "--out", str(tmp_path)])
    assert isinstance(res.exception, ValueError) and "shipped models" in str(res.exception)


def test_sample_files_are_trustworthy(tmp_path):
    """--model or MODEL; a second call never overwrites the first's folder; data-unit samples are valid integers;
    the JSON records the settings."""
    r = CliRunner()
    out = tmp_path / "d"
    args = ["sample", "--model", "digits8", "--method", "ode", "--n", "4", "--steps", "8", "--seed", "3"]
    res = r.invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    arr = np.load(out / "samples.npz")
    assert arr["x_data"].dtype == np.uint8 and arr["x_data"].shape == (4, 8, 8) and arr["x_data"].max() <= 16
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "digits8" and s["method"] == "ode" and s["steps"] == 8 and s["seed"] == 3
    assert s["solver"] == "euler" and s["nfe"] == 8 and "version" in s and (out / "samples.png").is_file()
    res = r.invoke(main, ["sample", "digits8", "--n", "2", "--steps", "4", "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in res.output
    again = tmp_path / "d2"
    assert r.invoke(main, [*args, "--out", str(again)]).exit_code == 0
    assert np.array_equal(np.load(again / "samples.npz")["x"], arr["x"])  # same seed, same files


def _leaves(cmd, path=()):
    import click

    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield " ".join(path), cmd


# commands that take no model (they list, build a page from files, or train a new model) and so no --model
NO_MODEL = {
    "models": {"--model", "--seed", "--device", "--out"},
    "report": {"--model", "--seed", "--device"},
    "train": {"--model"},
    "distributional train": {"--model"},
    "distributional sweep": {"--model"},
}


def test_every_sub_command_takes_model_seed_device_out():
    """The issue's contract: --model (or a MODEL argument), --seed, --device and --out on every sub-command."""
    for name, cmd in _leaves(main):
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if any(p.name in ("model", "models") for p in cmd.params):  # MODEL / MODELS arguments count as --model
            opts.add("--model")
        missing = {"--model", "--seed", "--device", "--out"} - opts - NO_MODEL.get(name, set())
        assert not missing, f"{name} lacks {missing}"
        assert "Example: diffdensity " in (cmd.help or ""), f"{name}: --help needs an example"


def test_train_device_option(tmp_path):
    """--device cpu is --cpu; a GPU index is refused with the way to choose one (accelerate picks the device)."""
    from diffdensity.cli import options_to_config_dict, train_cmd

    ctx = train_cmd.make_context("train", ["--device", "cpu", "--steps", "1", "--out", str(tmp_path / "r")])
    assert options_to_config_dict(ctx, ctx.params)["cpu"] is True
    ctx = train_cmd.make_context("train", ["--steps", "1", "--out", str(tmp_path / "r")])
    assert options_to_config_dict(ctx, ctx.params)["cpu"] is False
    res = CliRunner().invoke(main, ["train", "--device", "tpu", "--steps", "1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not a torch device" in res.output


def test_distributional_sample_same_files_for_the_same_seed_with_device(tmp_path):
    runs = []
    for i, extra in enumerate(([], ["--device", "cpu"])):
        out = tmp_path / f"s{i}"
        res = CliRunner().invoke(
            main,
            [
                "distributional",
                "sample",
                "checkerboard-distributional",
                "--steps",
                "2",
                "--n",
                "64",
                "--seed",
                "3",
                "--out",
                str(out),
                *extra,
            ],
        )
        assert res.exit_code == 0, res.output
        runs.append(np.load(out / "samples.npz"))
    assert np.array_equal(runs[0]["z"], runs[1]["z"]) and runs[0]["z"].shape == (64, 2)


def test_distributional_sample_quadratic_spacing_is_the_library_call(tmp_path):
    """--spacing quadratic reaches Algorithm 2: the same samples as dd.sample_distributional(..., spacing="quadratic")
    with the command's seed, and different ones from the uniform-t grid."""
    import torch

    import diffdensity as dd
    from diffdensity.distributional.experiments import draw_samples

    outs = {}
    for spacing in ("quadratic", "t"):
        out = tmp_path / spacing
        args = ["distributional", "sample", "checkerboard-distributional", "--steps", "2", "--n", "16"]
        res = CliRunner().invoke(main, [*args, "--spacing", spacing, "--seed", "3", "--out", str(out)])
        assert res.exit_code == 0, res.output
        outs[spacing] = np.load(out / "samples.npz")["z"]
    m = dd.load("checkerboard-distributional")
    ref = draw_samples(m, 16, 2, 1.0, torch.Generator().manual_seed(3), "quadratic").numpy()
    assert np.allclose(outs["quadratic"], ref) and not np.allclose(outs["quadratic"], outs["t"])


def test_sample_ode_with_two_probes_writes_standard_errors(tmp_path):
    """--n-probes 2 gives the tracked log p a standard error: logp_stderr in samples.npz, its median in summary.json."""
    out = tmp_path / "s"
    args = ["sample", "toy2d-moons", "--method", "ode", "--solver", "heun", "--steps", "16", "--n", "8"]
    res = CliRunner().invoke(main, [*args, "--n-probes", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    arr = np.load(out / "samples.npz")
    assert arr["logp_stderr"].shape == (8,) and (arr["logp_stderr"] > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert abs(summary["logp_stderr_median"] - float(np.median(arr["logp_stderr"]))) < 1e-6 and summary["n_probes"] == 2


def test_distributional_spacing_choices_are_the_bridges():
    """The CLI lists the bridge's grids itself (no torch at import): the same names as bridge.SPACINGS."""
    from diffdensity.cli.distributional import distributional_nfe_cmd, distributional_sample_cmd
    from diffdensity.distributional.bridge import SPACINGS

    for cmd in (distributional_nfe_cmd, distributional_sample_cmd):
        (opt,) = [p for p in cmd.params if p.name == "spacing"]
        assert tuple(opt.type.choices) == SPACINGS
