"""Background jobs: run a blocking load on a pool thread, report back with Qt signals.

The job function takes a :class:`~medviewer.jobs.JobControl` so it can report progress and
notice cancellation; results and exceptions travel back as signal arguments and are
handled on the GUI thread. The window therefore never blocks on I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Signal, Slot

from medviewer.jobs import JobCancelled, JobControl


class JobSignals(QObject):
    """Signals of a :class:`BackgroundJob`, always emitted on the GUI thread.

    The worker emits the private ``_from_worker_*`` signals; they reach this object's
    slots through queued connections (it lives on the GUI thread) and are re-emitted as the
    public signals there, so even plain Python callables connected to them run on the GUI
    thread.
    """

    progress = Signal(int, int, str)
    succeeded = Signal(object)
    failed = Signal(object)  # the exception instance
    cancelled = Signal()
    finished = Signal()  # after any of the three outcomes

    _from_worker_progress = Signal(int, int, str)
    _from_worker_outcome = Signal(str, object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        #: "" while running, then "succeeded", "failed" or "cancelled" (set on the GUI thread
        #: before the public signals fire, so their handlers and pollers agree).
        self.outcome = ""
        self.payload: object = None
        self._from_worker_progress.connect(self._relay_progress)
        self._from_worker_outcome.connect(self._relay_outcome)

    @Slot(int, int, str)
    def _relay_progress(self, done: int, total: int, message: str) -> None:
        self.progress.emit(done, total, message)

    @Slot(str, object)
    def _relay_outcome(self, outcome: str, payload: object) -> None:
        self.outcome, self.payload = outcome, payload
        if outcome == "succeeded":
            self.succeeded.emit(payload)
        elif outcome == "failed":
            self.failed.emit(payload)
        else:
            self.cancelled.emit()
        self.finished.emit()


class BackgroundJob(QRunnable):
    """Runs ``function(control)`` on a QThreadPool thread.

    ``cancellable`` tells owners whether the user (or closing the window) may stop it; a
    job that must finish, like a session save, says False.
    """

    def __init__(self, function: Callable[[JobControl], Any], description: str = "", cancellable: bool = True):
        super().__init__()
        self.setAutoDelete(False)  # the owner keeps a reference until ``finished``
        self.function = function
        self.description = description
        self.cancellable = cancellable
        self.signals = JobSignals()
        self.control = JobControl(self._report_progress)

    def _report_progress(self, done: int, total: int, message: str) -> None:
        self.signals._from_worker_progress.emit(int(done), int(total), str(message))

    def cancel(self) -> None:
        self.control.cancel()

    @property
    def cancelled(self) -> bool:
        return self.control.cancelled

    @property
    def outcome(self) -> str:
        """"" until the outcome reached the GUI thread, then "succeeded", "failed" or "cancelled"."""
        return self.signals.outcome

    @property
    def done(self) -> bool:
        return bool(self.signals.outcome)

    def run(self) -> None:  # runs on the pool thread
        outcome, payload = "cancelled", None
        try:
            result = self.function(self.control)
        except JobCancelled:
            pass
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI
            outcome, payload = "failed", exc
        else:
            if not self.control.cancelled:
                outcome, payload = "succeeded", result
        self.signals._from_worker_outcome.emit(outcome, payload)
