"""Torch-free file helpers: atomic writes (temporary file + ``os.replace`` in the same folder) and JSON output."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "clean_temp_files", "write_json"]


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # after write: mkstemp and some writers (safetensors) make 0600 files
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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
