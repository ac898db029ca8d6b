"""Qt adapter around :class:`medviewer.ai.engine.Job`: results come back on the GUI thread.

A job's done/progress callbacks run on the AI worker thread. :class:`JobBridge` re-emits
them through signals of a QObject that lives on the GUI thread, so Qt queues them and the
handlers (which touch widgets and VTK) always run on the GUI thread. The GUI never waits
on a job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot


class JobBridge(QObject):
    """``watch(job, on_done, on_progress)``: call the handlers on the GUI thread."""

    _done = Signal(object)
    _progress = Signal(object, int, int, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._handlers: dict[int, tuple[Callable[[Any], None], Callable[[Any, int, int, str], None] | None]] = {}
        self._closed = False
        self._done.connect(self._deliver_done)
        self._progress.connect(self._deliver_progress)

    def watch(self, job, on_done: Callable[[Any], None], on_progress: Callable[[Any, int, int, str], None] | None = None):
        self._handlers[job.id] = (on_done, on_progress)
        if on_progress is not None:
            job.add_progress_callback(lambda j: self._emit_progress(j))
        job.add_done_callback(self._emit_done)
        return job

    # worker thread
    def _emit_done(self, job) -> None:
        if not self._closed:
            self._done.emit(job)

    def _emit_progress(self, job) -> None:
        if not self._closed:
            done, total, message = job.progress
            self._progress.emit(job, int(done), int(total), str(message))

    # GUI thread
    @Slot(object)
    def _deliver_done(self, job) -> None:
        handlers = self._handlers.pop(job.id, None)
        if handlers is not None and not self._closed:
            handlers[0](job)

    @Slot(object, int, int, str)
    def _deliver_progress(self, job, done: int, total: int, message: str) -> None:
        handlers = self._handlers.get(job.id)
        if handlers is not None and handlers[1] is not None and not self._closed:
            handlers[1](job, done, total, message)

    @property
    def pending(self) -> int:
        return len(self._handlers)

    def close(self) -> None:
        self._closed = True
        self._handlers.clear()
