"""`diffdensity likelihood`: a diffusers folder on image files / a uint8 .npz / CIFAR-10 batches; a shipped model."""

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from diffdensity.cli import main

pytest.importorskip("diffusers")


@pytest.fixture()
def pipeline(tmp_path):
    from diffusers import DDPMScheduler
    from test_adapters import save_pipeline, tiny_unet

    net = tiny_unet(attn=False)
    return save_pipeline(tmp_path / "pipe", net, DDPMScheduler(num_train_timesteps=1000))


FAST = ["--solver", "euler", "--steps", "4", "--batch-size", "2", "--no-progress"]


def test_likelihood_of_a_diffusers_folder_on_npz_images_and_cifar_batches(tmp_path, pipeline):
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)  # channels last: transposed to the model's (1, 8, 8)
    np.savez(tmp_path / "x.npz", x=imgs)
    r = CliRunner().invoke(
        main, ["likelihood", str(pipeline), "--data", str(tmp_path / "x.npz"), *FAST, "--out", str(tmp_path / "a")]
    )
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["n"] == 3 and s["levels"] == 256 and np.isfinite(s["mean"])
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, a in enumerate(imgs):
        Image.fromarray(a[..., 0]).save(folder / f"{i}.png")
    r = CliRunner().invoke(
        main, ["likelihood", str(pipeline), "--data", str(folder), *FAST, "--out", str(tmp_path / "b")]
    )
    assert r.exit_code == 0, r.output
    a = np.load(tmp_path / "a" / "per_example.npz")["bits_per_dim"]
    b = np.load(tmp_path / "b" / "per_example.npz")["bits_per_dim"]
    assert np.allclose(a, b, rtol=1e-5)  # PNG round trip is lossless and the seeds are per example
    r = CliRunner().invoke(
        main, ["likelihood", str(pipeline), "--data", str(folder), *FAST, "--out", str(tmp_path / "b")]
    )
    assert r.exit_code == 0 and "0 batches computed, 2 resumed" in r.output
    cifar = tmp_path / "cifar-10-batches-py"  # a fake CIFAR-10 folder in the python-batch format (1-channel model:
    cifar.mkdir()  # its 3-channel images do not fit, which must be a clear error)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(cifar / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 1]}, f)
    r = CliRunner().invoke(
        main, ["likelihood", str(pipeline), "--data", str(tmp_path), *FAST, "--out", str(tmp_path / "c")]
    )
    assert r.exit_code != 0 and "do not fit" in r.output and "Traceback" not in r.output


def test_likelihood_of_a_shipped_model_on_its_data_set(tmp_path):
    r = CliRunner().invoke(main, ["likelihood", "digits8", "--n", "4", *FAST, "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert s["n"] == 4 and s["levels"] == 17 and s["model"] == "digits8" and 0 < s["mean"] < 8
    r = CliRunner().invoke(main, ["likelihood", "digits8", "--autocast", "bf16", *FAST, "--out", str(tmp_path / "e")])
    assert r.exit_code != 0 and "diffusers models only" in r.output


def test_likelihood_command_costs_what_the_library_call_costs(tmp_path):
    """Issue 25: `diffdensity likelihood` makes exactly the score calls of dd.evaluate_bits_per_dim with the same
    settings (default scheme: dopri5 + quadrature), and gives the same per-example values and standard errors."""
    import torch

    import diffdensity as dd
    from diffdensity.data.loading import model_dataset

    args = ["--n", "3", "--batch-size", "3", "--nodes", "8", "--no-progress"]
    r = CliRunner().invoke(main, ["likelihood", "digits8", *args, "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    m = dd.load("digits8")
    lib = dd.evaluate_bits_per_dim(
        m,
        model_dataset(m).test,
        batch_size=3,
        levels=17,
        limit=3,
        nodes=8,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert cli["nfe_total"] == lib["nfe_total"]
    per = np.load(tmp_path / "cli" / "per_example.npz")
    assert np.allclose(per["bits_per_dim"], lib["per_example"]) and np.allclose(
        per["bits_per_dim_stderr"], lib["per_example_stderr"]
    )
    assert np.isfinite(per["bits_per_dim_stderr"]).all() and cli["median_stderr"] > 0
