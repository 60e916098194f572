"""The CPU thread policy of the command line (torch-free): ``--threads N`` on every command, else
``DIFFDENSITY_THREADS``, else ``OMP_NUM_THREADS`` as the user set it, else half the CPUs this process may use, shared
by the processes of an ``accelerate launch`` — torch's default (every core per process) oversubscribes a shared
machine (measured on 2 shared cores: bits/dim of 20 digits 550 s with 2 threads, 88 s with 1; docs/guides/cli.md)."""
from __future__ import annotations

import os
import sys

__all__ = ["default_threads", "apply_threads"]


def default_threads() -> int | None:
    """The policy's thread count, or None where the user's OMP_NUM_THREADS stands."""
    if os.environ.get("DIFFDENSITY_THREADS"):
        return _positive(os.environ["DIFFDENSITY_THREADS"], "DIFFDENSITY_THREADS")
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cpus // (2 * max(1, procs)))


def apply_threads(n: int | None = None) -> int | None:
    """Use ``n`` threads (default: :func:`default_threads`): set now in torch when it is loaded and ``n`` was given,
    else through OMP_NUM_THREADS/MKL_NUM_THREADS before torch starts (a policy default never changes a running
    process's torch). Returns the count set, or None."""
    explicit = n is not None
    n = _positive(n, "--threads") if explicit else default_threads()
    if n is None:
        return None
    if "torch" in sys.modules:
        if explicit:
            sys.modules["torch"].set_num_threads(n)
            return n
        return None
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(n)
    return n


def _positive(v, name: str) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(v).strip() not in (str(n), f"{n}.0"):
        raise ValueError(f"{name}={v!r}: need a positive integer number of CPU threads.")
    return n
