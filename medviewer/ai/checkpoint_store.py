"""Which checkpoint file each model uses, and the files' SHA-256 digests, without Qt.

One store serves the AI dock and Settings > Models, so both always show and load the same
file. Digests of big checkpoints take seconds, so they are computed on a background thread
and remembered per (path, size, mtime): reopening the dialog shows them at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medviewer.ai.checkpoints import file_sha256

SETTINGS_PREFIX = "ai/checkpoint/"


class CheckpointStore(dict):
    """model id -> the checkpoint file the user chose, mirrored into a QSettings-like object
    (anything with ``value`` / ``setValue`` / ``remove``) so choices survive a restart."""

    def __init__(self, settings: Any = None):
        super().__init__()
        self.settings = settings

    def remember(self, model_id: str, path: str | Path) -> None:
        self[model_id] = str(path)
        if self.settings is not None:
            self.settings.setValue(SETTINGS_PREFIX + model_id, str(path))

    def forget(self, model_id: str) -> None:
        self.pop(model_id, None)
        if self.settings is not None:
            self.settings.remove(SETTINGS_PREFIX + model_id)

    def recall(self, model_id: str) -> str:
        """The chosen file for ``model_id`` ("" when none), reading a saved choice back in."""
        if not self.get(model_id) and self.settings is not None:
            saved = self.settings.value(SETTINGS_PREFIX + model_id, "")
            if saved:
                self[model_id] = str(saved)
        return self.get(model_id, "")


def file_signature(path: str | Path) -> tuple[str, int, int] | None:
    """(resolved path, size, mtime in ns) of a file, or None when it does not exist."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


class ChecksumCache:
    """SHA-256 digests computed off the calling thread and remembered per file signature."""

    def __init__(self):
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int, int], str] = {}
        self._pending: dict[tuple[str, int, int], Future] = {}

    def known(self, path: str | Path) -> str | None:
        """The digest when it is already known for the file as it is now, else None."""
        signature = file_signature(path)
        with self._lock:
            return self._known.get(signature) if signature is not None else None

    def request(self, path: str | Path) -> Future:
        """A future of the file's digest; a failure (missing, unreadable) is its exception."""
        signature = file_signature(path)
        future: Future = Future()
        if signature is None:
            future.set_exception(FileNotFoundError(f"{path}: missing"))
            return future
        with self._lock:
            if signature in self._known:
                future.set_result(self._known[signature])
                return future
            if signature in self._pending:
                return self._pending[signature]
            self._pending[signature] = future

        def compute() -> None:
            try:
                digest = file_sha256(path)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                with self._lock:
                    self._pending.pop(signature, None)
                future.set_exception(exc)
                return
            with self._lock:
                self._known[signature] = digest
                self._pending.pop(signature, None)
            future.set_result(digest)

        # A daemon thread: quitting never waits for a multi-gigabyte file to finish hashing.
        threading.Thread(target=compute, name="checkpoint-sha256", daemon=True).start()
        return future


#: Shared by every window: a digest computed once is known everywhere.
CHECKSUMS = ChecksumCache()


@dataclass(frozen=True)
class ModelCheckpointRow:
    """What Settings > Models shows for one discovered model."""

    model_id: str
    name: str
    status: str  # "available", "needs checkpoint", "failed: <reason>", "loaded"
    checkpoint: str  # the file's path, or a note ("not needed", "missing: ...")
    file: str  # the path to hash, "" when there is no file to hash
    user_choice: bool  # the file was chosen by the user (Clear applies)
    choosable: bool  # the user may point the model at a file


def model_checkpoint_rows(registry, store: CheckpointStore) -> list[ModelCheckpointRow]:
    """One row per registry entry, failed ones included, with the file each would load."""
    rows = []
    for entry in registry.entries():
        info = entry.info
        chosen = store.recall(entry.id)
        rule = info.checkpoint if info is not None else None
        choosable = info is not None and rule.kind != "none"
        file, note = "", ""
        if chosen:
            file = chosen
            note = chosen if Path(chosen).expanduser().is_file() else f"missing: {chosen}"
        elif rule is None:
            note = ""
        elif rule.kind == "none":
            note = "not needed"
        elif rule.kind == "user_file":
            note = f"not chosen ({rule.filename_hint})" if rule.filename_hint else "not chosen"
        else:
            try:
                path = registry.resolve_checkpoint(entry.id)
                file = note = str(path) if path is not None else ""
            except Exception as exc:  # noqa: BLE001 - a missing asset is a row note, not an error
                note = f"missing: {exc}"
        if entry.error is not None:
            status = f"failed: {entry.error}"
        elif rule is not None and rule.kind == "user_file" and not chosen:
            status = "needs checkpoint"
        else:
            status = "loaded" if entry.loaded else "available"
        rows.append(ModelCheckpointRow(entry.id, entry.name, status, note, file if not note.startswith("missing")
                                       else "", bool(chosen), choosable))
    return rows


__all__ = [
    "CHECKSUMS",
    "ChecksumCache",
    "CheckpointStore",
    "ModelCheckpointRow",
    "SETTINGS_PREFIX",
    "file_signature",
    "model_checkpoint_rows",
]
