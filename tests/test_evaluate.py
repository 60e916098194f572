"""evaluate_bits_per_dim: exact values, batch independence, resume after SIGKILL, two processes via accelerate."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import accelerate_launch_two_cpu_processes, make_mixture

import diffdensity as dd
from diffdensity.evaluate import example_seed

SRC = str(Path(__file__).resolve().parents[1] / "src")
TESTS = str(Path(__file__).resolve().parent)

# The script run by the subprocess tests: an exact mixture model on integer data, evaluated into OUT.
SCRIPT = """
import json, os, sys, time
import torch
sys.path.insert(0, {tests!r})
import diffdensity as dd
from conftest import make_mixture
torch.set_num_threads(1)
out, slow = sys.argv[1], float(sys.argv[2])
gm = make_mixture(4, seed=0)
m = gm.diffused(dd.VP())
x = ((gm.sample(18 if slow == 0 else 40, generator=torch.Generator().manual_seed(0)).clamp(-1, 0.99) + 1) * 128).floor()

class Slow:  # the same model, slowed down so that the test can kill it mid-run
    schedule = m.schedule
    def score(self, x, lam):
        time.sleep(slow)
        return m.score(x, lam)

kw = dict(solver="dopri5") if slow == 0 else dict(solver="euler", steps=40, divergence="exact")
r = dd.evaluate_bits_per_dim(Slow() if slow else m, x.to(torch.uint8), batch_size=4, out=out, seed=3,
                             model_name="mixture", progress=False, **kw)
if int(os.environ.get("RANK", "0")) == 0:  # every rank holds the gathered result; one prints (no interleaved lines)
    print(json.dumps({{k: r[k] for k in ("mean", "n", "batches_computed", "batches_resumed", "processes")}}), flush=True)
"""


def uint8_data(gm, n, seed=0):
    x = gm.sample(n, generator=torch.Generator().manual_seed(seed))
    return ((x.clamp(-1, 0.99) + 1) * 128).floor().to(torch.uint8)


def test_values_are_the_exact_bits_per_dim_of_the_dequantized_examples():
    """Each value is −(log p(T(x_i + u_i)) + log|det T|)/(D ln 2) with u_i from (seed, i): checked against the oracle."""
    gm = make_mixture(4, seed=1)
    m = gm.diffused(dd.VP())
    x = uint8_data(gm, 10)
    r = dd.evaluate_bits_per_dim(
        m,
        x,
        batch_size=4,
        seed=5,
        solver="dopri5",
        divergence="exact",
        progress=False,
        rtol=1e-7,
        atol=1e-7,
        prior=lambda z: m.log_prob(z, m.schedule.lambda_min),
    )
    u = torch.stack(
        [torch.rand(4, generator=torch.Generator().manual_seed(example_seed(5, 0, i, 0))) for i in range(10)]
    )
    z = ((x.float() + u) * (2 / 256) - 1).double()  # integer data go to float32 for a model without weights
    exact = -(m.log_prob(z, m.schedule.lambda_max) + 4 * math.log(2 / 256)) / (4 * math.log(2))
    assert np.abs(r["per_example"] - exact.numpy()).max() < 1e-4  # the exact prior: only the solver's error remains
    assert r["n"] == 10 and r["mean"] == pytest.approx(float(np.mean(r["per_example"])))
    assert r["sem"] == pytest.approx(float(np.std(r["per_example"], ddof=1) / math.sqrt(10)))
    assert list(r["index"]) == list(range(10))


def test_an_example_is_the_same_alone_and_in_a_batch_of_64_on_a_fixed_grid():
    gm = make_mixture(4, seed=2)
    m = gm.diffused(dd.VP())
    x = uint8_data(gm, 64)
    kw = dict(solver="heun", steps=32, divergence="exact", seed=1, progress=False)
    batch = dd.evaluate_bits_per_dim(m, x, batch_size=64, **kw)["per_example"]
    for i in (0, 17, 63):  # other batch-mates: the same value
        other = x.clone()
        other[torch.arange(64) != i] = 0
        assert abs(dd.evaluate_bits_per_dim(m, other, batch_size=64, **kw)["per_example"][i] - batch[i]) < 1e-9
    singles = dd.evaluate_bits_per_dim(m, x, batch_size=1, limit=8, **kw)["per_example"]  # each example alone
    assert np.abs(singles - batch[:8]).max() < 1e-9


def test_map_style_dataset_equals_tensor_and_bad_input_is_an_error():
    gm = make_mixture(4, seed=3)
    m = gm.diffused(dd.VP())
    x = uint8_data(gm, 6)
    kw = dict(batch_size=4, solver="euler", steps=16, divergence="exact", progress=False)
    a = dd.evaluate_bits_per_dim(m, x, **kw)["per_example"]
    b = dd.evaluate_bits_per_dim(m, [(x[i], 0) for i in range(6)], **kw)["per_example"]
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="integers"):
        dd.evaluate_bits_per_dim(m, x.double() + 0.5, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        dd.evaluate_bits_per_dim(m, x, **{**kw, "batch_size": 0})
    with pytest.raises(TypeError, match="map-style"):
        dd.evaluate_bits_per_dim(m, 3, **kw)


def test_output_files_and_resume_without_recomputing(tmp_path):
    gm = make_mixture(4, seed=4)
    m = gm.diffused(dd.VP())
    x = uint8_data(gm, 10)
    kw = dict(batch_size=4, solver="euler", steps=16, divergence="exact", progress=False, out=tmp_path)
    r = dd.evaluate_bits_per_dim(m, x, **kw)
    assert r["batches_computed"] == 3 and r["batches_resumed"] == 0
    z = np.load(tmp_path / "per_example.npz")
    assert np.array_equal(z["bits_per_dim"], r["per_example"]) and list(z["index"]) == list(range(10))
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["n"] == 10 and s["solver"] == "euler" and s["steps"] == 16 and s["nfe_total"] == 3 * 16
    assert {"mean", "sem", "seconds", "model"} <= set(s)
    (tmp_path / "batches" / "b000001.npz").unlink()
    r2 = dd.evaluate_bits_per_dim(m, x, **kw)
    assert r2["batches_computed"] == 1 and r2["batches_resumed"] == 2
    assert np.array_equal(r2["per_example"], r["per_example"])
    with pytest.raises(ValueError, match="different evaluation"):
        dd.evaluate_bits_per_dim(m, x, **{**kw, "steps": 8})


def _run(args, env, timeout=240):
    p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _env():
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def test_killed_mid_run_and_restarted_finishes_without_recomputing_saved_batches(tmp_path):
    """SIGKILL mid-run, then a restart (about 10 s: two subprocess evaluations, each importing torch)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=TESTS))
    out = tmp_path / "out"
    p = subprocess.Popen(
        [sys.executable, str(script), str(out), "0.01"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "batches").glob("*.npz"))) < 3:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    saved = len(list((out / "batches").glob("*.npz")))
    assert 3 <= saved < 10, saved  # killed mid-run (10 batches in all)
    assert not (out / "summary.json").exists()
    assert not [q for q in (out / "batches").iterdir() if q.suffix != ".npz"]  # atomic: no half-written files
    r = _run([sys.executable, str(script), str(out), "0.001"], _env())
    assert r["batches_computed"] == 10 - saved and r["batches_resumed"] == saved
    fresh = _run([sys.executable, str(script), str(tmp_path / "fresh"), "0.001"], _env())
    assert fresh["batches_computed"] == 10
    a = np.load(out / "per_example.npz")["bits_per_dim"]
    b = np.load(tmp_path / "fresh" / "per_example.npz")["bits_per_dim"]
    assert np.array_equal(a, b)


