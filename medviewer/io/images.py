"""Single-file images through SimpleITK: NIfTI, NRRD, MetaImage, PNG/JPEG/TIFF.

SimpleITK already speaks LPS and (x, y, z) geometry, so the conversion to
:class:`~medviewer.model.Geometry` is a direct copy; no axis flips happen here.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from medviewer.io.errors import CorruptFileError, UnsupportedFormatError, WriteError
from medviewer.model.geometry import Geometry
from medviewer.model.volume import Volume, VolumeInfo

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")

#: Said whenever a colour image is turned into one grey channel, so it never happens silently.
COLOUR_AS_LUMINANCE_WARNING = (
    "colour (RGB) image: shown and segmented as its grey luminance (0.299 R + 0.587 G + 0.114 B); "
    "the colours are not displayed"
)

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


_SITK_NOISE = re.compile(r"^(sitk::ERROR:|ITK ERROR:\s*\w+\(0x[0-9a-fA-F]+\):|\[nrrd\]\s*\w+:)\s*")


def _first_line(exc: Exception) -> str:
    """The one line of a SimpleITK/ITK/teem error that says what is wrong, without C++ locations."""
    lines = []
    for raw in str(exc).strip().splitlines():
        line = raw.strip()
        if not line or line.startswith(("Exception thrown in SimpleITK", "/", "Reason: No such file")):
            continue
        line = _SITK_NOISE.sub("", line).strip()
        if line:
            lines.append(line)
    if not lines:
        return type(exc).__name__
    reason = lines[-1]
    if reason.startswith("Unable to determine ImageIO reader"):
        return "no image reader recognises the content; the file is not in the format its name says"
    if reason.startswith("File cannot be read"):
        return "the image data is missing or incomplete"
    return reason[:300]


def _nifti_data_end(header: bytes) -> int | None:
    """Bytes a NIfTI-1/2 file must hold (vox_offset + voxel data), or None if the header is odd."""
    for order in ("<", ">"):
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            bitpix = struct.unpack(order + "h", header[72:74])[0]
            offset_value = struct.unpack(order + "f", header[108:112])[0]
            if not math.isfinite(offset_value):
                return None  # ITK refuses or ignores it; nothing to measure against
            offset = int(offset_value)
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(order + "h", header[14:16])[0]
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None
    rank = dims[0]
    if not 1 <= rank <= 7 or bitpix <= 0 or bitpix % 8 or any(d < 1 for d in dims[1 : rank + 1]):
        return None
    if offset < 348:
        return None  # a .hdr/.img pair or a broken offset: ITK decides
    return offset + int(np.prod(dims[1 : rank + 1], dtype=np.int64)) * (bitpix // 8)


def _gzip_length(path: Path) -> int:
    """Uncompressed size of a gzip file, checked by streaming (raises on a truncated stream)."""
    total = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 22):
            total += len(chunk)
    return total


def _check_nifti_complete(path: Path) -> None:
    """Refuse a truncated NIfTI: ITK reads one silently and pads the missing voxels with zeros."""
    with open(path, "rb") as handle:
        header = handle.read(540)
    compressed = header[:2] == b"\x1f\x8b"  # by content: ITK also reads a plain file named .nii.gz
    try:
        if compressed:
            with gzip.open(path, "rb") as stream:
                header = stream.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(f"cannot read the NIfTI header ({exc})", path) from None
    needed = _nifti_data_end(header)
    if needed is None:
        return  # let ITK judge headers we do not understand
    if not compressed:
        have = path.stat().st_size
    else:
        with open(path, "rb") as handle:  # gzip trailer: uncompressed size modulo 2**32
            handle.seek(-4, os.SEEK_END)
            trailer = struct.unpack("<I", handle.read(4))[0]
        if trailer == needed % (1 << 32):
            return
        try:
            have = _gzip_length(path)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptFileError(f"the compressed data is truncated or damaged ({exc})", path) from None
    if have < needed:
        raise CorruptFileError(
            f"the file is truncated: its header needs {needed:,} bytes (with the image data), "
            f"the file has {have:,}",
            path,
        )


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
    needed, memory = voxels * _bytes_per_component(reader), _physical_memory()
    if memory and needed > 0.8 * memory:
        raise CorruptFileError(
            f"the header claims {size} voxels ({needed / 2**30:.1f} GiB), more than this computer's "
            f"memory ({memory / 2**30:.1f} GiB); the header is wrong or the image is too large",
            path,
        )
    if suffix in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    elif suffix in (".nrrd", ".mha"):
        _check_raw_data_complete(path, needed)
    sitk = _sitk()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise CorruptFileError(f"cannot read the image data ({_first_line(exc)})", path) from None
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    try:
        geometry = geometry_from_sitk(image)
    except ValueError as exc:  # zero spacing, a non-orthonormal direction, ...
        raise CorruptFileError(f"the header's geometry is invalid ({exc})", path) from None
    info = VolumeInfo(name=path.name.split(".")[0], source=str(path))
    if components > 1:
        rgb = sitk.GetArrayFromImage(image)
        if rgb.ndim == 3:  # 2D colour picture -> (1, y, x, c)
            rgb = rgb[np.newaxis]
        gray = _luminance(rgb)
        color = rgb[..., :3] if rgb.dtype == np.uint8 else None
        info.extra["components"] = components
        info.warnings.append(COLOUR_AS_LUMINANCE_WARNING)
        return Volume(gray, geometry, info, color=color)
    array = sitk.GetArrayFromImage(image)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return Volume(array, geometry, info)


def _check_raw_data_complete(path: Path, needed: int) -> None:
    """Refuse an uncompressed .nrrd / .mha whose header promises more data than the file has.

    ITK allocates the whole image before it notices a short read, so a lying header would
    cost its full size in memory first. Compressed or detached data is left to ITK.
    """
    with open(path, "rb") as handle:
        head = handle.read(16384)
    if path.suffix.lower() == ".nrrd":
        end = head.find(b"\n\n")
        fields = head[:end].lower() if end >= 0 else b""
        if end < 0 or b"encoding: raw" not in fields or b"data file" in fields or b"datafile" in fields:
            return
        start = end + 2
    else:
        match = re.search(rb"ElementDataFile\s*=\s*LOCAL[^\n]*\n", head)
        if match is None or re.search(rb"CompressedData\s*=\s*True", head[: match.start()], re.IGNORECASE):
            return
        start = match.end()
    have = path.stat().st_size - start
    if have < needed:
        raise CorruptFileError(
            f"the file is truncated: its header needs {needed:,} bytes of image data, the file has {have:,}", path
        )


def _bytes_per_component(reader) -> int:
    """Bytes of one pixel component of the image a reader would load (8 when unknown)."""
    sitk = _sitk()
    try:
        probe = sitk.Image([1, 1], reader.GetPixelID(), 1) if reader.GetNumberOfComponents() > 1 else \
            sitk.Image([1, 1], reader.GetPixelID())
        return int(sitk.GetArrayViewFromImage(probe).dtype.itemsize)
    except (RuntimeError, TypeError, ValueError):
        return 8


def _physical_memory() -> int | None:
    """Installed RAM in bytes (POSIX); None where it cannot be asked."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


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
