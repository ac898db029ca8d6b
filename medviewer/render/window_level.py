"""Window/level arithmetic shared by the views (no Qt, no VTK).

The convention follows 3D Slicer and ITK-SNAP: dragging across the whole view changes the
window by the full intensity span of the volume, horizontally for the width and vertically
for the level, so the feel is the same for 8-bit pictures and 16-bit CT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A window never gets narrower than this fraction of the intensity span (avoids a
#: degenerate, fully thresholded display and division by zero in the mapping).
MIN_WIDTH_FRACTION = 1e-4


@dataclass(frozen=True)
class WindowLevel:
    """Display window in stored intensity units: ``center`` (level) and ``width``."""

    center: float
    width: float

    @classmethod
    def from_range(cls, low: float, high: float) -> WindowLevel:
        return cls((low + high) / 2.0, high - low)

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0

    def map_to_gray(self, values) -> np.ndarray:
        """Grey value 0..1 that the display gives each intensity (a linear ramp, clamped)."""
        values = np.asarray(values, dtype=float)
        return np.clip((values - self.low) / self.width, 0.0, 1.0)


def minimum_width(intensity_span: float) -> float:
    return max(float(intensity_span) * MIN_WIDTH_FRACTION, 1e-6)


def drag_window_level(
    start: WindowLevel,
    dx_pixels: float,
    dy_pixels: float,
    view_size: tuple[int, int],
    intensity_span: float,
) -> WindowLevel:
    """Window after a mouse drag of (dx, dy) pixels that began at ``start``.

    ``dx`` > 0 (drag right) widens the window, ``dy`` > 0 (drag up, display coordinates)
    raises the level, which darkens the image: the Slicer/ITK-SNAP feel.
    """
    span = max(float(intensity_span), 1e-6)
    width_px = max(int(view_size[0]), 1)
    height_px = max(int(view_size[1]), 1)
    width = start.width + dx_pixels / width_px * span
    center = start.center + dy_pixels / height_px * span
    return WindowLevel(center, max(width, minimum_width(span)))


def _compact(value: float) -> str:
    """400 -> '400', 40.5 -> '40.5', 0.0012345 -> '0.00123'."""
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.3g}"


def format_window_level(window: WindowLevel) -> str:
    """Corner text such as 'W 400  L 40'."""
    return f"W {_compact(window.width)}  L {_compact(window.center)}"
