"""What a header scan learns about a series, kept so loading needs no second header pass."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PixelLocation:
    """Where a file's uncompressed PixelData value lies, found by the scan for a direct read."""

    element_offset: int  # first byte of the (7FE0,0010) tag, checked again before reading
    value_offset: int  # first pixel byte
    length: int  # value length in bytes (even, so it may include a pad byte)
    file_size: int = -1  # size and modification time at scan time: a changed file is
    file_mtime_ns: int = -1  # decoded by pydicom instead of read at a stale offset


@dataclass(frozen=True)
class DicomFrame:
    """One 2D frame: a single-frame file or one frame of a multi-frame file.

    Everything the stacker needs (position, orientation, rescale) is resolved per frame at
    scan time, so enhanced multi-frame objects and classic one-file-per-slice series are
    sorted, checked and rescaled by the same code.
    """

    path: str
    frame_index: int | None  # 0-based frame in a multi-frame file; None for single-frame files
    rows: int
    columns: int
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, float, float, float, float, float] | None = None
    pixel_spacing: tuple[float, float] | None = None  # (row spacing, column spacing)
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    has_rescale: bool = False
    instance_number: int | None = None
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    gantry_tilt: float | None = None
    windows: tuple[tuple[float, float, str], ...] = ()  # (center, width, explanation)
    samples_per_pixel: int = 1
    photometric: str = ""
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    transfer_syntax: str = ""
    pixel_location: PixelLocation | None = None  # None: decode the file with pydicom

    @property
    def label(self) -> str:
        """File name plus frame number, for error messages."""
        if self.frame_index is None:
            return self.path
        return f"{self.path} (frame {self.frame_index + 1})"


@dataclass
class DicomSeries:
    """One stackable series found by :func:`scan_dicom`; pass it to :func:`load_series`."""

    series_instance_uid: str
    key: str  # unique id for picking: the series UID, with ".N" when one UID was split
    description: str
    modality: str
    rows: int
    columns: int
    num_slices: int  # slices of the loaded volume (gap-filled slices included when known)
    files: list[str]
    is_multiframe: bool
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) from the header
    slice_spacing: float | None  # derived from slice positions when they are usable
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, 6 values
    warnings: list[str] = field(default_factory=list)
    study_instance_uid: str = ""
    series_number: int | None = None
    frame_of_reference_uid: str = ""
    body_part: str = ""
    sop_class_uid: str = ""
    photometric: str = ""
    samples_per_pixel: int = 1
    rescale_type: str = ""
    units: str = ""
    source: str = ""  # the path that was scanned
    frames: list[DicomFrame] = field(default_factory=list, repr=False)

    @property
    def is_color(self) -> bool:
        return self.samples_per_pixel > 1 or self.photometric == "PALETTE COLOR"

    def summary(self) -> str:
        """One line for pickers and error messages: modality, name, size, spacing, key."""
        if self.pixel_spacing is not None:
            row_sp, col_sp = self.pixel_spacing
            spacing = f"{_mm(col_sp)}x{_mm(row_sp)}x{_mm(self.slice_spacing)} mm"
        else:
            spacing = f"?x?x{_mm(self.slice_spacing)} mm"
        text = (
            f"{self.modality or '?':<3} '{self.description}'  "
            f"{self.columns}x{self.rows}x{self.num_slices}  {spacing}  uid={self.key}"
        )
        if self.warnings:
            n = len(self.warnings)
            text += f"  [{n} warning{'s' if n != 1 else ''}]"
        return text


def _mm(value: float | None) -> str:
    if value is None:
        return "?"
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text
