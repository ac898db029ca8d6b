"""DICOM Segmentation (SEG) export and import, referencing the source series.

Export re-reads the headers of the files the scan was loaded from (kept per slice in
``VolumeInfo.extra['source_files']``) and lets highdicom build a binary SEG whose frames
reference those instances; each segment carries its name, colour (CIELab), SNOMED CT
category/type from the anatomy table, and its algorithm type: MANUAL, or SEMIAUTOMATIC
with the AI model (name, version, checkpoint SHA-256) as algorithm identification when
a model contributed to it.

Import places every frame by its physical plane position on the scan's grid (so it does
not depend on the SEG declaring preserved spatial locations) and checks orientation,
pixel spacing and, when present, the referenced source instance of each frame.
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medviewer import __version__
from medviewer.io.errors import CorruptFileError, MedViewerIOError, SourceNotDicomError, UnsupportedFormatError, WriteError
from medviewer.io.safety import atomic_output, check_output, protected_paths
from medviewer.jobs import JobControl, ensure_control
from medviewer.model.anatomy import GENERIC_TISSUE, anatomy_color, lookup_anatomy
from medviewer.model.provenance import now_iso
from medviewer.model.segments import DEFAULT_COLORS, ProvenanceEntry, Segment

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass
class DicomSegContent:
    """A SEG read onto a scan's grid: labels (segment number = label value) and segments."""

    array: np.ndarray
    segments: list[Segment]
    warnings: list[str] = field(default_factory=list)


@dataclass
class DicomSegResult:
    path: Path
    segments_written: int
    frames: int
    warnings: list[str] = field(default_factory=list)


def _require_dicom_source(volume) -> tuple[list, list]:
    extra = getattr(volume.info, "extra", {}) or {}
    instances = extra.get("source_instances")
    files = extra.get("source_files")
    if not instances or not files:
        source = volume.info.source or "an image file"
        raise SourceNotDicomError(
            f"DICOM SEG must reference the DICOM images it segments, but this scan was loaded from "
            f"{source}, not from DICOM. Export as .seg.nrrd, NIfTI or NRRD instead, or open the "
            "original DICOM series and export from there."
        )
    if len(instances) != volume.shape[0] or len(files) != volume.shape[0]:
        raise SourceNotDicomError("the scan's DICOM source list does not match its slices; reload the series")
    return list(instances), list(files)


def _coded(code):
    from highdicom.sr import CodedConcept

    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _algorithm(segment: Segment):
    """(algorithm type, identification) from the segment's provenance."""
    from highdicom import AlgorithmIdentificationSequence
    from pydicom.sr.codedict import codes

    ai_entries = [e for e in segment.provenance if e.kind == "ai"]
    if not ai_entries:
        return "MANUAL", None
    models = []
    for entry in ai_entries:
        model = entry.details.get("model", {})
        key = (model.get("model_id", ""), model.get("version", ""), model.get("checkpoint_sha256", ""))
        if key not in [m[0] for m in models]:
            models.append((key, model))
    (model_id, version, sha), model = models[-1]
    parameters = {"model_id": model_id}
    if sha:
        parameters["checkpoint_sha256"] = sha
    if len(models) > 1:
        parameters["other_models"] = "; ".join(f"{k[0]} {k[1]}".strip() for k, _ in models[:-1])
    identification = AlgorithmIdentificationSequence(
        name=(model.get("name") or model_id or "AI model")[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=(version or "unknown")[:64],
        source="medviewer",
        parameters=parameters,
    )
    return "SEMIAUTOMATIC", identification


def _description(number: int, segment: Segment):
    from highdicom.color import CIELabColor
    from highdicom.seg import SegmentDescription

    entry = lookup_anatomy(segment.name) or GENERIC_TISSUE
    algorithm_type, identification = _algorithm(segment)
    description = SegmentDescription(
        segment_number=number,
        segment_label=segment.name[:64] or f"Segment {segment.label}",
        segmented_property_category=_coded(entry.category),
        segmented_property_type=_coded(entry.type),
        algorithm_type=algorithm_type,
        algorithm_identification=identification,
        tracking_id=f"label {segment.label}",
        tracking_uid=_tracking_uid(segment),
        display_color=CIELabColor.from_rgb(*[int(c) for c in segment.color]),
    )
    if entry.modifier is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [_coded(entry.modifier)]
    return description


def _tracking_uid(segment: Segment) -> str:
    from pydicom.uid import generate_uid

    return segment.tags.get("TrackingUID") or generate_uid()


def _read_headers(files: list[str], control: JobControl):
    from medviewer.io.dicom.bounded import dcmread_bounded

    datasets = {}
    unique = list(dict.fromkeys(f for f in files if f))
    for n, file in enumerate(unique):
        control.report(n, len(unique), "Reading source DICOM headers")
        try:
            with _warnings.catch_warnings():
                _warnings.simplefilter("ignore")
                datasets[file] = dcmread_bounded(file, stop_before_pixels=True)
        except FileNotFoundError:
            raise SourceNotDicomError(
                "a source DICOM file is gone, so the SEG cannot reference it; reload the series", file
            ) from None
        except Exception as exc:  # damaged or moved files
            raise CorruptFileError(f"cannot re-read the source DICOM header ({exc})", file) from None
    for dataset in datasets.values():
        # An empty (Specific Character Set) means the default repertoire; highdicom wants it absent.
        if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
            del dataset.SpecificCharacterSet
        # Type 2 patient/study attributes the SEG copies must exist (empty is allowed); some
        # exporters drop them. Only this in-memory copy is completed, never the source file.
        for keyword in _TYPE2_COPIED:
            if keyword not in dataset:
                setattr(dataset, keyword, "")
    return datasets


_TYPE2_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)


