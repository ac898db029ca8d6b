"""Readers and writers. Qt-free: the GUI calls these from a worker thread."""

from medviewer.io.errors import (
    CorruptFileError,
    InconsistentSeriesError,
    MedViewerIOError,
    NoImageDataError,
    OutputExistsError,
    SeriesSelectionError,
    SourceNotDicomError,
    UnsupportedFormatError,
    WriteError,
)
from medviewer.io.images import read_image, write_array, write_volume
from medviewer.io.loader import describe_path, load_labels, load_volume, scan_series

__all__ = [
    "CorruptFileError",
    "InconsistentSeriesError",
    "MedViewerIOError",
    "NoImageDataError",
    "OutputExistsError",
    "SeriesSelectionError",
    "SourceNotDicomError",
    "UnsupportedFormatError",
    "WriteError",
    "describe_path",
    "load_labels",
    "load_volume",
    "read_image",
    "scan_series",
    "write_array",
    "write_volume",
]
