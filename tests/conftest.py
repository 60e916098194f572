import os

import pytest
import torch

import diffdensity as dd

# The command line's thread policy (diffdensity._threads) leaves a user-set OMP_NUM_THREADS alone: pin it to the
# suite's own thread count so that in-process CLI tests never change torch's threads for the tests after them.
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

SCHEDULES = {"VP": dd.VP, "VE": dd.VE, "FlowMatching": dd.FlowMatching}


@pytest.fixture(params=list(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]()


def make_mixture(D, K=3, seed=0, std=0.4, scale=1.0, diagonal=False, dtype=torch.float64):
    """A small random Gaussian mixture in D dimensions (float64 by default)."""
    g = torch.Generator().manual_seed(seed)
    means = scale * torch.randn(K, D, generator=g, dtype=dtype)
    if diagonal:
        stds = std * (0.5 + torch.rand(K, D, generator=g, dtype=dtype))
    else:
        stds = std * (0.5 + torch.rand(K, generator=g, dtype=dtype))
    weights = 0.2 + torch.rand(K, generator=g, dtype=dtype)
    return dd.GaussianMixture(means, stds, weights)


def toy_train_config(out, **kw):
    """A seconds-long training run on 8 Gaussians (a 16-wide MLP, 20 steps, checkpoints every 5): ``kw`` override."""
    from diffdensity.training import TrainConfig

    base = dict(
        dataset="8gaussians",
        dataset_kwargs={"n_train": 256, "n_test": 32},
        net="mlp",
        hidden=16,
        depth=1,
        steps=20,
        batch_size=16,
        lr=1e-3,
        warmup=2,
        log_every=2,
        checkpoint_every=5,
        eval_final=False,
        progress=False,
        threads=1,
        out=str(out),
        seed=1,
    )
    return TrainConfig(**{**base, **kw})


def accelerate_launch_two_cpu_processes() -> list:
    """The command prefix ``accelerate launch`` for two CPU processes on one machine (gloo) on a free local port."""
    import socket
    import sys
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    launcher = (
        [str(accelerate), "launch"] if accelerate.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    )
    return [
        *launcher,
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
    ]
