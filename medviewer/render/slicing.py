"""Slice extraction into a reusable buffer VTK can display without copying again.

The volume keeps its native dtype; the view copies only the slice it shows into one
contiguous 2D buffer that VTK reads in place (numpy_to_vtk with deep=False).
"""

from __future__ import annotations

import numpy as np

from medviewer.model.events import Box
from medviewer.model.geometry import Geometry

#: dtypes VTK reads directly from numpy memory; anything else is widened once per slice.
_VTK_DTYPES = {np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                                     np.int64, np.uint64, np.float32, np.float64)}

_POSITIVE_LETTERS = ("L", "P", "S")


def vtk_friendly_dtype(dtype) -> np.dtype:
    """The dtype a slice buffer needs: the same one when VTK supports it."""
    dtype = np.dtype(dtype)
    if dtype.byteorder not in ("=", "|"):
        dtype = dtype.newbyteorder("=")  # the copy into the buffer swaps the bytes once
    if dtype in _VTK_DTYPES:
        return dtype
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    if dtype == np.float16:
        return np.dtype(np.float32)
    raise ValueError(f"cannot display voxels of type {dtype}")


class SliceBuffer:
    """One axial slice of a 3D (z, y, x) array, kept in a contiguous 2D buffer.

    ``load(k)`` copies slice ``k``; ``update(box)`` copies only the part of a changed
    region that intersects the shown slice and returns whether anything was copied.
    """

    def __init__(self, array: np.ndarray):
        if array.ndim != 3:
            raise ValueError(f"need a 3D array, got shape {array.shape}")
        self.source = array
        self.buffer = np.zeros(array.shape[1:], dtype=vtk_friendly_dtype(array.dtype))
        self.index: int | None = None

    @property
    def depth(self) -> int:
        return int(self.source.shape[0])

    def load(self, index: int) -> np.ndarray:
        index = int(np.clip(index, 0, self.depth - 1))
        np.copyto(self.buffer, self.source[index], casting="unsafe")
        self.index = index
        return self.buffer

    def update(self, box: Box) -> bool:
        """Re-copy the part of ``box`` that lies on the shown slice (the changed region only)."""
        if self.index is None or box.is_empty:
            return False
        (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
        if not (z0 <= self.index < z1):
            return False
        region = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        np.copyto(self.buffer[region], self.source[self.index][region], casting="unsafe")
        return True


def slice_position_text(geometry: Geometry, k: int) -> str:
    """Position of slice ``k`` along the patient axis closest to its normal, e.g. 'S 12.50 mm'.

    The value is the LPS coordinate (L, P, S positive) of the slice centre, so for a
    standard axial stack it is the table position a radiologist expects.
    """
    nx, ny, _ = geometry.size_xyz
    centre = geometry.index_to_physical(((nx - 1) / 2.0, (ny - 1) / 2.0, float(k)))
    normal = geometry.direction_matrix[:, 2]
    axis = int(np.argmax(np.abs(normal)))
    value = float(centre[axis])
    if abs(value) < 0.005:
        value = 0.0
    return f"{_POSITIVE_LETTERS[axis]} {value:.2f} mm"
