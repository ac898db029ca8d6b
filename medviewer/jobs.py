"""Progress and cancellation for long pure-Python jobs (load, encode, export).

Compute code takes a :class:`JobControl` instead of touching Qt: the GUI wraps it in a
worker thread and forwards progress to a progress bar; the CLI prints it or ignores it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[int, int, str], None]


class JobCancelled(Exception):
    """Raised inside a job when the user cancelled it; never shown as an error."""


class JobControl:
    """Progress reporting plus a cancellation flag shared between a job and its owner."""

    def __init__(self, progress: ProgressCallback | None = None):
        self._progress = progress
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """A cancellation point: raise :class:`JobCancelled` if the user asked to stop."""
        if self._cancel.is_set():
            raise JobCancelled()

    def report(self, done: int, total: int, message: str = "") -> None:
        """Report progress and act as a cancellation point."""
        self.check()
        if self._progress is not None:
            self._progress(done, total, message)


def ensure_control(control: JobControl | None) -> JobControl:
    return control if control is not None else JobControl()
