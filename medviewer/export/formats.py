"""One entry point for every segmentation export, chosen by file type (GUI and CLI share it).

No VTK or Qt is imported here; STL/OBJ load the mesh writer only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medviewer.io.errors import WriteError
from medviewer.io.images import file_suffix, write_array
from medviewer.io.safety import check_output, protected_paths
from medviewer.jobs import JobControl, ensure_control
from medviewer.model.segments import Segment

#: Format name -> what it writes. Names double as the accepted file extensions.
EXPORT_FORMATS: dict[str, str] = {
    "nii.gz": "label map (NIfTI, compressed)",
    "nii": "label map (NIfTI)",
    "nrrd": "label map (NRRD)",
    "mha": "label map (MetaImage)",
    "seg.nrrd": "3D Slicer segmentation with segment names and colours",
    "dcm": "DICOM Segmentation (SEG) referencing the source series",
    "stl": "surface mesh per segment (STL)",
    "obj": "surface meshes with colours (OBJ + MTL)",
    "csv": "segment statistics",
    "json": "provenance of every segment",
    "txt": "ITK-SNAP label description",
}


@dataclass
class ExportResult:
    paths: list[Path]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth showing, e.g. mesh coordinates


def format_for(path: str | Path, explicit: str | None = None) -> str:
    """The export format named by ``explicit`` or by the file's extension."""
    if explicit:
        name = explicit.lower().lstrip(".")
        aliases = {"nifti": "nii.gz", "dicom": "dcm", "seg": "dcm", "slicer": "seg.nrrd", "itksnap": "txt", "label": "txt"}
        name = aliases.get(name, name)
        if name not in EXPORT_FORMATS:
            raise WriteError(f"unknown export format {explicit!r}; choose one of {', '.join(EXPORT_FORMATS)}", path)
        return name
    suffix = file_suffix(path).lstrip(".")
    if suffix in ("label",):
        return "txt"
    if suffix not in EXPORT_FORMATS:
        raise WriteError(
            f"cannot tell the export format from '{Path(path).name}'; use one of "
            + ", ".join("." + f for f in EXPORT_FORMATS)
            + " or pass a format",
            path,
        )
    return suffix


def _complete_segments(labels: np.ndarray, segments: Iterable[Segment]) -> list[Segment]:
    """The given segments plus a default entry for each label value that has none."""
    from medviewer.model.segments import DEFAULT_COLORS

    table = {s.label: s for s in segments}
    for value in np.unique(labels):
        value = int(value)
        if value and value not in table:
            table[value] = Segment(value, f"Segment {value}", DEFAULT_COLORS[(value - 1) % len(DEFAULT_COLORS)])
    return list(table.values())


def export_segmentation(
    path: str | Path,
    labels: np.ndarray,
    geometry,
    segments: Iterable[Segment],
    volume=None,
    fmt: str | None = None,
    overwrite: bool = False,
    protected: Iterable = (),
    coordinates: str = "LPS",
    smoothing: bool = True,
    control: JobControl | None = None,
    deidentify: bool = False,
) -> ExportResult:
    """Write ``labels`` (on ``geometry``, the scan's grid) in the format of ``path``.

    ``volume`` supplies intensities (statistics), the source series (DICOM SEG) and the
    scan identity (provenance); its source files are never overwritten. An existing
    target is replaced only with ``overwrite``. Every file is written atomically.
    ``deidentify`` strips patient identifiers and paths from DICOM SEG and provenance JSON
    (the other formats carry none; see docs/privacy.md).
    """
    control = ensure_control(control)
    path = Path(path)
    fmt = format_for(path, fmt)
    labels = np.asarray(labels)
    if tuple(labels.shape) != tuple(geometry.shape):
        raise WriteError(f"the label map {labels.shape} is not on the scan's grid {geometry.shape}", path)
    protected = [*protected_paths(volume), *[Path(p) for p in protected]]
    segments = _complete_segments(labels, segments)

    if fmt in ("nii.gz", "nii", "nrrd", "mha"):
        check_output(path, overwrite, protected)
        if file_suffix(path) != "." + fmt:
            raise WriteError(f"a {fmt} label map needs a file name ending in .{fmt}", path)
        dtype = np.uint8 if (not labels.size or labels.max() <= 255) else np.uint16
        return ExportResult([write_array(path, labels.astype(dtype, copy=False), geometry)])
    if fmt == "seg.nrrd":
        from medviewer.io.segnrrd import write_seg_nrrd

        return ExportResult([write_seg_nrrd(path, labels, geometry, segments, overwrite, protected)])
    if fmt == "dcm":
        from medviewer.io.dicom_seg import SourceNotDicomError, write_dicom_seg

        if volume is None:
            raise SourceNotDicomError("DICOM SEG export needs the DICOM scan the labels were drawn on (--reference)")
        result = write_dicom_seg(path, labels, segments, volume, overwrite=overwrite, deidentify=deidentify,
                                 control=control)
        return ExportResult([result.path], result.warnings)
    if fmt in ("stl", "obj"):
        from medviewer.export.meshes import export_meshes

        paths = export_meshes(path, labels, geometry, segments, fmt, coordinates, smoothing, overwrite, protected, control)
        return ExportResult(paths, notes=[f"mesh coordinates: {coordinates.upper()} millimetres"])
    if fmt == "csv":
        from medviewer.io.statistics_csv import write_statistics_csv
        from medviewer.tools.statistics import compute_statistics

        table = _Table(segments)
        rows = compute_statistics(labels, geometry, table, volume.array if volume is not None else None, control=control)
        warnings = [] if volume is not None else ["no scan given: intensity columns are empty"]
        return ExportResult([write_statistics_csv(path, rows, overwrite, protected)], warnings)
    if fmt == "json":
        from medviewer.io.provenance_json import write_provenance_json

        return ExportResult([write_provenance_json(path, segments, volume, None, overwrite, protected, deidentify)])
    from medviewer.io.itksnap_labels import write_label_description

    return ExportResult([write_label_description(path, segments, overwrite, protected)])


class _Table:
    """The little of SegmentTable that statistics need, over a plain list."""

    def __init__(self, segments: list[Segment]):
        self._segments = {s.label: s for s in segments}

    def __iter__(self):
        return iter(self._segments.values())

    def __len__(self):
        return len(self._segments)

    def get(self, label):
        return self._segments.get(label)