def write_dicom_seg(
    path: str | Path,
    labels: np.ndarray,
    segments: Iterable[Segment],
    volume,
    *,
    overwrite: bool = False,
    series_description: str = "Segmentation",
    series_number: int = 300,
    content_label: str = "SEGMENTATION",
    deidentify: bool = False,
    control: JobControl | None = None,
) -> DicomSegResult:
    """Write a binary DICOM SEG of ``labels`` (on ``volume``'s grid) referencing its source images.

    ``deidentify`` replaces the patient and study identifiers the SEG copies from its source
    (see :mod:`medviewer.io.deidentify`); the source UIDs stay so the SEG still applies.
    Raises :class:`SourceNotDicomError` with advice when the scan did not come from DICOM.
    """
    import highdicom as hd

    control = ensure_control(control)
    instances, files = _require_dicom_source(volume)
    path = check_output(path, overwrite, protected_paths(volume))
    labels = np.asarray(labels)
    if tuple(labels.shape) != tuple(volume.shape):
        raise WriteError(f"the label map {labels.shape} is not on the scan's grid {volume.shape}", path)
    warnings_out: list[str] = []

    table = {s.label: s for s in segments}
    present = [int(v) for v in np.unique(labels) if v != 0]
    for label in present:
        if label not in table:
            table[label] = Segment(label, f"Segment {label}", DEFAULT_COLORS[(label - 1) % len(DEFAULT_COLORS)])
    exported = [s for s in table.values() if s.label in present]
    skipped = [s.name for s in table.values() if s.label not in present]
    if skipped:
        warnings_out.append(f"segments without voxels are not written: {', '.join(skipped)}")
    if not exported:
        raise WriteError("there is nothing to export: every segment is empty", path)

    lut = np.zeros(int(labels.max()) + 1, dtype=np.uint8 if len(exported) <= 255 else np.uint16)
    for number, segment in enumerate(exported, start=1):
        lut[segment.label] = number
    datasets = _read_headers(files, control)
    real = [k for k, f in enumerate(files) if f]
    gap_voxels = sum(int(np.count_nonzero(labels[k])) for k, f in enumerate(files) if not f)
    if gap_voxels:
        warnings_out.append(f"{gap_voxels} labelled voxels on filled gap slices have no source image and were not written")

    multiframe = any(inst[2] is not None for inst in instances if inst)
    if multiframe:
        if len(datasets) != 1:
            raise WriteError("multi-frame sources spread over several files are not supported for SEG export", path)
        source_images = list(datasets.values())
        frames = int(getattr(source_images[0], "NumberOfFrames", 1))
        pixel_array = np.zeros((frames,) + labels.shape[1:], dtype=lut.dtype)
        for k in real:
            pixel_array[int(instances[k][2]) - 1] = lut[labels[k]]
    else:
        source_images = [datasets[files[k]] for k in real]
        pixel_array = lut[labels[real]]
    if len(exported) == 1:
        pixel_array = pixel_array.astype(bool)  # one segment: plain binary frames

    control.report(0, 1, "Building DICOM SEG")
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", UserWarning)  # highdicom's notes on the source's patient name
        seg = _build(hd, source_images, pixel_array, exported, series_number, content_label, series_description)
    seg.SeriesDescription = series_description[:64]
    if deidentify:
        from medviewer.io.deidentify import deidentify_dataset

        deidentify_dataset(seg)
    control.report(1, 1, "Writing DICOM SEG")  # the last cancellation point: once written, it is done
    try:
        with atomic_output(path, ".dcm") as temp:
            seg.save_as(temp, enforce_file_format=True)
    except OSError as exc:
        raise WriteError(f"writing failed ({exc.strerror or exc})", path) from None
    return DicomSegResult(path, len(exported), int(seg.NumberOfFrames), warnings_out)


