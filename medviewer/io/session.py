"""Sessions (scan reference + segmentation + view state in one file) and crash-safe autosave.

A session file (``.mvsession``) is a zip holding ``session.json`` (scan reference, segment
table with flags and full provenance, active segment, view state) and
``segmentation.seg.nrrd`` (the label map with exact geometry; readable by Slicer once
unzipped). It is written to a temporary file and renamed into place, so a crash mid-save
leaves the previous session intact. The scan itself is referenced, never copied.

:class:`Autosaver` writes the session to a recovery folder in a background thread after
edits (the GUI calls :meth:`Autosaver.edit_committed` after each command). Its snapshot
is taken on the caller's thread, so the writer never sees a half-applied edit.
:func:`find_recoverable_sessions` lists autosaves whose program is no longer running.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medviewer import __version__
from medviewer.io.errors import CorruptFileError, MedViewerIOError, UnsupportedFormatError
from medviewer.io.provenance_json import entry_from_dict, entry_to_dict, scan_reference
from medviewer.io.safety import check_output, write_bytes_atomic
from medviewer.io.segnrrd import decode_seg_nrrd, encode_seg_nrrd
from medviewer.model.geometry import Geometry
from medviewer.model.provenance import now_iso
from medviewer.model.segments import Segment, SegmentTable

log = logging.getLogger(__name__)

SESSION_SUFFIX = ".mvsession"
FORMAT_NAME = "medviewer-session"
FORMAT_VERSION = 1
_JSON_NAME = "session.json"
_LABELS_NAME = "segmentation.seg.nrrd"


@dataclass
class SessionState:
    """Everything needed to resume work: where the scan is, the labels, segments, view state."""

    scan_source: str
    series_key: str | None
    geometry: Geometry
    labels: np.ndarray
    segments: list[Segment]
    active_label: int | None = None
    view_state: dict[str, Any] = field(default_factory=dict)
    scan: dict[str, Any] = field(default_factory=dict)
    saved_at: str = ""
    app_version: str = __version__
    edit_count: int = 0
    owner: dict[str, Any] = field(default_factory=dict)


def _copy_segment(segment: Segment) -> Segment:
    return Segment(segment.label, segment.name, tuple(segment.color), segment.visible, segment.locked,  # type: ignore[arg-type]
                   [entry_from_dict(entry_to_dict(e)) for e in segment.provenance], dict(segment.tags))


def capture_session(volume, labelmap, segments: SegmentTable, active_label: int | None = None,
                    view_state: dict | None = None, edit_count: int = 0) -> SessionState:
    """A snapshot (copied arrays and segments) that later edits cannot change."""
    info = volume.info
    series_key = info.series_instance_uid or None
    return SessionState(
        scan_source=info.source,
        series_key=series_key,
        geometry=labelmap.geometry,
        labels=labelmap.array.copy(),
        segments=[_copy_segment(s) for s in segments],
        active_label=active_label,
        view_state=json.loads(json.dumps(view_state or {}, default=_plain)),
        scan=scan_reference(volume),
        edit_count=edit_count,
    )


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _segment_to_dict(segment: Segment) -> dict[str, Any]:
    return {
        "label": segment.label, "name": segment.name, "color": list(segment.color), "visible": segment.visible,
        "locked": segment.locked, "tags": dict(segment.tags), "provenance": [entry_to_dict(e) for e in segment.provenance],
    }


def _segment_from_dict(data: dict[str, Any]) -> Segment:
    return Segment(
        int(data["label"]), str(data["name"]), tuple(int(c) for c in data["color"]),  # type: ignore[arg-type]
        bool(data.get("visible", True)), bool(data.get("locked", False)),
        [entry_from_dict(e) for e in data.get("provenance", [])], dict(data.get("tags") or {}),
    )


def encode_session(state: SessionState, compression: int = 6) -> bytes:
    """The session file's bytes (a zip); compression 1 is for fast autosaves."""
    import io

    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "saved_at": state.saved_at or now_iso(),
        "app_version": state.app_version,
        "scan": {**state.scan, "source": state.scan_source, "series_key": state.series_key},
        "labels_file": _LABELS_NAME,
        "segments": [_segment_to_dict(s) for s in state.segments],
        "active_label": state.active_label,
        "view_state": state.view_state,
        "edit_count": state.edit_count,
        "owner": state.owner,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_JSON_NAME, json.dumps(document, indent=1, default=_plain), compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(_LABELS_NAME, encode_seg_nrrd(state.labels, state.geometry, state.segments, compression),
                         compress_type=zipfile.ZIP_STORED)  # already gzip-compressed
    return buffer.getvalue()


