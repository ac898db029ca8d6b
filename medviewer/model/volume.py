"""Scalar image volume with physical geometry and display metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medviewer.model.geometry import Geometry


@dataclass(frozen=True)
class WindowPreset:
    """A window/level pair in the stored (rescaled) intensity units."""

    name: str
    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0


@dataclass
class VolumeInfo:
    """What a user needs to know about where a volume came from; no patient identifiers."""

    name: str = ""
    modality: str = ""
    series_description: str = ""
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    source: str = ""
    window_presets: list[WindowPreset] = field(default_factory=list)
    rescale_applied: bool = False
    units: str = ""
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class Volume:
    """An image as a numpy array in (z, y, x) order plus its geometry.

    The source dtype is kept (int16 CT stays int16) so a 512x512x300 series costs what the
    scanner wrote, not four times that. ``color`` optionally holds an RGB(A) uint8 copy for
    display when the source was a colour image; ``array`` is then its grayscale.
    """

    def __init__(
        self,
        array: np.ndarray,
        geometry: Geometry | None = None,
        info: VolumeInfo | None = None,
        color: np.ndarray | None = None,
    ):
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[np.newaxis]
        if array.ndim != 3:
            raise ValueError(f"a volume needs a 2D or 3D array, got shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise ValueError(f"unsupported voxel type {array.dtype}")
        if geometry is None:
            geometry = Geometry(array.shape)
        elif tuple(geometry.shape) != array.shape:
            raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}")
        if color is not None and color.shape[:3] != array.shape:
            raise ValueError(f"colour array {color.shape} does not match {array.shape}")
        self.array = array
        self.geometry = geometry
        self.info = info or VolumeInfo()
        self.color = color
        self._range: tuple[float, float] | None = None
        self._percentiles: dict[tuple[float, float], tuple[float, float]] = {}

    def __repr__(self) -> str:
        g = self.geometry
        return f"Volume({self.info.name!r}, size={g.size_xyz}, spacing={g.spacing}, dtype={self.dtype})"

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes + (self.color.nbytes if self.color is not None else 0))

    def value_at(self, ijk: tuple[int, int, int]):
        i, j, k = ijk
        return self.array[k, j, i].item()

    def intensity_range(self) -> tuple[float, float]:
        if self._range is None:
            self._range = (float(self.array.min()), float(self.array.max()))
        return self._range

    def percentiles(self, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
        """Robust intensity range from a strided sample, so 300-slice series stay fast."""
        key = (low, high)
        if key not in self._percentiles:
            flat = self.array.reshape(-1)
            step = max(1, flat.size // 2_000_000)
            sample = flat[::step]
            lo, hi = np.percentile(sample, [low, high])
            self._percentiles[key] = (float(lo), float(hi))
        return self._percentiles[key]

    def auto_window(self) -> WindowPreset:
        """Window a user expects on first display.

        The first DICOM-provided window wins (the scanner or reader chose it); otherwise
        CT gets a soft-tissue window and everything else the 1-99 percentile range.
        """
        if self.info.window_presets:
            return self.info.window_presets[0]
        if self.info.modality.upper() == "CT":
            return WindowPreset("Soft tissue", 40.0, 400.0)
        lo, hi = self.percentiles(1.0, 99.0)
        if hi <= lo:
            lo, hi = self.intensity_range()
            if hi <= lo:
                hi = lo + 1.0
        return WindowPreset("Auto", (lo + hi) / 2.0, hi - lo)
