"""Bad-input corpus, generated at test time: the files a clinician's disk really holds.

Each :class:`CorpusEntry` builds one file or folder under a temporary directory and says
what a reader must do with it: load with a warning, or refuse with a typed error whose
message names the file and the problem. Nothing binary is committed; every entry is made
from a few lines of pydicom / SimpleITK / raw bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from medviewer.io.errors import CorruptFileError, MedViewerIOError, NoImageDataError, UnsupportedFormatError
from dicom_fixtures import SECONDARY_CAPTURE_STORAGE, _base_dataset, ramp_volume, write_junk, write_series


@dataclass(frozen=True)
class CorpusEntry:
    """One bad (or borderline) input and the behaviour a reader owes the user."""

    name: str
    build: Callable[[Path], Path]
    #: None when the input must load (then ``problem`` must appear in a warning).
    error: type[MedViewerIOError] | None
    #: Regular expression the message (or a warning) must match: the *problem*, in words.
    problem: str
    #: How the entry is opened: as a scan, or as labels over :func:`reference_volume`.
    role: str = "volume"


def _one_slice(folder: Path) -> Path:
    return write_series(folder, ramp_volume((1, 8, 8)), shuffle_names=False)[0]


def truncated_dicom(root: Path) -> Path:
    path = _one_slice(root / "truncated")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 60])  # cut inside the pixel data
    return path


def corrupt_dicom_header(root: Path) -> Path:
    path = _one_slice(root / "corrupt")
    data = bytearray(path.read_bytes())
    data[140:220] = b"\xff" * 80  # garble the file meta group right after 'DICM'
    path.write_bytes(bytes(data))
    return path


def dicom_without_pixels(root: Path) -> Path:
    path = _one_slice(root / "nopixels")
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def dicomdir_only(root: Path) -> Path:
    folder = root / "dicomdir"
    junk = write_junk(folder)
    for path in junk:
        if path.name != "DICOMDIR":
            path.unlink()
    return folder / "DICOMDIR"


def text_named_dcm(root: Path) -> Path:
    path = root / "letter.dcm"
    path.write_text("Dear colleague, please find the scan attached.\n" * 10)
    return path


def text_named_nii(root: Path) -> Path:
    path = root / "letter.nii"
    path.write_text("Dear colleague, please find the scan attached.\n" * 10)
    return path


def empty_dcm(root: Path) -> Path:
    path = root / "zero.dcm"
    path.write_bytes(b"")
    return path


def empty_nii_gz(root: Path) -> Path:
    path = root / "zero.nii.gz"
    path.write_bytes(b"")
    return path


def empty_folder(root: Path) -> Path:
    folder = root / "nothing_here"
    folder.mkdir()
    return folder


def junk_folder_with_one_series(root: Path) -> Path:
    folder = root / "mixed"
    write_series(folder / "series", ramp_volume((3, 6, 5)))
    write_junk(folder)
    (folder / "notes.txt").write_text("scanned on Tuesday")
    (folder / "fake.nii").write_bytes(b"\x00" * 17)
    return folder


def lying_nifti(root: Path) -> Path:
    """A 352-byte NIfTI-1 header claiming 30000^3 int16 voxels (54 TB) followed by 64 bytes."""
    header = bytearray(352)
    header[0:4] = (348).to_bytes(4, "little")
    for index, value in enumerate([3, 30000, 30000, 30000, 1, 1, 1, 1]):
        header[40 + 2 * index : 42 + 2 * index] = value.to_bytes(2, "little", signed=True)
    header[70:72] = (4).to_bytes(2, "little")
    header[72:74] = (16).to_bytes(2, "little")
    header[76:108] = np.ones(8, np.float32).tobytes()
    header[108:112] = np.float32(352).tobytes()
    header[344:348] = b"n+1\0"
    path = root / "liar.nii"
    path.write_bytes(bytes(header) + b"\0" * 64)
    return path


def truncated_nifti(root: Path) -> Path:
    path = root / "short.nii"
    sitk.WriteImage(sitk.GetImageFromArray(ramp_volume((4, 16, 16))), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def nrrd_missing_data_file(root: Path) -> Path:
    path = root / "detached.nhdr"
    path.write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 3\nendian: little\nencoding: raw\n"
        "space: left-posterior-superior\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
        "space origin: (0,0,0)\ndata file: detached.raw\n\n"
    )
    return path


def four_d_nifti(root: Path) -> Path:
    path = root / "dynamic.nii.gz"
    sitk.WriteImage(sitk.Image([4, 4, 3, 5], sitk.sitkInt16), str(path))
    return path


def labels_on_other_grid(root: Path) -> Path:
    path = root / "other_grid_labels.nii.gz"
    labels = sitk.GetImageFromArray(np.ones((5, 9, 9), np.uint8))
    labels.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(labels, str(path))
    return path


def fractional_labels(root: Path) -> Path:
    path = root / "probabilities.nii.gz"
    image = sitk.GetImageFromArray(np.full(REFERENCE_SHAPE, 0.5, np.float32))
    sitk.WriteImage(image, str(path))
    return path


def rgb_dicom(root: Path) -> Path:
    folder = root / "rgb"
    folder.mkdir()
    ds = _base_dataset(SECONDARY_CAPTURE_STORAGE, pydicom.uid.generate_uid())
    ds.Modality = "OT"
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = 6, 7
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 0] = 200
    ds.PixelData = rgb.tobytes()
    path = folder / "photo.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def rgb_png(root: Path) -> Path:
    path = root / "photo.png"
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 120
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    return path


def lossy_jpeg_12bit(root: Path) -> Path:
    """pydicom's bundled 12-bit JPEG Extended file: no installed pylibjpeg plugin decodes it."""
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("JPEG-lossy.dcm"))
    path = root / "lossy12.dcm"
    path.write_bytes(source.read_bytes())
    return path


