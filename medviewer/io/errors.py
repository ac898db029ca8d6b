"""Typed, human-readable I/O errors. Each names the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class MedViewerIOError(Exception):
    """Base class: ``str(error)`` is a message a user can act on, never a traceback."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = str(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class UnsupportedFormatError(MedViewerIOError):
    """The file is not in a format medviewer reads or writes."""


class CorruptFileError(MedViewerIOError):
    """The file claims a known format but its content cannot be decoded."""


class NoImageDataError(MedViewerIOError):
    """The path holds no image (empty folder, DICOM without pixel data, ...)."""


class SeriesSelectionError(MedViewerIOError):
    """A folder holds several series and the caller must pick one."""

    def __init__(self, message: str, path, series: list):
        super().__init__(message, path)
        self.series = series


class InconsistentSeriesError(MedViewerIOError):
    """Slices cannot be stacked into one correct volume (mixed sizes, repeated positions, ...)."""


class WriteError(MedViewerIOError):
    """Writing failed (unsupported extension, unwritable folder, disk full)."""


class OutputExistsError(WriteError):
    """The target already exists and overwriting was not confirmed (CLI: --force)."""


class SourceNotDicomError(MedViewerIOError):
    """A DICOM export (SEG) needs a scan that was loaded from DICOM files."""