def session_file_path(path: str | Path) -> Path:
    """``path`` with the session suffix added when missing (the name a save will write)."""
    path = Path(path)
    return path if path.name.endswith(SESSION_SUFFIX) else path.with_name(path.name + SESSION_SUFFIX)


def save_session(path: str | Path, state: SessionState, overwrite: bool = True, compression: int = 6,
                 control=None) -> Path:
    """Write a session atomically. Saving over one's own session is the normal case, hence ``overwrite``.

    ``control`` (a :class:`~medviewer.jobs.JobControl`) may cancel while the labels are
    compressed; once writing starts the save completes, so no file is left half-written.
    """
    path = session_file_path(path)
    check_output(path, overwrite)
    if control is not None:
        control.report(0, 2, f"Compressing the session for {path.name}")
    data = encode_session(state, compression)
    if control is not None:
        control.report(1, 2, f"Writing {path.name}")
    return write_bytes_atomic(path, data)


def load_session(path: str | Path) -> SessionState:
    """Read a session file (the scan is not loaded; see :func:`open_session`)."""
    path = Path(path)
    if not path.is_file():
        raise UnsupportedFormatError("no such session file", path)
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read(_JSON_NAME).decode("utf-8"))
            labels_raw = archive.read(document.get("labels_file", _LABELS_NAME))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise CorruptFileError(f"not a readable medviewer session ({exc})", path) from None
    if document.get("format") != FORMAT_NAME:
        raise UnsupportedFormatError("not a medviewer session file", path)
    if int(document.get("version", 0)) > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"the session was saved by a newer medviewer (format {document['version']}); update medviewer", path
        )
    content = decode_seg_nrrd(labels_raw, path)
    scan = dict(document.get("scan") or {})
    return SessionState(
        scan_source=str(scan.pop("source", "") or ""),
        series_key=scan.pop("series_key", None),
        geometry=content.geometry,
        labels=content.array,
        segments=[_segment_from_dict(s) for s in document.get("segments", [])],
        active_label=document.get("active_label"),
        view_state=dict(document.get("view_state") or {}),
        scan=scan,
        saved_at=str(document.get("saved_at", "")),
        app_version=str(document.get("app_version", "")),
        edit_count=int(document.get("edit_count", 0)),
        owner=dict(document.get("owner") or {}),
    )


def open_session(path: str | Path, scan_path: str | Path | None = None, control=None,
                 state: SessionState | None = None):
    """Load a session and its scan; returns ``(volume, state)``. ``scan_path`` relocates a moved scan.

    Pass ``state`` when the session file was already read (:func:`load_session`).
    """
    from medviewer.io.loader import load_volume

    state = state if state is not None else load_session(path)
    source = Path(scan_path) if scan_path else Path(state.scan_source)
    if not str(source) or not source.exists():
        raise MedViewerIOError(
            f"the scan this session belongs to is missing ({state.scan_source or 'unknown'}); locate it and open again",
            path,
        )
    volume = load_volume(source, state.series_key if source.is_dir() else None, control)
    if not volume.geometry.same_grid(state.geometry):
        raise MedViewerIOError(
            "the scan no longer matches the session's grid: " + volume.geometry.describe_difference(state.geometry), path
        )
    return volume, state


def restore_session(document, volume, state: SessionState):
    """Attach the session's labels and segments (order, flags, provenance) to ``volume`` in ``document``."""
    from medviewer.model.labelmap import LabelMap

    segmentation = document.segmentation(volume)
    for segment in list(segmentation.segments):
        segmentation.segments.remove(segment.label)
    for segment in state.segments:
        segmentation.segments.insert(_copy_segment(segment))
    document.set_labels(volume, LabelMap(volume.geometry, state.labels), segmentation.segments)
    return segmentation


