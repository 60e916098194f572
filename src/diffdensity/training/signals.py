"""SIGINT / SIGTERM during training: finish the current step, write a checkpoint, return (a second SIGINT
interrupts at once)."""
from __future__ import annotations

import signal
import threading

__all__ = ["StopFlag"]


class StopFlag:
    """Set by SIGINT/SIGTERM while installed; the trainer checks it after every step."""

    def __init__(self):
        self.requested = False
        self.signum = None
        self._old = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.getsignal(sig)
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum

    def restore(self) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)
        self._old = {}

    def __enter__(self) -> "StopFlag":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()