def _build(hd, source_images, pixel_array, exported, series_number, content_label, series_description):
    from pydicom.uid import generate_uid

    return hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(n, s) for n, s in enumerate(exported, start=1)],
        series_instance_uid=generate_uid(),
        series_number=int(series_number),
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medviewer",
        manufacturer_model_name="medviewer",
        software_versions=str(__version__),
        device_serial_number="none",
        content_label=content_label[:16].upper().replace(" ", "_"),
        content_description=series_description[:64],
        omit_empty_frames=True,
    )


# -- import -------------------------------------------------------------------------------------
def _first(sequence_owner, name):
    sequence = getattr(sequence_owner, name, None)
    return sequence[0] if sequence else None


def _frame_attribute(seg, frame: int, group: str, attribute: str):
    """A per-frame functional group attribute, falling back to the shared groups."""
    per_frame = getattr(seg, "PerFrameFunctionalGroupsSequence", None)
    for owner in (per_frame[frame] if per_frame else None, _first(seg, "SharedFunctionalGroupsSequence")):
        if owner is None:
            continue
        item = _first(owner, group)
        if item is not None and attribute in item:
            return item
    return None


def _rgb_from_segment(item, label: int, name: str) -> tuple[int, int, int]:
    lab = getattr(item, "RecommendedDisplayCIELabValue", None)
    if lab is not None:
        try:
            from highdicom.color import CIELabColor

            return tuple(int(v) for v in CIELabColor.from_dicom_value(list(lab)).to_rgb())  # type: ignore[return-value]
        except Exception:
            pass
    return anatomy_color(name) or DEFAULT_COLORS[(label - 1) % len(DEFAULT_COLORS)]


def read_dicom_seg(path: str | Path, volume) -> DicomSegContent:
    """Read a DICOM SEG onto ``volume``'s grid; segment numbers become label values."""
    from medviewer.io.dicom.bounded import dcmread_bounded

    path = Path(path)
    if not path.is_file():
        raise UnsupportedFormatError("no such file", path)
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            seg = dcmread_bounded(path)
    except Exception as exc:
        raise CorruptFileError(f"cannot read the file as DICOM ({exc})", path) from None
    try:  # pydicom parses elements lazily, so a damaged element fails on first access below
        return _seg_onto_grid(seg, path, volume)
    except MedViewerIOError:
        raise
    except MemoryError:
        raise MedViewerIOError("not enough memory to decode the SEG frames", path) from None
    except Exception as exc:  # noqa: BLE001 - every pydicom/numpy failure on a damaged SEG
        raise CorruptFileError(f"the SEG is damaged ({type(exc).__name__}: {exc})", path) from None


