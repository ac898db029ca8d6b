"""Open any segmentation file onto a scan's grid: label maps, Slicer ``.seg.nrrd``, DICOM SEG, sessions.

The GUI's "Import segmentation" and ``medviewer export`` share this, so both accept the
same files and refuse the same mismatches. Names and colours come from the file itself
(``.seg.nrrd``, DICOM SEG, session) or from an ITK-SNAP label description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medviewer.io.errors import MedViewerIOError
from medviewer.io.images import file_suffix
from medviewer.jobs import JobControl
from medviewer.model.geometry import Geometry
from medviewer.model.labelmap import GridMismatchError, LabelMap
from medviewer.model.segments import Segment


@dataclass
class LoadedSegmentation:
    array: np.ndarray
    geometry: Geometry
    segments: list[Segment]
    warnings: list[str] = field(default_factory=list)


def is_dicom_seg(path: str | Path) -> bool:
    """True for a DICOM file whose modality is SEG (header only is read)."""
    from medviewer.io.dicom.bounded import dcmread_bounded

    try:  # a damaged header may fail while the element is read, so read it inside the try
        header = dcmread_bounded(path, stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID"])
        return str(getattr(header, "Modality", "")) == "SEG"
    except Exception:
        return False


def load_segmentation(
    path: str | Path,
    volume=None,
    label_description: str | Path | None = None,
    control: JobControl | None = None,
) -> LoadedSegmentation:
    """Labels (on ``volume``'s grid when given) plus segment names, colours and provenance."""
    from medviewer.io.loader import load_labels, load_volume

    path = Path(path)
    suffix = file_suffix(path)
    warnings: list[str] = []
    segments: list[Segment] = []
    try:
        if suffix == ".seg.nrrd":
            from medviewer.io.segnrrd import onto_grid, read_seg_nrrd

            content = read_seg_nrrd(path)
            array = onto_grid(content, volume.geometry, path) if volume is not None else content.array
            geometry = volume.geometry if volume is not None else content.geometry
            segments, warnings = content.segments, content.warnings
        elif suffix == ".mvsession":
            from medviewer.io.session import load_session

            state = load_session(path)
            if volume is not None and not volume.geometry.same_grid(state.geometry):
                raise MedViewerIOError(
                    "the session is on another grid than the scan: " + volume.geometry.describe_difference(state.geometry), path
                )
            array, geometry, segments = state.labels, state.geometry, state.segments
        elif suffix in (".dcm", ".dicom", "") and path.is_file() and is_dicom_seg(path):
            from medviewer.io.dicom_seg import read_dicom_seg

            if volume is None:
                raise MedViewerIOError("a DICOM SEG can only be read onto the scan it refers to (give the reference scan)", path)
            content = read_dicom_seg(path, volume)
            array, geometry, segments, warnings = content.array, volume.geometry, content.segments, content.warnings
        elif volume is not None:
            array, geometry = load_labels(path, volume, control).array, volume.geometry
        else:
            loaded = load_volume(path, control=control)
            values = loaded.array
            if np.issubdtype(values.dtype, np.floating) and not np.array_equal(values, np.round(values)):
                raise MedViewerIOError("the label map holds fractional values, not integer labels", path)
            array, geometry = LabelMap(loaded.geometry, values).array, loaded.geometry
    except GridMismatchError as exc:
        raise MedViewerIOError(str(exc), path) from None
    except ValueError as exc:
        if isinstance(exc, MedViewerIOError):
            raise
        raise MedViewerIOError(str(exc), path) from None
    if label_description is not None:
        from medviewer.io.itksnap_labels import read_label_description

        described = {s.label: s for s in read_label_description(label_description)}
        by_label = {s.label: s for s in segments}
        by_label.update(described)
        segments = [by_label[k] for k in sorted(by_label)]
    return LoadedSegmentation(array, geometry, segments, warnings)