def test_two_processes_through_accelerate_give_one_process_values(tmp_path):
    """One process against two through accelerate (about 8 s: three subprocesses over gloo)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=TESTS))
    one = _run([sys.executable, str(script), str(tmp_path / "one"), "0"], _env())
    cmd = [
        *accelerate_launch_two_cpu_processes(),
        str(script),
        str(tmp_path / "two"),
        "0",
    ]
    two = _run(cmd, _env(), timeout=300)
    assert one["processes"] == 1 and two["processes"] == 2 and two["batches_computed"] == 5
    a = np.load(tmp_path / "one" / "per_example.npz")
    b = np.load(tmp_path / "two" / "per_example.npz")
    assert list(b["index"]) == list(range(18))
    assert np.array_equal(a["bits_per_dim"], b["bits_per_dim"])  # dopri5 + Hutchinson: the same batches, seeds


def test_an_example_is_the_same_alone_and_in_a_batch_of_64_with_dopri5_and_hutchinson():
    """Issue 12 item 7: per-example step-size control and per-example probes, so batch-mates change nothing."""
    gm = make_mixture(4, seed=2)
    m = gm.diffused(dd.VP())
    x = uint8_data(gm, 64)
    kw = dict(solver="dopri5", divergence="hutchinson", n_probes=2, seed=3, progress=False, rtol=1e-5, atol=1e-5)
    batch = dd.evaluate_bits_per_dim(m, x, batch_size=64, **kw)["per_example"]
    singles = dd.evaluate_bits_per_dim(m, x, batch_size=1, limit=6, **kw)["per_example"]
    assert np.abs(singles - batch[:6]).max() < 1e-5  # float32 round-off only, below the solver tolerance
    shared = dd.evaluate_bits_per_dim(m, x, batch_size=64, control="batch", **kw)["per_example"]
    alone = dd.evaluate_bits_per_dim(m, x, batch_size=1, limit=6, control="batch", **kw)["per_example"]
    assert np.abs(alone - shared[:6]).max() > 1e-5  # the test can fail: a shared control depends on the batch
