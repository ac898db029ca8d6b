"""One entry point that opens whatever the user points at: a file, a DICOM file or folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medviewer.io.errors import MedViewerIOError, UnsupportedFormatError
from medviewer.io.images import PICTURE_SUFFIXES, VOLUME_SUFFIXES, file_suffix, read_image
from medviewer.jobs import JobControl, ensure_control
from medviewer.model.labelmap import GridMismatchError, LabelMap
from medviewer.model.volume import Volume


def looks_like_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble; .dcm is accepted too."""
    if file_suffix(path) in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _is_dicom_source(path: Path) -> bool:
    if path.is_dir():
        return True
    return file_suffix(path) not in VOLUME_SUFFIXES + PICTURE_SUFFIXES + (".seg.nrrd",) and looks_like_dicom(path)


def scan_series(path: str | Path, control: JobControl | None = None) -> list:
    """DICOM series under ``path`` (file or folder); [] for non-DICOM image files."""
    path = Path(path)
    if not path.exists():
        raise UnsupportedFormatError("no such file or folder", path)
    if not _is_dicom_source(path):
        return []
    from medviewer.io.dicom import scan_dicom

    return scan_dicom(path, ensure_control(control))


def load_volume(path: str | Path, series_key: str | None = None, control: JobControl | None = None) -> Volume:
    """Load an image file, a DICOM file, or one series of a DICOM folder."""
    path = Path(path)
    if not path.exists():
        raise UnsupportedFormatError("no such file or folder", path)
    control = ensure_control(control)
    if _is_dicom_source(path):
        from medviewer.io.dicom import load_dicom

        return load_dicom(path, series_key, control)
    if file_suffix(path) not in VOLUME_SUFFIXES + PICTURE_SUFFIXES + (".seg.nrrd",):
        raise UnsupportedFormatError(
            "not a DICOM file and not a known image type "
            f"({', '.join(VOLUME_SUFFIXES + PICTURE_SUFFIXES)})",
            path,
        )
    control.report(0, 1, f"Reading {path.name}")
    volume = read_image(path)
    control.report(1, 1, f"Read {path.name}")
    return volume


def load_labels(path: str | Path, volume: Volume, control: JobControl | None = None) -> LabelMap:
    """Load a label map and check it lies on ``volume``'s grid (refuse otherwise)."""
    labels = load_volume(path, control=control)
    array = labels.array
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise MedViewerIOError("the label map holds fractional values, not integer labels", path)
    if array.size and array.min() < 0:
        raise MedViewerIOError(f"the label map holds negative values (min {array.min()})", path)
    try:
        return LabelMap.from_other_grid(volume.geometry, array, labels.geometry)
    except (GridMismatchError, ValueError) as exc:
        raise MedViewerIOError(str(exc), path) from None


def describe_path(path: str | Path, control: JobControl | None = None) -> dict:
    """What ``medviewer info`` prints: every DICOM series, or one file's geometry."""
    path = Path(path)
    series = scan_series(path, control)
    if series:
        return {"path": str(path), "kind": "dicom", "series": [_series_dict(s) for s in series]}
    volume = load_volume(path, control=control)
    return {"path": str(path), "kind": "image", **volume_dict(volume)}


def volume_dict(volume: Volume) -> dict:
    g = volume.geometry
    return {
        "size": list(g.size_xyz),
        "spacing": list(g.spacing),
        "origin": list(g.origin),
        "direction": list(g.direction),
        "dtype": str(volume.dtype),
        "orientation": g.axis_codes(),
        "modality": volume.info.modality,
        "description": volume.info.series_description,
        "warnings": list(volume.info.warnings),
    }


def _series_dict(series) -> dict:
    return {
        "uid": series.series_instance_uid,
        "key": series.key,
        "description": series.description,
        "modality": series.modality,
        "dimensions": [series.columns, series.rows, series.num_slices],
        "spacing": _series_spacing(series),
        "slices": series.num_slices,
        "multiframe": series.is_multiframe,
        "files": len(series.files),
        "warnings": list(series.warnings),
    }


def _series_spacing(series) -> list | None:
    if series.pixel_spacing is None:
        return None
    row, col = series.pixel_spacing
    return [col, row, series.slice_spacing]
