"""Seeds, byte mutations and reader calls shared by the reader fuzz test and benchmark.

Every reader gets bytes derived from one small valid file of its format. It must load
them or raise a :class:`~medviewer.io.errors.MedViewerIOError`; anything else (a foreign
exception, a hang, a huge allocation) is a finding. Seeds are generated, never committed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from dicom_fixtures import ramp_volume, write_series

#: Values that break size arithmetic when they land on a header field.
EXTREME_INTS = (0, 1, 255, 0x7FFF, 0x8000, 0xFFFF, 30000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
EXTREME_NUMBERS = (b"0", b"-1", b"1", b"99999", b"2147483648", b"1e308", b"nan", b"")
HEADER_BYTES = 512


@dataclass(frozen=True)
class FuzzTarget:
    """One reader and the valid file whose mutations it must survive."""

    name: str
    suffix: str
    seed: bytes
    read: Callable[[Path], object]


def build_targets(root: Path) -> list[FuzzTarget]:
    """Valid DICOM, NIfTI (plain and gzip), NRRD, .seg.nrrd and DICOM SEG seeds with their readers."""
    import SimpleITK as sitk

    from medviewer.export.formats import export_segmentation
    from medviewer.io.loader import load_volume
    from medviewer.io.segmentation_files import load_segmentation
    from medviewer.model.segments import Segment

    root.mkdir(parents=True, exist_ok=True)
    values = ramp_volume((3, 8, 10))
    files = write_series(root / "dicom", values, shuffle_names=False)
    volume = load_volume(root / "dicom")
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.8, 0.9, 2.5))
    for name, compress in (("seed.nii", False), ("seed.nii.gz", True), ("seed.nrrd", False)):
        sitk.WriteImage(image, str(root / name), compress)
    labels = np.zeros(values.shape, np.uint8)
    labels[1:3, 2:6, 3:8] = 1
    labels[0:2, 5:8, 6:10] = 2
    segments = [Segment(1, "liver", (221, 130, 101)), Segment(2, "spleen", (157, 108, 162))]
    export_segmentation(root / "seed.seg.nrrd", labels, volume.geometry, segments, volume)
    export_segmentation(root / "seed_seg.dcm", labels, volume.geometry, segments, volume)

    def read_segmentation(path: Path):  # the app's entry point for every segmentation file
        return load_segmentation(path, volume)

    return [
        FuzzTarget("dicom", ".dcm", files[1].read_bytes(), load_volume),
        FuzzTarget("nifti", ".nii", (root / "seed.nii").read_bytes(), load_volume),
        FuzzTarget("nifti_gz", ".nii.gz", (root / "seed.nii.gz").read_bytes(), load_volume),
        FuzzTarget("nrrd", ".nrrd", (root / "seed.nrrd").read_bytes(), load_volume),
        FuzzTarget("seg_nrrd", ".seg.nrrd", (root / "seed.seg.nrrd").read_bytes(), read_segmentation),
        FuzzTarget("dicom_seg", ".dcm", (root / "seed_seg.dcm").read_bytes(), read_segmentation),
    ]


@st.composite
def mutations(draw, seed: bytes) -> bytes:
    """1-4 edits of ``seed``, biased to the header where the size fields live."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        last = len(data) - 1
        position = draw(st.one_of(st.integers(0, min(last, HEADER_BYTES - 1)), st.integers(0, last)))
        operation = draw(st.sampled_from(("flip", "byte", "int32", "int16", "number", "truncate", "insert", "delete")))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "byte":
            data[position] = draw(st.integers(0, 255))
        elif operation in ("int32", "int16"):
            width = 4 if operation == "int32" else 2
            value = draw(st.sampled_from(EXTREME_INTS)) & ((1 << (8 * width)) - 1)
            data[position : position + width] = value.to_bytes(width, draw(st.sampled_from(("little", "big"))))
        elif operation == "number":
            numbers = list(re.finditer(rb"-?\d+(\.\d+)?", bytes(data[: max(HEADER_BYTES, 2048)])))
            if numbers:
                match = numbers[draw(st.integers(0, len(numbers) - 1))]
                data[match.start() : match.end()] = draw(st.sampled_from(EXTREME_NUMBERS))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[position : position + draw(st.integers(1, 64))]
    return bytes(data)
