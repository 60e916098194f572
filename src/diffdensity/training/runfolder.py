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

import contextlib
import fcntl
import json
import os
import socket
import uuid
from pathlib import Path

from ..io import CONFIG_NAME, WEIGHTS_NAME, atomic_write, clean_temp_files
from .checkpoint import CHECKPOINT_NAME

__all__ = ["RunLock", "prepare_run_folder", "truncate_log", "LOCK_NAME", "LOG_NAME"]

LOCK_NAME = ".lock"
LOG_NAME = "log.jsonl"
_RUN_MARKERS = (CHECKPOINT_NAME, LOG_NAME, WEIGHTS_NAME)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live owner from a new process that reused its pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


_HELD: set[str] = set()  # tokens of the locks this process holds (tells its own live locks from stale ones)


@contextlib.contextmanager
def _folder_mutex(folder: Path):
    """``flock`` on the folder itself: checking, taking over and creating ``.lock`` happen inside one kernel-held
    critical section (released by the kernel if the holder dies), so two processes never both take a stale lock."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class RunLock:
    """An exclusive lock on a run folder: ``.lock`` (created with O_EXCL, holding the owner's pid, host, start
    time and a token) checked and taken over only under :func:`_folder_mutex`; stale locks are taken over."""

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self.held = False
        self.token = uuid.uuid4().hex

    def _owner(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
                "token": self.token}

    def _live_owner(self) -> dict | None:
        """The lock's owner if it still runs; None for a stale (or unreadable, half-written) lock."""
        try:
            owner = json.loads(self.path.read_text())
            pid = int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if owner.get("host") != socket.gethostname():
            return owner  # cannot check another machine's processes: assume it runs
        if pid == os.getpid():
            return owner if owner.get("token") in _HELD else None
        same = owner.get("start") is None or owner.get("start") == _start_time(pid)
        return owner if _alive(pid) and same else None

    def acquire(self) -> None:
        """Take the lock or raise ValueError naming the running owner."""
        with _folder_mutex(self.path.parent):
            owner = self._live_owner()
            if owner is not None:
                raise ValueError(
                    f"{self.path.parent} is in use by another trainer (pid {owner['pid']} on {owner['host']}); "
                    f"wait for it to finish, or remove {self.path} if no trainer runs there.")
            self.path.unlink(missing_ok=True)  # stale: its owner is gone
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o666)
            with os.fdopen(fd, "w") as f:
                json.dump(self._owner(), f)
            _HELD.add(self.token)
            self.held = True

    def release(self) -> None:
        """Remove ``.lock`` if it is still this lock's."""
        if not self.held:
            return
        with _folder_mutex(self.path.parent):
            try:
                mine = json.loads(self.path.read_text()).get("token") == self.token
            except (OSError, ValueError, AttributeError):
                mine = False
            if mine:
                self.path.unlink(missing_ok=True)
        _HELD.discard(self.token)
        self.held = False


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
