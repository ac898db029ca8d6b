"""Small pieces every tool shares: previews, boxes around segments, kernels in millimetres."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medviewer.model.events import Box


@dataclass
class Preview:
    """What a tool would do, shown before the user accepts it: ``mask`` covers ``box``.

    The GUI draws ``mask`` as an overlay at ``box.start`` and calls the tool's ``accept``.
    """

    box: Box
    mask: np.ndarray
    label: int
    tool: str
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))


def clip_box(box: Box, shape) -> Box | None:
    """``box`` cut to the array; None when nothing is left."""
    start = tuple(max(0, int(a)) for a in box.start)
    stop = tuple(min(int(s), int(b)) for s, b in zip(shape, box.stop))
    if any(b <= a for a, b in zip(start, stop)):
        return None
    return Box(start, stop)  # type: ignore[arg-type]


def pad_box(box: Box, pad, shape) -> Box:
    """``box`` grown by ``pad`` voxels per axis (a number or one per axis), clipped to the array."""
    pad = np.broadcast_to(np.asarray(pad, dtype=int), (3,))
    low = tuple(int(a - p) for a, p in zip(box.start, pad))
    high = tuple(int(b + p) for b, p in zip(box.stop, pad))
    grown = Box(low, high)  # type: ignore[arg-type]
    return clip_box(grown, shape) or box


def label_box(labels: np.ndarray, label: int) -> Box | None:
    """Bounding box of one label's voxels, or None when it has none."""
    return Box.from_mask(labels == label)


def spacing_zyx(geometry) -> np.ndarray:
    """Voxel size in array order (z, y, x), millimetres."""
    return np.asarray(geometry.spacing[::-1], dtype=float)


def radius_in_voxels(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """How many whole voxels a millimetre radius spans along each array axis."""
    return np.floor(abs(float(radius_mm)) / spacing + 1e-9).astype(int)


def ellipsoid_kernel(radius_mm: float, spacing: np.ndarray, plane_axis: int | None = None) -> np.ndarray:
    """Boolean ball of ``radius_mm`` on an anisotropic grid (a disc when ``plane_axis`` is set)."""
    reach = radius_in_voxels(radius_mm, spacing)
    if plane_axis is not None:
        reach[plane_axis] = 0
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in reach)]
    distance2 = sum((g * s) ** 2 for g, s in zip(grids, spacing))
    kernel = distance2 <= float(radius_mm) ** 2 + 1e-9
    kernel[tuple(r for r in reach)] = True
    return kernel


def physical_to_zyx(geometry, point_lps) -> np.ndarray:
    """Continuous array index (z, y, x) of an LPS point."""
    return np.asarray(geometry.physical_to_index(np.asarray(point_lps, dtype=float)), dtype=float)[::-1]


def nearest_voxel(geometry, point_lps) -> tuple[int, int, int] | None:
    """Voxel (z, y, x) under an LPS point, or None when it lies outside the grid."""
    ijk = geometry.physical_to_nearest_index(point_lps)
    if ijk is None:
        return None
    return (ijk[2], ijk[1], ijk[0])