# -- autosave and recovery ---------------------------------------------------------------------
def default_recovery_dir() -> Path:
    """Per-user data folder for autosaves (``MEDVIEWER_RECOVERY_DIR`` overrides it)."""
    override = os.environ.get("MEDVIEWER_RECOVERY_DIR")
    if override:
        return Path(override)
    home = Path.home()
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "medviewer" / "recovery"


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform.startswith("win"):
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Autosaver:
    """Saves the session to a recovery file in the background after edits and on a timer.

    ``snapshot`` is called on the caller's (GUI) thread and must return a
    :class:`SessionState` that owns its data (see :func:`capture_session`). Every
    ``every_edits`` edits a save is started; ``tick()`` (from a GUI timer) saves pending
    changes after ``every_seconds``. While a save runs, newer snapshots replace the
    queued one, so at most the edit being made during the last save is lost in a crash.
    Call :meth:`discard` on a clean exit so nothing is offered for recovery.
    """

    def __init__(
        self,
        snapshot: Callable[[], SessionState],
        folder: str | Path | None = None,
        every_edits: int = 1,
        every_seconds: float = 120.0,
        session_id: str | None = None,
        compression: int = 1,
    ):
        self.snapshot = snapshot
        self.folder = Path(folder) if folder is not None else default_recovery_dir()
        self.every_edits = max(1, int(every_edits))
        self.every_seconds = float(every_seconds)
        self.session_id = session_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.compression = int(compression)
        self.saves_completed = 0
        self.last_error: str | None = None
        self.last_saved_at: float | None = None
        self._edits_since_save = 0
        self._dirty = False
        self._last_trigger = time.monotonic()
        self._condition = threading.Condition()
        self._pending: SessionState | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="medviewer-autosave", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.folder / f"{self.session_id}{SESSION_SUFFIX}"

    # -- triggers (GUI thread) ------------------------------------------------------------------
    def edit_committed(self, *_args) -> None:
        """Call after every undoable command (connect it to ``EditHistory.changed``)."""
        self._edits_since_save += 1
        self._dirty = True
        if self._edits_since_save >= self.every_edits:
            self.save_now()

    def tick(self) -> None:
        """Call from a periodic timer: saves unsaved changes once ``every_seconds`` passed."""
        if self._dirty and time.monotonic() - self._last_trigger >= self.every_seconds:
            self.save_now()

    def save_now(self) -> None:
        """Snapshot now and hand it to the writer thread."""
        state = self.snapshot()
        state.owner = {"pid": os.getpid(), "host": socket.gethostname(), "session_id": self.session_id}
        state.saved_at = now_iso()
        self._edits_since_save = 0
        self._dirty = False
        self._last_trigger = time.monotonic()
        with self._condition:
            self._pending = state  # a newer snapshot replaces one that has not started yet
            self._condition.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued save is on disk; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    def discard(self) -> None:
        """Clean exit: stop and delete the recovery file."""
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout)

    # -- writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._closed:
                    self._condition.wait()
                if self._pending is None and self._closed:
                    return
                state, self._pending = self._pending, None
                self._busy = True
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                save_session(self.path, state, overwrite=True, compression=self.compression)
                self.saves_completed += 1
                self.last_saved_at = time.time()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - autosave must never take the app down
                self.last_error = str(exc)
                log.warning("autosave to %s failed: %s", self.path, exc)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()


@dataclass
class RecoverableSession:
    """An autosave left behind by a program that is no longer running."""

    path: Path
    saved_at: str
    scan_source: str
    scan_name: str
    segments: int
    edit_count: int
    pid: int | None


def find_recoverable_sessions(folder: str | Path | None = None, include_running: bool = False) -> list[RecoverableSession]:
    """Autosaves the user can recover, newest first (those of running programs are skipped)."""
    folder = Path(folder) if folder is not None else default_recovery_dir()
    if not folder.is_dir():
        return []
    found = []
    host = socket.gethostname()
    for path in folder.glob(f"*{SESSION_SUFFIX}"):
        try:
            with zipfile.ZipFile(path) as archive:
                document = json.loads(archive.read(_JSON_NAME).decode("utf-8"))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError):
            log.info("skipping unreadable autosave %s", path)
            continue
        owner = document.get("owner") or {}
        pid = owner.get("pid")
        if not include_running and pid is not None and owner.get("host") == host:
            if int(pid) == os.getpid() or _process_alive(int(pid)):
                continue
        scan = document.get("scan") or {}
        found.append(RecoverableSession(
            path, str(document.get("saved_at", "")), str(scan.get("source", "")), str(scan.get("name", "")),
            len(document.get("segments", [])), int(document.get("edit_count", 0)), pid,
        ))
    return sorted(found, key=lambda r: r.saved_at, reverse=True)


def discard_recovery(session: RecoverableSession | str | Path) -> None:
    """Delete an autosave once it was recovered or the user declined it."""
    path = session.path if isinstance(session, RecoverableSession) else Path(session)
    path.unlink(missing_ok=True)
