"""Single-file images through SimpleITK: NIfTI, NRRD, MetaImage, PNG/JPEG/TIFF.

SimpleITK already speaks LPS and (x, y, z) geometry, so the conversion to
:class:`~medviewer.model.Geometry` is a direct copy; no axis flips happen here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medviewer.io.errors import CorruptFileError, UnsupportedFormatError, WriteError
from medviewer.model.geometry import Geometry
from medviewer.model.volume import Volume, VolumeInfo

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")

#: Refuse headers whose voxel count would need more memory than a workstation has.
MAX_VOXELS = 4_000_000_000


def file_suffix(path: str | Path) -> str:
    """Lower-case suffix, treating '.nii.gz' (and '.seg.nrrd') as one suffix."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".seg.nrrd"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def is_image_file(path: str | Path) -> bool:
    return file_suffix(path) in VOLUME_SUFFIXES + PICTURE_SUFFIXES + (".seg.nrrd",)


def _sitk():
    import SimpleITK as sitk

    return sitk


def geometry_from_sitk(image) -> Geometry:
    size = image.GetSize()
    if len(size) == 2:
        spacing = tuple(image.GetSpacing()) + (1.0,)
        origin = tuple(image.GetOrigin()) + (0.0,)
        d = image.GetDirection()
        direction = (d[0], d[1], 0.0, d[2], d[3], 0.0, 0.0, 0.0, 1.0)
        shape = (1, size[1], size[0])
    else:
        spacing, origin, direction = image.GetSpacing(), image.GetOrigin(), image.GetDirection()
        shape = (size[2], size[1], size[0])
    return Geometry(shape, spacing, origin, direction)


def sitk_from_array(array: np.ndarray, geometry: Geometry):
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def _read_header(path: Path):
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CorruptFileError(f"cannot read the image header ({_first_line(exc)})", path) from None
    return reader


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    detail = [line.strip() for line in text if line.strip() and not line.startswith(("sitk::", "/"))]
    return (detail[-1] if detail else (text[-1] if text else type(exc).__name__))[:300]


def read_image(path: str | Path) -> Volume:
    """Read a NIfTI / NRRD / MetaImage volume or a 2D picture as a :class:`Volume`."""
    path = Path(path)
    suffix = file_suffix(path)
    if suffix not in VOLUME_SUFFIXES + PICTURE_SUFFIXES + (".seg.nrrd",):
        raise UnsupportedFormatError(
            f"unknown file type '{suffix or path.name}'; medviewer reads "
            + ", ".join(VOLUME_SUFFIXES + PICTURE_SUFFIXES)
            + " and DICOM",
            path,
        )
    if not path.is_file():
        raise UnsupportedFormatError("no such file", path)
    if path.stat().st_size == 0:
        raise CorruptFileError("the file is empty (0 bytes)", path)
    reader = _read_header(path)
    size = reader.GetSize()
    dims = len(size)
    components = reader.GetNumberOfComponents()
    if dims > 3 and any(s > 1 for s in size[3:]):
        raise UnsupportedFormatError(
            f"{dims}D image of size {size}: only 2D and 3D images are supported (pick one time point first)",
            path,
        )
    voxels = int(np.prod(size, dtype=np.int64)) * components
    if voxels > MAX_VOXELS:
        raise CorruptFileError(f"the header claims {size} voxels ({voxels:,}), more than can be loaded", path)
    sitk = _sitk()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise CorruptFileError(f"cannot read the image data ({_first_line(exc)})", path) from None
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    info = VolumeInfo(name=path.name.split(".")[0], source=str(path))
    if components > 1:
        rgb = sitk.GetArrayFromImage(image)
        geometry = geometry_from_sitk(image)
        if rgb.ndim == 3:  # 2D colour picture -> (1, y, x, c)
            rgb = rgb[np.newaxis]
        gray = _luminance(rgb)
        color = rgb[..., :3] if rgb.dtype == np.uint8 else None
        info.extra["components"] = components
        return Volume(gray, geometry, info, color=color)
    array = sitk.GetArrayFromImage(image)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return Volume(array, geometry_from_sitk(image), info)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, rounded back to the source integer type when it has one."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gray = rgb[..., :3].astype(np.float32) @ weights
    if np.issubdtype(rgb.dtype, np.integer):
        return np.clip(np.rint(gray), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
    return gray


def write_array(path: str | Path, array: np.ndarray, geometry: Geometry, compress: bool = True) -> Path:
    """Write an array on ``geometry`` to NIfTI / NRRD / MHA atomically (temp file, then rename)."""
    path = Path(path)
    suffix = file_suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise WriteError(f"cannot write '{suffix or path.name}' files; use one of {', '.join(WRITE_SUFFIXES)}", path)
    if tuple(array.shape) != tuple(geometry.shape):
        raise WriteError(f"array shape {array.shape} does not match its geometry {geometry.shape}", path)
    if not path.parent.is_dir():
        raise WriteError("the folder does not exist", path.parent)
    temp = path.with_name(f".{path.name}.partial{suffix}")
    sitk = _sitk()
    try:
        sitk.WriteImage(sitk_from_array(array, geometry), str(temp), compress)
        temp.replace(path)
    except (RuntimeError, OSError) as exc:
        temp.unlink(missing_ok=True)
        raise WriteError(f"writing failed ({_first_line(exc)})", path) from None
    return path


def write_volume(path: str | Path, volume: Volume, compress: bool = True) -> Path:
    return write_array(path, volume.array, volume.geometry, compress)
