"""Torch-free file helpers: the one output writer (atomic: temporary file + ``os.replace`` in the same folder, so a
link at the destination is replaced, never written through; a full disk keeps the earlier file and says so), the
folder lock and the claim of an output folder (exclusive, refused over earlier results or the command's inputs)."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path

__all__ = ["atomic_write", "clean_temp_files", "write_json", "write_npz", "DiskFullError", "FolderLock",
           "output_folder", "output_file", "LOCK_NAME"]

LOCK_NAME = ".lock"


class DiskFullError(OSError):
    """No space left on the device (or quota) while writing: the earlier file is kept."""


def _umask() -> int:
    """The process's current umask (read from /proc where possible: os.umask can only be read by setting it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, fsync it, then ``os.replace`` it onto ``path``.

    A crash or a signal at any moment leaves either the old file or the new one, never a half-written one; the
    temporary file (``.<name>.*.tmp``) is removed if ``write`` fails (one left by a SIGKILL is removed by
    :func:`clean_temp_files`). The file gets the permissions of an ordinary new file (0666 minus the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _write_and_replace(path, write)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError ("file write failed")
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e) or \
                _low_space(path.parent):
            raise DiskFullError(errno.ENOSPC, f"no space left on device writing {path}; the earlier {path.name} "
                                f"(if any) is kept: free space and run again (training: --resume)") from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def _low_space(folder: Path, need: int = 1 << 20) -> bool:
    """Whether the device holding ``folder`` has less than ``need`` bytes free (a write failed for lack of space)."""
    try:
        return shutil.disk_usage(folder).free < need
    except OSError:
        return False


def _write_and_replace(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # after write: mkstemp and some writers (safetensors) make 0600 files
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # replaces a link at ``path`` itself: its target is never written
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def clean_temp_files(folder) -> list[Path]:
    """Remove the temporary files (``.<name>.*.tmp``) that interrupted :func:`atomic_write` calls left in
    ``folder``; only call it when no other process writes there (the trainer holds the run lock). Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _jsonable(obj):
    """Numbers that json does not know (numpy / torch scalars, 0-d tensors) as floats."""
    try:
        return float(obj)
    except (TypeError, ValueError):
        raise TypeError(f"{type(obj).__name__} is not JSON serializable") from None


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (the one JSON writer of the package)."""
    text = json.dumps(obj, indent=2, default=_jsonable) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_npz(path, **arrays) -> Path:
    """Write ``arrays`` as an uncompressed .npz to ``path`` atomically."""
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def save_png(fig, path, dpi: int = 100) -> Path:
    """A matplotlib figure as a PNG at ``path``, atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


# ------------------------------------------------------------------------------------------------ folder lock
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


class FolderLock:
    """An exclusive lock on a folder: ``.lock`` (created with O_EXCL, holding the owner's pid, host, start time and
    a token) checked and taken over only under :func:`_folder_mutex`; a lock whose owner is gone is taken over."""

    who = "diffdensity command"

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
                    f"{self.path.parent} is in use by another {self.who} (pid {owner['pid']} on {owner['host']}); "
                    f"wait for it to finish, or remove {self.path} if nothing runs there.")
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


# ------------------------------------------------------------------------------------------------ output claims
def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _refuse_inputs(out: Path, inputs, option: str) -> None:
    """ValueError if an input is the output, or lies inside the output folder (it would be overwritten)."""
    for src in (i for i in inputs if i is not None and os.path.exists(i)):
        real_src, real_out = os.path.realpath(src), os.path.realpath(out)
        if _same_file(src, out) or (os.path.isdir(out) and real_src.startswith(real_out + os.sep)):
            raise ValueError(f"{option} {out} would overwrite the input {src}; write the output elsewhere.")


def output_file(path, overwrite: bool = False, inputs=(), option: str = "--out") -> Path:
    """Check an output file before work starts: not an input, not a folder, not an earlier result unless
    ``overwrite``. Write it with :func:`write_json` / :func:`atomic_write` (never through a link)."""
    path = Path(path)
    _refuse_inputs(path, inputs, option)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; pass a file name.")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ValueError(f"{option} {path} exists; pass another file or --overwrite.")
    return path


def _results(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME and not p.name.endswith(".tmp"))


@contextlib.contextmanager
def output_folder(out, overwrite: bool = False, inputs=(), resumable=None, option: str = "--out", lock: bool = True):
    """Claim the output folder ``out`` for one command (its lock held until the block ends): refused if it is a
    file, holds an input, is in use by another command, or holds earlier results, unless ``overwrite`` or
    ``resumable(out)`` (results this command may continue). Yields ``out`` as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out} is a file; pass a folder.")
    _refuse_inputs(out, inputs, option)
    out.mkdir(parents=True, exist_ok=True)
    held = FolderLock(out)
    if lock:
        held.acquire()
    try:
        earlier = _results(out)
        if earlier and not overwrite and not (resumable is not None and resumable(out)):
            raise ValueError(f"{option} {out} already holds results ({', '.join(earlier[:4])}); pass another folder "
                             "or --overwrite.")
        yield out
    finally:
        held.release()
