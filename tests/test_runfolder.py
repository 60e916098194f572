"""training/runfolder.py: one run per folder (protection, lock), leftovers removed, the log cut back on resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import toy_train_config

from diffdensity.training import load_checkpoint, train
from diffdensity.training.checkpoint import CHECKPOINT_NAME
from diffdensity.training.runfolder import LOCK_NAME, RunLock, _start_time, truncate_log

torch.set_num_threads(1)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _cfg(out, **kw):
    return toy_train_config(out, **{"steps": 6, "log_every": 1, **kw})


def _steps(out):
    return [json.loads(s)["step"] for s in (Path(out) / "log.jsonl").read_text().splitlines()]


def test_an_earlier_run_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "run"
    train(_cfg(out))
    before = (out / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(ValueError, match=r"holds an earlier run .*--resume.*--overwrite"):
        train(_cfg(out, lr=5e-3))
    assert (out / CHECKPOINT_NAME).read_bytes() == before and not (out / LOCK_NAME).exists()
    (out / "notes.txt").write_text("mine")
    train(_cfg(out, steps=4, overwrite=True))  # deletes the earlier run's files, keeps other files
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 4 and _steps(out) == [1, 2, 3, 4]
    assert (out / "notes.txt").read_text() == "mine"
    train(_cfg(out, steps=6, resume=True))
    assert _steps(out) == [1, 2, 3, 4, 5, 6] and not (out / LOCK_NAME).exists()


def test_a_folder_without_a_run_may_be_used(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme").write_text("hi")
    train(_cfg(tmp_path / "x", steps=2))


def _write_lock(folder: Path, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "start": _start_time(pid)}))


def test_a_second_trainer_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, owner.pid)
        with pytest.raises(ValueError, match=rf"in use by another trainer \(pid {owner.pid}"):
            train(_cfg(out))
        assert not (out / CHECKPOINT_NAME).exists()
    finally:
        owner.kill()
        owner.wait()
    train(_cfg(out))  # the owner is gone: its lock is stale and taken over
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 6 and not (out / LOCK_NAME).exists()
    lock = RunLock(out)
    lock.acquire()
    with pytest.raises(ValueError, match="in use"):
        _acquire_from_other_process(out)
    lock.release()


def _acquire_from_other_process(out):
    code = f"from diffdensity.training.runfolder import RunLock; RunLock({str(out)!r}).acquire()"
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC}
    )
    if p.returncode:
        raise ValueError(p.stderr.strip().splitlines()[-1])


def test_truncate_log_keeps_steps_up_to_the_checkpoint(tmp_path):
    lines = [{"step": s, "loss": 1.0} for s in (1, 2, 3, 4)] + [{"step": 4, "test_bpd": 2.0}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(d) + "\n" for d in lines) + '{"step": 5, "lo')
    assert truncate_log(tmp_path, 3) == 3
    assert _steps(tmp_path) == [1, 2, 3]
    assert truncate_log(tmp_path, 3) == 0


_KILLED = textwrap.dedent(
    """
    import sys, time, torch
    torch.set_num_threads(1)
    from diffdensity.training import TrainConfig, train
    def stall(trainer, step, logs):
        if step == 13:  # last checkpoint at step 10: wait here to be killed
            print("STEP13", flush=True)
            time.sleep(120)
    train(TrainConfig(**eval(sys.argv[1])), callbacks=[stall])
    """
)


def test_sigkill_then_resume_cleans_up_and_logs_each_step_once(tmp_path):
    """SIGKILL mid-run leaves a lock, maybe temp files and log lines past the checkpoint; resuming takes the stale
    lock over, removes the temp files, cuts the log back, and ends with the uninterrupted run's weights."""
    kw = dict(steps=40, checkpoint_every=10)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, repr(_cfg(out, **kw).to_dict())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert "STEP13" in proc.stdout.readline(), proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (out / LOCK_NAME).exists() and load_checkpoint(out / CHECKPOINT_NAME)["step"] == 10
    assert _steps(out) == list(range(1, 13))  # steps 11 and 12 logged past the checkpoint
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"x" * 1000)  # what a kill during a write leaves
    train(_cfg(out, resume=True, **kw))
    assert _steps(out) == list(range(1, 41))
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == LOCK_NAME] == []
    train(_cfg(tmp_path / "full", **kw))
    a, b = load_checkpoint(out / CHECKPOINT_NAME), load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)
    for k in a["net"]:
        assert torch.equal(a["net"][k], b["net"][k]), k


def _race(folder: str, n: int) -> int:
    """``n`` threads of this process try to take the lock of ``folder`` at once; how many got it (kept held)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier, won = threading.Barrier(n), []

    def attempt(_):
        lock = RunLock(folder)
        barrier.wait()
        try:
            lock.acquire()
        except ValueError:
            return
        won.append(lock)

    with ThreadPoolExecutor(n) as ex:
        list(ex.map(attempt, range(n)))
    return len(won)


def test_many_simultaneous_lock_attempts_give_exactly_one_owner(tmp_path):
    """200 attempts at once (8 processes × 25 threads) on one run folder, 50 times: exactly one owner each time,
    including when a stale lock (its owner gone) is there to be taken over."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("fork")) as pool:
        for rep in range(50):
            folder = tmp_path / f"r{rep}"
            folder.mkdir()
            if rep % 2:
                _write_lock(folder, dead.pid)  # stale: every attempt sees it and only one may take it over
            owners = sum(pool.map(_race, [str(folder)] * 8, [25] * 8))
            assert owners == 1, (rep, owners)


def test_a_lock_held_in_this_process_is_not_taken_by_another_object(tmp_path):
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    first.acquire()
    with pytest.raises(ValueError, match="in use"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
    assert not (tmp_path / LOCK_NAME).exists()
