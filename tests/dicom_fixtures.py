"""Write small synthetic DICOM series with known geometry, for tests of anything that reads DICOM.

Geometry arguments follow medviewer's conventions: ``array`` is (z, y, x); ``spacing`` and
``origin`` are ITK order (x, y, z) in LPS mm; column ``c`` of ``direction`` is the LPS unit
vector of index axis ``c``. The values in ``array`` are what a loader must return after
RescaleSlope/RescaleIntercept; the writer stores ``(value - intercept) / slope``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
DICOMDIR_STORAGE = "1.2.840.10008.1.3.10"


def rotation(axis: str, degrees: float) -> np.ndarray:
    """Rotation matrix about x, y or z (LPS), for building oblique directions."""
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def ramp_volume(shape=(6, 7, 9), dtype=np.int16, offset: int = -100) -> np.ndarray:
    """Every voxel distinct, so a wrong slice order or transposition shows in the values."""
    z, y, x = np.indices(shape)
    return (offset + z * 1000 + y * 30 + x).astype(dtype)


def _ds(value: float) -> str:
    return format_number_as_ds(float(value))


def _ds_list(values) -> list[str]:
    return [_ds(v) for v in values]


def _base_dataset(sop_class: str, sop_uid: str, transfer_syntax: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    return ds


def _set_pixel_module(ds: Dataset, stored: np.ndarray, frames: int = 1) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(stored.astype(stored.dtype.newbyteorder("<"))).tobytes()


def _stored_values(values: np.ndarray, slope: float, intercept: float, dtype) -> np.ndarray:
    stored = np.rint((values.astype(np.float64) - intercept) / slope)
    info = np.iinfo(dtype)
    if stored.min() < info.min or stored.max() > info.max:
        raise ValueError(f"values do not fit {np.dtype(dtype)} after rescale ({slope}, {intercept})")
    return stored.astype(dtype)


def write_series(
    folder: str | Path,
    array: np.ndarray,
    spacing: Sequence[float] = (0.8, 0.9, 2.5),
    origin: Sequence[float] = (-100.0, -120.0, 30.0),
    direction: np.ndarray | None = None,
    series_uid: str | None = None,
    *,
    shuffle_names: bool = True,
    rescale: tuple[float, float] | Sequence[tuple[float, float]] = (1.0, 0.0),
    stored_dtype=None,
    skip: Sequence[int] = (),
    tilt_deg: float = 0.0,
    positions: Sequence[Sequence[float]] | None = None,
    description: str = "Synthetic",
    modality: str = "CT",
    series_number: int = 1,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    window: Sequence[tuple[float, float, str | None]] = (),
    prefix: str = "img",
    seed: int = 0,
    mutate: Callable[[Dataset, int], None] | None = None,
) -> list[Path]:
    """Write one file per slice of ``array`` and return the written paths in slice order.

    ``shuffle_names`` scrambles both file names and InstanceNumbers, so only the positions
    tell the order. ``skip`` leaves slices out (a gap). ``tilt_deg`` moves each slice
    sideways along the column direction as a tilted gantry does (and sets
    GantryDetectorTilt). ``positions`` overrides the ImagePositionPatient of every slice.
    ``rescale`` is one (slope, intercept) or one per slice. ``mutate(ds, k)`` may edit each
    dataset before it is written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_of_reference_uid = frame_of_reference_uid or generate_uid()
    stored_dtype = stored_dtype or array.dtype
    nz = array.shape[0]
    rescales = [tuple(rescale)] * nz if np.ndim(rescale) == 1 else [tuple(r) for r in rescale]  # type: ignore[arg-type]
    row, col, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    tilt = np.radians(tilt_deg)
    step = spacing[2] * (np.cos(tilt) * normal + np.sin(tilt) * col)

    kept = [k for k in range(nz) if k not in set(skip)]
    rng = random.Random(seed)
    numbers = list(range(1, len(kept) + 1))
    names = list(range(len(kept)))
    if shuffle_names:
        rng.shuffle(numbers)
        rng.shuffle(names)

    paths = []
    for n, k in enumerate(kept):
        slope, intercept = rescales[k]
        position = np.asarray(positions[k], dtype=float) if positions is not None else np.asarray(origin) + k * step
        ds = _base_dataset(CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE, generate_uid())
        ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.FrameOfReferenceUID = frame_of_reference_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.InstanceNumber = numbers[n]
        ds.PatientName = "Synthetic^Patient"
        ds.PatientID = "SYN001"
        ds.ImagePositionPatient = _ds_list(position)
        ds.ImageOrientationPatient = _ds_list(list(row) + list(col))
        ds.PixelSpacing = _ds_list([spacing[1], spacing[0]])  # row spacing, column spacing
        ds.SliceThickness = _ds(spacing[2])
        if tilt_deg:
            ds.GantryDetectorTilt = _ds(tilt_deg)
        if (slope, intercept) != (1.0, 0.0) or modality == "CT":
            ds.RescaleSlope = _ds(slope)
            ds.RescaleIntercept = _ds(intercept)
            if modality == "CT":
                ds.RescaleType = "HU"
        if window:
            ds.WindowCenter = _ds_list([w[0] for w in window])
            ds.WindowWidth = _ds_list([w[1] for w in window])
            names_ = [w[2] for w in window if len(w) > 2 and w[2]]
            if names_:
                ds.WindowCenterWidthExplanation = names_
        _set_pixel_module(ds, _stored_values(array[k], slope, intercept, stored_dtype))
        if mutate is not None:
            mutate(ds, k)
        path = folder / f"{prefix}{names[n]:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_ct(
    path: str | Path,
    array: np.ndarray,
    spacing: Sequence[float] = (0.7, 0.6, 1.5),
    origin: Sequence[float] = (10.0, -20.0, 5.0),
    direction: np.ndarray | None = None,
    *,
    rescale: tuple[float, float] = (1.0, -1024.0),
    frame_order: Sequence[int] | None = None,
    description: str = "Enhanced synthetic",
    series_uid: str | None = None,
    window: tuple[float, float] | None = (40.0, 400.0),
) -> Path:
    """One Enhanced CT multi-frame file; frames written in ``frame_order`` (default shuffled).

    Orientation, pixel measures and rescale live in SharedFunctionalGroupsSequence, one
    PlanePositionSequence per frame in PerFrameFunctionalGroupsSequence, as scanners do.
    """
    path = Path(path)
    array = np.asarray(array)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    nz = array.shape[0]
    if frame_order is None:
        frame_order = list(range(nz))
        random.Random(1).shuffle(frame_order)
    slope, intercept = rescale
    ds = _base_dataset(ENHANCED_CT_IMAGE_STORAGE, generate_uid())
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesDescription = description
    ds.SeriesNumber = 7
    ds.InstanceNumber = 1

    orientation = Dataset()
    orientation.ImageOrientationPatient = _ds_list(list(direction[:, 0]) + list(direction[:, 1]))
    measures = Dataset()
    measures.PixelSpacing = _ds_list([spacing[1], spacing[0]])
    measures.SliceThickness = _ds(spacing[2])
    transform = Dataset()
    transform.RescaleSlope = _ds(slope)
    transform.RescaleIntercept = _ds(intercept)
    transform.RescaleType = "HU"
    shared = Dataset()
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PixelValueTransformationSequence = DicomSequence([transform])
    if window is not None:
        voi = Dataset()
        voi.WindowCenter = _ds(window[0])
        voi.WindowWidth = _ds(window[1])
        shared.FrameVOILUTSequence = DicomSequence([voi])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per_frame = []
    for k in frame_order:
        plane = Dataset()
        plane.ImagePositionPatient = _ds_list(
            np.asarray(origin) + direction[:, 2] * spacing[2] * k
        )
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([plane])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    stored = np.stack([_stored_values(array[k], slope, intercept, np.int16) for k in frame_order])
    _set_pixel_module(ds, stored, frames=nz)
    if nz == 1:
        ds.NumberOfFrames = 1
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def write_junk(folder: str | Path) -> list[Path]:
    """Files a real export folder contains besides images: text, empty file, DICOMDIR, SR."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "x.dcm"
    text.write_text("this is not a DICOM file\n")
    empty = folder / "empty.dcm"
    empty.write_bytes(b"")
    dicomdir = folder / "DICOMDIR"
    ds = _base_dataset(DICOMDIR_STORAGE, generate_uid())
    ds.FileSetID = "SYNTH"
    ds.DirectoryRecordSequence = DicomSequence([])
    del ds.SOPClassUID, ds.SOPInstanceUID
    pydicom.dcmwrite(dicomdir, ds, enforce_file_format=True)
    report = folder / "report.dcm"
    ds = _base_dataset("1.2.840.10008.5.1.4.1.1.88.33", generate_uid())  # Comprehensive SR
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    pydicom.dcmwrite(report, ds, enforce_file_format=True)
    return [text, empty, dicomdir, report]
