"""The main window's file work on background threads: export, import, session save and open.

Each operation copies what it needs on the GUI thread (label map, segments, session state),
so edits made while the job runs cannot race with it, runs the slow part (compressing,
reading, writing) as a :class:`~medviewer.ui.workers.BackgroundJob` on its own thread pool,
and applies the result on the GUI thread when the job reports back. A failure leaves the
document as it was and shows a message box naming the file; writers are atomic, so a
cancelled or failed job leaves no half-written file.

It also asks about unsaved changes (Save / Discard / Cancel) before the window closes, a
volume closes or a session replaces modified labels. "Saved" means written to a session
file, the only format that keeps labels, segments, provenance and view together; exports
do not clear the flag. The questions are non-blocking message boxes (``unsaved_box``), or
answered at once by ``unsaved_policy`` (scripts, tests).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QThreadPool, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressBar, QToolButton

from medviewer.jobs import JobControl
from medviewer.ui.event_bridge import EventBridge
from medviewer.ui.workers import BackgroundJob

log = logging.getLogger(__name__)

SAVE, DISCARD, CANCEL = "save", "discard", "cancel"
SESSION_FILE_FILTER = "medviewer session (*.mvsession)"
#: How long closing the window waits for running file jobs (a session save is never cut short).
SHUTDOWN_WAIT_MS = 60_000


class FileJobs(QObject):
    """Background file operations and unsaved-changes questions of one main window."""

    job_finished = Signal(object)  # the BackgroundJob, after its outcome was handled

    def __init__(self, window, controller):
        super().__init__(window)
        self.window = window
        self.document = window.document
        self.controller = controller
        self.jobs: list[BackgroundJob] = []
        #: Answer to "unsaved changes?" without asking (SAVE / DISCARD / CANCEL); None: ask.
        self.unsaved_policy: str | None = None
        self.unsaved_box: QMessageBox | None = None
        self.last_question = ""
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._shut_down = False
        self._close_requested = False  # the close under way comes from the user: confirm first
        self._close_confirmed = False
        self._closing_after_save = False
        self._build_status_widgets()
        self._bridge = EventBridge(self.document.modified_changed, lambda *_: self.window.update_window_title(), self)

    def _build_status_widgets(self) -> None:
        bar = self.window.statusBar()
        self.progress_bar = QProgressBar(bar)
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.hide()
        self.cancel_button = QToolButton(bar)
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop the running export, import or session opening (saves always finish)")
        self.cancel_button.clicked.connect(self.cancel_all)
        self.cancel_button.hide()
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)

    # -- running jobs --------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def start(self, description: str, function: Callable[[JobControl], object], on_success: Callable,
              on_error: Callable | None = None, on_cancel: Callable | None = None,
              cancellable: bool = True) -> BackgroundJob:
        """Run ``function(control)`` on the pool; the callbacks run on the GUI thread."""
        job = BackgroundJob(function, description, cancellable)
        job.applied = None  # what the GUI-side step produced (written path, import mapping, ...)
        job.signals.progress.connect(lambda done, total, message: self._on_progress(job, done, total, message))
        job.signals.succeeded.connect(lambda result: self._deliver(on_success, result))
        job.signals.failed.connect(lambda exc: self._deliver(on_error or (lambda e: self.report_failure(description, e)), exc))
        job.signals.cancelled.connect(lambda: self._deliver(on_cancel or (lambda _: None), None))
        job.signals.cancelled.connect(lambda: self.window.statusBar().showMessage(f"{description}: cancelled", 6000))
        job.signals.finished.connect(lambda: self._on_finished(job))
        self.jobs.append(job)
        self._show_progress(job, 0, 0, description)
        self.window.statusBar().showMessage(f"{description} ...")  # a busy bar shows no text in every style
        self._pool.start(job)
        return job

    def cancel_all(self) -> None:
        """Cancel every running job that may stop early (exports, imports, opening)."""
        for job in self.jobs:
            if job.cancellable:
                job.cancel()

    def _deliver(self, callback: Callable, payload) -> None:
        if self._shut_down:
            return
        try:
            callback(payload)
        except Exception as exc:  # noqa: BLE001 - a failing handler must not take the app down
            log.exception("handling a file job's outcome failed")
            self.window._report_error("File operation failed", f"unexpected error ({type(exc).__name__}: {exc})")

    def _on_progress(self, job: BackgroundJob, done: int, total: int, message: str) -> None:
        if self.jobs and job is self.jobs[-1]:
            self._show_progress(job, done, total, message or job.description)

    def _show_progress(self, job: BackgroundJob, done: int, total: int, message: str) -> None:
        bar = self.progress_bar
        if total > 0:
            bar.setRange(0, total)
            bar.setValue(min(done, total))
            bar.setFormat(f"{message}  %p%")
        else:
            bar.setRange(0, 0)
            bar.setFormat(message)
        bar.setToolTip(message)
        bar.show()
        self.cancel_button.setVisible(any(j.cancellable for j in self.jobs))

    def _on_finished(self, job: BackgroundJob) -> None:
        if self._shut_down:
            return
        if job in self.jobs:
            self.jobs.remove(job)
        if self.jobs:
            self._show_progress(self.jobs[-1], 0, 0, self.jobs[-1].description)
        else:
            self.progress_bar.hide()
            self.cancel_button.hide()
        self.job_finished.emit(job)
        # Dropping the signal object drops the connections (and the window they reference).
        job.signals.deleteLater()

    def report_failure(self, title: str, exc: BaseException, path: str | Path = "", doing: str = "") -> None:
        """A message box naming the file and the problem (the error may name only its folder)."""
        message = self.window._describe_error(exc, str(path), doing or title.lower())
        if path and str(path) not in message:
            message += f"\n(file: {path})"
        self.window._report_error(title, message)

    # -- export and import --------------------------------------------------------------------
    def export(self, path, fmt: str | None = None, overwrite: bool = False, on_success: Callable | None = None,
               on_error: Callable | None = None, **options) -> BackgroundJob | None:
        """Write the active segmentation as it is now; ``options`` go to ``export_segmentation``."""
        from medviewer.export.formats import export_segmentation

        volume = self.document.active_volume
        if volume is None:
            self.controller.message.emit("Open a scan first")
            return None
        segmentation = self.document.segmentation(volume)
        labels = segmentation.labelmap.array.copy()
        geometry = segmentation.labelmap.geometry
        segments = copy.deepcopy(list(segmentation.segments))
        path = str(path)

        def work(control: JobControl):
            control.report(0, 0, f"Exporting {Path(path).name}")
            return export_segmentation(path, labels, geometry, segments, volume, fmt=fmt, overwrite=overwrite,
                                       control=control, **options)

        def done(result) -> None:
            job.applied = result
            names = ", ".join(p.name for p in result.paths[:3]) + (" ..." if len(result.paths) > 3 else "")
            self.controller.message.emit(f"Exported {names}")
            if on_success is not None:
                on_success(result)

        def failed(exc) -> None:
            if on_error is not None:
                on_error(exc)
            else:
                self.report_failure("Export failed", exc, path, "exporting")

        job = self.start(f"Exporting {Path(path).name}", work, done, failed)
        return job

    def import_segmentation(self, path) -> BackgroundJob | None:
        """Read a label map / .seg.nrrd / DICOM SEG / session and add its segments (one undo step)."""
        from medviewer.io.segmentation_files import load_segmentation

        volume = self.document.active_volume
        if volume is None:
            self.controller.message.emit("Open a scan first")
            return None
        path = str(path)

        def work(control: JobControl):
            control.report(0, 0, f"Reading {Path(path).name}")
            return load_segmentation(path, volume, control=control)

        def done(loaded) -> None:
            if volume not in self.document.volumes:
                self.window._report_error("Import failed", f"{path}: the scan was closed while the file was read")
                return
            try:
                mapping = self.controller.editor_for(volume).import_segments(loaded.array, loaded.segments, path)
            except Exception as exc:  # noqa: BLE001 - reported; the editor changes nothing on refusal
                self.report_failure("Import failed", exc, path, "importing")
                return
            job.applied = mapping
            note = "; ".join(loaded.warnings)
            self.controller.message.emit(f"Imported {len(mapping)} segment(s) from {Path(path).name}"
                                         + (f" ({note})" if note else ""))

        job = self.start(f"Importing {Path(path).name}", work, done,
                         lambda exc: self.report_failure("Import failed", exc, path, "importing"))
        return job

    # -- sessions -----------------------------------------------------------------------------
    def save_session(self, path, volume=None, then: Callable[[], None] | None = None,
                     on_abort: Callable[[], None] | None = None) -> BackgroundJob | None:
        """Save ``volume``'s (default: the active) segmentation as a session; edits may go on meanwhile."""
        from medviewer.io.session import save_session, session_file_path

        volume = volume if volume is not None else self.document.active_volume
        if volume is None:
            return None
        state = self.controller.snapshot(volume)  # a copy, taken here on the GUI thread
        revision = self.document.revision(volume)
        target = session_file_path(path)

        def work(control: JobControl):
            return save_session(target, state, control=control)

        def done(written) -> None:
            job.applied = written
            self.document.mark_saved(volume, revision, str(written))
            self.controller.message.emit(f"Session saved to {written}")
            if then is not None:
                then()

        def failed(exc) -> None:
            self.report_failure("Saving the session failed", exc, target, "saving the session")
            if on_abort is not None:
                on_abort()

        # Not cancellable: closing the window waits for it, and it cannot leave a partial file.
        job = self.start(f"Saving session {target.name}", work, done, failed,
                         on_cancel=lambda _: on_abort() if on_abort is not None else None, cancellable=False)
        return job

    def save_sessions(self, volumes, then: Callable[[], None], on_abort: Callable[[], None] | None = None) -> bool:
        """Save each volume to its session file (asking for a name where it has none), then ``then()``."""
        targets = []
        for volume in volumes:
            path = self.document.segmentation(volume).session_path or self.ask_session_path(volume)
            if not path:
                if on_abort is not None:
                    on_abort()
                return False
            targets.append((volume, path))
        pending = {"left": len(targets), "aborted": False}

        def one_saved() -> None:
            pending["left"] -= 1
            if pending["left"] == 0 and not pending["aborted"]:
                then()

        def one_failed() -> None:
            if not pending["aborted"]:
                pending["aborted"] = True
                if on_abort is not None:
                    on_abort()

        for volume, path in targets:
            self.save_session(path, volume, then=one_saved, on_abort=one_failed)
        return True

    def ask_session_path(self, volume) -> str | None:
        name = (volume.info.name or "session").replace(" ", "_")
        path, _ = QFileDialog.getSaveFileName(self.window, f"Save session of {volume.info.name or 'the scan'}",
                                              str(Path.home() / f"{name}.mvsession"), SESSION_FILE_FILTER)
        return path or None

    def open_session(self, path, recovered: bool = False,
                     on_done: Callable[[bool], None] | None = None) -> BackgroundJob:
        """Open a session: onto the shown scan when it is on the same grid, else with its scan.

        ``recovered`` (an autosave) leaves the result marked unsaved. ``on_done(ok)`` follows.
        """
        from medviewer.io.session import load_session, open_session

        path = str(path)
        shown = self.document.active_volume
        shown_geometry = shown.geometry if shown is not None else None
        finish = on_done or (lambda ok: None)

        def work(control: JobControl):
            control.report(0, 0, f"Reading {Path(path).name}")
            state = load_session(path)
            if shown_geometry is not None and shown_geometry.same_grid(state.geometry):
                return None, state
            if state.scan_source == "demo":
                return "demo", state
            volume, state = open_session(path, control=control, state=state)
            control.report(1, 1, "Measuring intensities")
            volume.intensity_range()
            volume.percentiles(1.0, 99.0)
            return volume, state

        def done(result) -> None:
            volume, state = result
            if volume is None:
                if shown not in self.document.volumes:
                    self.window._report_error("Opening the session failed", f"{path}: the scan was closed meanwhile")
                    finish(False)
                    return
                self.confirm_unsaved([shown], "Opening the session replaces them.",
                                     lambda: self._apply_session(job, path, shown, state, recovered, finish),
                                     on_cancel=lambda: finish(False))
                return
            if isinstance(volume, str):  # "demo": the built-in case, rebuilt here
                volume = self.window.open_demo()
            else:
                self.document.add_volume(volume, make_active=True)
            self._apply_session(job, path, volume, state, recovered, finish)

        def failed(exc) -> None:
            self.report_failure("Opening the session failed", exc, path, "opening the session")
            finish(False)

        job = self.start(f"Opening session {Path(path).name}", work, done, failed, on_cancel=lambda _: finish(False))
        return job

    def _apply_session(self, job, path: str, volume, state, recovered: bool, finish) -> None:
        from medviewer.io.session import restore_session

        if volume not in self.document.volumes:
            finish(False)
            return
        try:
            restore_session(self.document, volume, state)
        except Exception as exc:  # noqa: BLE001 - reported
            self.report_failure("Opening the session failed", exc, path, "opening the session")
            finish(False)
            return
        if not recovered:
            self.document.mark_saved(volume, session_path=path)
        self.controller.session_restored(volume, state)
        job.applied = volume
        self.controller.message.emit(f"Session {Path(path).name} {'recovered' if recovered else 'opened'}")
        finish(True)

    # -- unsaved changes ----------------------------------------------------------------------
    def _describe_unsaved(self, volumes, consequence: str) -> tuple[str, str]:
        names = ", ".join(v.info.name or "Untitled" for v in volumes)
        text = f"The segmentation of {names} has unsaved changes. {consequence}"
        details = ("Save writes a session file (.mvsession). Exported files (NIfTI, Slicer, DICOM SEG, ...) "
                   "do not count as saved: only a session keeps the labels, segments, provenance and view together.")
        self.last_question = f"{text}\n{details}"
        return text, details

    def ask_unsaved(self, volumes, consequence: str, on_answer: Callable[[str], None]) -> None:
        """Ask Save / Discard / Cancel about ``volumes``' unsaved changes (without blocking)."""
        text, details = self._describe_unsaved(volumes, consequence)
        if self.unsaved_policy is not None:
            on_answer(self.unsaved_policy)
            return
        if self.unsaved_box is not None:
            self.unsaved_box.raise_()
            return
        buttons = QMessageBox.StandardButton
        box = QMessageBox(QMessageBox.Icon.Warning, "Unsaved changes", text,
                          buttons.Save | buttons.Discard | buttons.Cancel, self.window)
        box.setInformativeText(details)
        box.setDefaultButton(buttons.Save)
        box.setEscapeButton(buttons.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        answers = {buttons.Save: SAVE, buttons.Discard: DISCARD, buttons.Cancel: CANCEL}
        box.buttonClicked.connect(lambda button: on_answer(answers.get(box.standardButton(button), CANCEL)))
        box.destroyed.connect(lambda *_: setattr(self, "unsaved_box", None))
        self.unsaved_box = box
        box.open()

    def confirm_unsaved(self, volumes, consequence: str, proceed: Callable[[], None],
                        on_cancel: Callable[[], None] | None = None) -> None:
        """Run ``proceed`` now if nothing is unsaved, else after the user saved or discarded."""
        modified = [v for v in volumes if self.document.is_modified(v)]
        if not modified:
            proceed()
            return

        def answered(answer: str) -> None:
            if answer == DISCARD:
                proceed()
            elif answer == SAVE:
                self.save_sessions(modified, then=proceed, on_abort=on_cancel)
            elif on_cancel is not None:
                on_cancel()

        self.ask_unsaved(modified, consequence, answered)

    def close_volume(self, volume) -> None:
        """Close ``volume`` once its unsaved changes are saved or discarded."""
        self.confirm_unsaved([volume], "Closing the volume discards them.",
                             lambda: volume in self.document.volumes and self.document.remove_volume(volume))

    def request_close(self) -> bool:
        """Close the window as the user asked (Quit): unsaved changes are confirmed first."""
        self._close_requested = True
        try:
            return self.window.close()
        finally:
            self._close_requested = False

    def allow_close(self, event) -> bool:
        """The window's closeEvent asks this first; False keeps the window open.

        Only a close by the user (window button, Quit) asks; ``close()`` from code (scripts,
        tests) closes at once. Discard closes (the clean exit deletes the autosave); Cancel
        keeps everything; Save closes once every session is written.
        """
        if self._shut_down or self._close_confirmed:
            return True
        if self._closing_after_save:
            return False
        if not (event.spontaneous() or self._close_requested):
            return True
        modified = self.document.modified_volumes()
        if not modified:
            return True
        consequence = "Closing medviewer discards them."
        if self.unsaved_policy is not None:  # answered at once: decide inside this close
            self._describe_unsaved(modified, consequence)
            return self._on_close_answer(self.unsaved_policy, modified, close_now=False)
        self.ask_unsaved(modified, consequence, lambda answer: self._on_close_answer(answer, modified, close_now=True))
        return False

    def _on_close_answer(self, answer: str, modified, close_now: bool) -> bool:
        if answer == DISCARD:
            if close_now:
                self._close_confirmed = True
                self.window.close()
            return True
        if answer == SAVE:
            self._closing_after_save = True

            def saved() -> None:
                self._closing_after_save = False
                self.request_close()  # asks again only if there were edits during the save

            def aborted() -> None:
                self._closing_after_save = False

            self.save_sessions(modified, then=saved, on_abort=aborted)
        return False

    # -- shutdown -----------------------------------------------------------------------------
    def shutdown(self, wait_ms: int = SHUTDOWN_WAIT_MS) -> None:
        """Window closing: cancel what may stop early, wait for the rest (saves finish writing)."""
        if self._shut_down:
            return
        self._shut_down = True
        self.cancel_all()
        if not self._pool.waitForDone(wait_ms):
            log.warning("file jobs still running after %d ms at shutdown", wait_ms)
        for job in self.jobs:
            job.signals.blockSignals(True)  # outcomes still queued must not reach a closing window
            job.signals.deleteLater()
        self.jobs.clear()
        self._bridge.detach()
        if self.unsaved_box is not None:
            self.unsaved_box.close()