def _seg_onto_grid(seg, path: Path, volume) -> DicomSegContent:
    if getattr(seg, "SOPClassUID", "") != SEG_SOP_CLASS and getattr(seg, "Modality", "") != "SEG":
        raise UnsupportedFormatError("the file is DICOM but not a Segmentation (SEG) object", path)
    geometry = volume.geometry
    warnings_out: list[str] = []
    reference_for = getattr(volume.info, "frame_of_reference_uid", "")
    seg_for = str(getattr(seg, "FrameOfReferenceUID", ""))
    if reference_for and seg_for and reference_for != seg_for:
        warnings_out.append("the SEG's frame of reference differs from the scan's; placed by position anyway")

    orientation = _frame_attribute(seg, 0, "PlaneOrientationSequence", "ImageOrientationPatient")
    measures = _frame_attribute(seg, 0, "PixelMeasuresSequence", "PixelSpacing")
    if orientation is None or measures is None:
        raise CorruptFileError("the SEG has no plane orientation or pixel spacing; it cannot be placed", path)
    cosines = np.asarray([float(v) for v in orientation.ImageOrientationPatient])
    matrix = geometry.direction_matrix
    if not (np.allclose(cosines[:3], matrix[:, 0], atol=1e-3) and np.allclose(cosines[3:], matrix[:, 1], atol=1e-3)):
        raise MedViewerIOError("the SEG's image orientation differs from the scan's; it was made on another series", path)
    row_spacing, column_spacing = (float(v) for v in measures.PixelSpacing)
    if not np.allclose([column_spacing, row_spacing], geometry.spacing[:2], atol=1e-3):
        raise MedViewerIOError(
            f"the SEG's pixel spacing ({column_spacing:g} x {row_spacing:g} mm) differs from the scan's", path
        )

    kind = str(getattr(seg, "SegmentationType", "BINARY")).upper()
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            pixels = seg.pixel_array
    except Exception as exc:
        raise CorruptFileError(f"cannot decode the SEG frames ({exc})", path) from None
    frames = int(getattr(seg, "NumberOfFrames", 1))
    pixels = pixels.reshape((frames, int(seg.Rows), int(seg.Columns)))
    if kind == "FRACTIONAL":
        maximum = float(getattr(seg, "MaximumFractionalValue", 255))
        pixels = pixels.astype(np.float32) >= maximum / 2.0
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence]
    dtype = np.uint8 if max(numbers, default=0) <= 255 else np.uint16
    out = np.zeros(geometry.shape, dtype=dtype)
    sop_by_slice = [inst[1] if inst else None for inst in (volume.info.extra.get("source_instances") or [])]
    overlap = 0
    mismatched_refs = 0
    for frame in range(frames):
        position_item = _frame_attribute(seg, frame, "PlanePositionSequence", "ImagePositionPatient")
        if position_item is None:
            raise CorruptFileError(f"frame {frame + 1} has no plane position", path)
        ijk = geometry.physical_to_index([float(v) for v in position_item.ImagePositionPatient])
        if not np.allclose(ijk, np.rint(ijk), atol=0.05):
            raise MedViewerIOError(
                f"frame {frame + 1} does not lie on a slice of the scan (index {np.round(ijk, 3).tolist()})", path
            )
        i0, j0, k = (int(v) for v in np.rint(ijk))
        if not 0 <= k < geometry.shape[0]:
            warnings_out.append(f"frame {frame + 1} lies outside the scan and was skipped")
            continue
        data = pixels[frame]
        if kind == "LABELMAP":
            values = data.astype(dtype)
        else:
            identification = _frame_attribute(seg, frame, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
            number = int(identification.ReferencedSegmentNumber) if identification is not None else 1
            values = np.where(data.astype(bool), number, 0).astype(dtype)
        rows = slice(max(0, j0), min(geometry.shape[1], j0 + values.shape[0]))
        cols = slice(max(0, i0), min(geometry.shape[2], i0 + values.shape[1]))
        cut = values[rows.start - j0: rows.stop - j0, cols.start - i0: cols.stop - i0]
        target = out[k, rows, cols]
        write = cut != 0
        overlap += int(np.count_nonzero(write & (target != 0) & (target != cut)))
        target[write] = cut[write]
        derivation = _frame_attribute(seg, frame, "DerivationImageSequence", "SourceImageSequence")
        if derivation is not None and k < len(sop_by_slice) and sop_by_slice[k]:
            referenced = {str(s.ReferencedSOPInstanceUID) for s in derivation.SourceImageSequence}
            if sop_by_slice[k] not in referenced:
                mismatched_refs += 1
    if overlap:
        warnings_out.append(f"{overlap} voxels belong to several segments; the later segment kept them")
    if mismatched_refs:
        warnings_out.append(f"{mismatched_refs} frames reference other images than the scan slice they lie on")

    segments = []
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        name = str(getattr(item, "SegmentLabel", "") or f"Segment {number}")
        algorithm = _first(item, "SegmentationAlgorithmIdentificationSequence")
        details = {
            "format": "DICOM SEG",
            "file": str(path),
            "series_instance_uid": str(getattr(seg, "SeriesInstanceUID", "")),
            "segment_number": number,
            "algorithm_type": str(getattr(item, "SegmentAlgorithmType", "")),
        }
        if algorithm is not None:
            details["algorithm"] = {
                "name": str(getattr(algorithm, "AlgorithmName", "")),
                "version": str(getattr(algorithm, "AlgorithmVersion", "")),
                "parameters": str(getattr(algorithm, "AlgorithmParameters", "")),
            }
        tags = {}
        if "TrackingUID" in item:
            tags["TrackingUID"] = str(item.TrackingUID)
        segment = Segment(label=number, name=name, color=_rgb_from_segment(item, number, name), tags=tags)
        segment.provenance.append(ProvenanceEntry("import", now_iso(), details))
        segments.append(segment)
    return DicomSegContent(out, segments, warnings_out)