REFERENCE_SHAPE = (3, 6, 5)


def reference_volume():
    """The scan that label-map entries are opened against."""
    from medviewer.model.geometry import Geometry
    from medviewer.model.volume import Volume, VolumeInfo

    geometry = Geometry(REFERENCE_SHAPE, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    return Volume(np.zeros(REFERENCE_SHAPE, np.int16), geometry, VolumeInfo(name="reference"))


CORPUS: tuple[CorpusEntry, ...] = (
    CorpusEntry("truncated_dicom", truncated_dicom, CorruptFileError, r"truncated|pixel data"),
    CorpusEntry("corrupt_dicom_header", corrupt_dicom_header, CorruptFileError, r"damaged|cannot read|not DICOM"),
    CorpusEntry("dicom_without_pixels", dicom_without_pixels, MedViewerIOError, r"no pixel data|no image"),
    CorpusEntry("dicomdir_only", dicomdir_only, MedViewerIOError, r"DICOMDIR"),
    CorpusEntry("text_named_dcm", text_named_dcm, MedViewerIOError, r"not (a )?DICOM"),
    CorpusEntry("text_named_nii", text_named_nii, CorruptFileError, r"header"),
    CorpusEntry("empty_dcm", empty_dcm, MedViewerIOError, r"empty"),
    CorpusEntry("empty_nii_gz", empty_nii_gz, CorruptFileError, r"empty \(0 bytes\)"),
    CorpusEntry("empty_folder", empty_folder, NoImageDataError, r"no files"),
    CorpusEntry("junk_folder_with_one_series", junk_folder_with_one_series, None, r""),
    CorpusEntry("lying_nifti", lying_nifti, CorruptFileError, r"header claims .* voxels"),
    CorpusEntry("truncated_nifti", truncated_nifti, CorruptFileError, r"image data|truncated|short"),
    CorpusEntry("nrrd_missing_data_file", nrrd_missing_data_file, CorruptFileError, r"detached\.raw"),
    CorpusEntry("four_d_nifti", four_d_nifti, UnsupportedFormatError, r"4D image .* only 2D and 3D"),
    CorpusEntry("labels_on_other_grid", labels_on_other_grid, MedViewerIOError, r"grid|spacing|size", "labels"),
    CorpusEntry("fractional_labels", fractional_labels, MedViewerIOError, r"fractional values", "labels"),
    CorpusEntry("rgb_dicom", rgb_dicom, None, r"colour .*luminance"),
    CorpusEntry("rgb_png", rgb_png, None, r"colour .*luminance"),
    CorpusEntry(
        "lossy_jpeg_12bit", lossy_jpeg_12bit, CorruptFileError, r"JPEG Extended.*1\.2\.840\.10008\.1\.2\.4\.51.*gdcm"
    ),
)
