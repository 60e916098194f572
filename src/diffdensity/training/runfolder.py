"""A run folder belongs to one run: protection of earlier runs, the lock, leftovers, and the log on resume.

* A folder holding an earlier run (``checkpoint.pt``, ``log.jsonl`` or ``model.safetensors``) is only used with
  ``resume`` (continue it) or ``overwrite`` (its run files are deleted first).
* ``.lock`` holds the owner's pid, host and process start time; a second trainer on the same folder is refused
  while the owner lives, and a lock whose owner is gone (killed) is taken over. The check and the take-over run
  under ``flock`` on the folder, so two processes can never both own it.
* Temporary files of interrupted atomic writes are removed, and on resume ``log.jsonl`` is cut back to the
  checkpoint's step so no step is logged twice.
"""
from __future__ import annotations

import json
import os  # noqa: F401 - the lock opens files through os (tests patch runfolder.os.open)
from pathlib import Path

from .._io_utils import LOCK_NAME, FolderLock, _start_time  # noqa: F401 - _start_time: used by tests
from ..io import CONFIG_NAME, WEIGHTS_NAME, atomic_write, clean_temp_files
from .checkpoint import CHECKPOINT_NAME

__all__ = ["RunLock", "prepare_run_folder", "truncate_log", "LOCK_NAME", "LOG_NAME"]

LOG_NAME = "log.jsonl"
_RUN_MARKERS = (CHECKPOINT_NAME, LOG_NAME, WEIGHTS_NAME)


class RunLock(FolderLock):
    """An exclusive lock on a run folder (see :class:`diffdensity._io_utils.FolderLock`)."""

    who = "trainer"


def _run_files(out: Path) -> list[Path]:
    files = [out / n for n in (*_RUN_MARKERS, CONFIG_NAME)] + sorted(out.glob("samples_*.png"))
    return [p for p in files if p.is_file()]


def prepare_run_folder(out, resume: bool, overwrite: bool) -> RunLock:
    """Create ``out``, refuse to clobber an earlier run, take the lock, remove leftovers; returns the held lock.

    ValueError (one line) if ``out`` is a file or cannot be written, holds an earlier run without ``resume`` /
    ``overwrite``, or is locked by a running trainer.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot use {out} as the run folder: {e.strerror or e} "
                         f"({'it is a file' if out.is_file() else 'choose another --out'}).") from None
    lock = RunLock(out)
    try:
        lock.acquire()
    except OSError as e:
        raise ValueError(f"cannot write in the run folder {out}: {e.strerror or e}; choose another --out.") from None
    try:
        _protect(out, resume, overwrite)
        clean_temp_files(out)
    except BaseException:
        lock.release()
        raise
    return lock


def _protect(out: Path, resume: bool, overwrite: bool) -> None:
    earlier = [p.name for p in _run_files(out) if p.name in _RUN_MARKERS]
    if not earlier or resume:
        return
    if not overwrite:
        raise ValueError(f"{out} holds an earlier run ({', '.join(earlier)}); pass --resume to continue it or "
                         "--overwrite to delete it and start over (or choose another --out).")
    for p in _run_files(out):
        p.unlink()


def truncate_log(out, step: int) -> int:
    """Keep only the ``log.jsonl`` records of steps <= ``step`` (the checkpoint's); returns how many were dropped."""
    path = Path(out) / LOG_NAME
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            rec_step = json.loads(line).get("step", 0)
        except (ValueError, AttributeError):
            rec_step = None  # a torn last line from a kill
        if rec_step is not None and rec_step <= step:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(s + "\n" for s in kept)))
    return dropped
