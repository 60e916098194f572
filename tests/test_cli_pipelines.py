"""The command line on diffusers pipeline folders (tiny random SD pipeline built in the test) and bare networks."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from diffdensity.cli import main

pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from diffdensity.adapters.tiny import tiny_pipeline

    folder = tmp_path_factory.mktemp("sd")
    tiny_pipeline("sd-eps", folder=folder)
    return folder


def invoke(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def test_sample_three_detail_levels_of_a_prompt_with_log_p_in_one_command(sd_folder, tmp_path):
    out = tmp_path / "s"
    invoke(
        "sample",
        sd_folder,
        "--prompt",
        "a cat",
        "--guidance-scale",
        "3",
        "--method",
        "density-guided",
        "--qs",
        "0.3,0.5,0.7",
        "--n",
        "2",
        "--steps",
        "6",
        "--out",
        out,
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["qs"] == [0.3, 0.5, 0.7] and summary["guidance_scale"] == 3.0
    images = np.load(out / "images.npz")
    assert images["x"].shape == (6, 16, 16, 3) and images["x"].dtype == np.uint8 and images["logp"].shape == (6,)
    assert (out / "images.png").is_file()
    lp = images["logp"].reshape(3, 2).mean(1)
    assert lp[0] < lp[2]  # higher q, higher log p
    res = tmp_path / "lp.json"
    invoke(
        "log-prob",
        sd_folder,
        "--prompt",
        "a cat",
        "--guidance-scale",
        "3",
        "--data",
        out / "samples.npz",
        "--n",
        "2",
        "--solver",
        "euler",
        "--steps",
        "4",
        "--out",
        res,
    )
    assert len(json.loads(res.read_text())["log_prob_nats"]) == 2
    invoke(
        "likelihood",
        sd_folder,
        "--prompt",
        "a cat",
        "--data",
        out / "images.npz",
        "--n",
        "2",
        "--solver",
        "euler",
        "--steps",
        "2",
        "--out",
        tmp_path / "lik",
        "--no-progress",
    )
    assert "not an image density" in (tmp_path / "lik" / "summary.json").read_text()


def test_guide_and_align_take_pipelines_and_bare_diffusers_folders(sd_folder, tmp_path):
    from diffusers import DDPMScheduler
    from test_adapters import save_pipeline, tiny_unet

    out = invoke(
        "guide",
        sd_folder,
        "--prompt",
        "a cat",
        "--q",
        "0.4,0.6",
        "--n",
        "2",
        "--steps",
        "4",
        "--eval-steps",
        "4",
        "--out",
        tmp_path / "g",
    )
    assert "density guidance with q=0.6" in out
    bare = save_pipeline(tmp_path / "unet", tiny_unet(), DDPMScheduler(num_train_timesteps=1000))
    out = invoke("align", bare, "--n", "4", "--steps", "4", "--out", tmp_path / "a")
    assert "Score alignment holds" in out


def test_a_conditional_network_without_a_prompt_is_a_one_line_error(sd_folder, tmp_path):
    res = CliRunner().invoke(main, ["sample", str(sd_folder), "--n", "1", "--steps", "2", "--out", str(tmp_path / "e")])
    assert res.exit_code != 0 and "conditional: it needs encoder_hidden_states" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["sample", "toy2d-moons", "--prompt", "x", "--out", str(tmp_path / "f")])
    assert res.exit_code != 0 and "--prompt: for diffusers models only" in res.output
