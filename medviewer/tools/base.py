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


# -- physical planes through an oblique grid ------------------------------------------------------
#: A view plane whose normal is within this cosine of an array axis is that array slice.
PARALLEL_COSINE = 1.0 - 1e-6


def array_axes_lps(geometry) -> np.ndarray:
    """LPS unit vectors of the array axes (z, y, x) as columns."""
    return np.asarray(geometry.direction_matrix, dtype=float)[:, ::-1]


def plane_follows_array_axis(geometry, plane) -> bool:
    """Whether a physical plane's normal runs along its array axis, so the array slice is the plane."""
    cosines = array_axes_lps(geometry).T @ np.asarray(plane.normal, dtype=float)
    return bool(abs(cosines[plane.axis]) >= PARALLEL_COSINE)


def is_oblique_plane(geometry, plane) -> bool:
    """True for a physical plane that no array slice matches (tools must use :func:`plane_slab_voxels`)."""
    return plane is not None and plane.is_physical and not plane_follows_array_axis(geometry, plane)


def plane_slab_voxels(geometry, plane) -> np.ndarray:
    """Sorted flat indices (C order) of every voxel whose cell a physical plane cuts.

    The rule is the circle brush's: the voxel centre lies within half the voxel's extent
    along the normal, ``|d| <= sum_a |n . axis_a| * spacing_a / 2``. The grid is walked
    column by column along the axis that advances the distance most per voxel, so each
    column holds at most a few slab voxels and the cost is that of the plane, not the volume.
    """
    shape = tuple(int(n) for n in geometry.shape)
    normal = np.asarray(plane.normal, dtype=float)
    origin = np.asarray(plane.origin, dtype=float)
    steps = (array_axes_lps(geometry).T @ normal) * spacing_zyx(geometry)  # mm of distance per voxel, per axis
    half = 0.5 * float(np.sum(np.abs(steps)))
    at_zero = float(normal @ (np.asarray(geometry.index_to_physical(np.zeros(3)), dtype=float) - origin))
    deep = int(np.argmax(np.abs(steps)))
    across = [axis for axis in range(3) if axis != deep]
    g1 = np.arange(shape[across[0]], dtype=float)[:, None]
    g2 = np.arange(shape[across[1]], dtype=float)[None, :]
    rest = at_zero + steps[across[0]] * g1 + steps[across[1]] * g2
    slope = float(steps[deep])
    ends = ((-half - 1e-9 - rest) / slope, (half + 1e-9 - rest) / slope)
    if slope < 0:
        ends = ends[::-1]
    lowest = np.maximum(np.ceil(ends[0]), 0.0)
    highest = np.minimum(np.floor(ends[1]), shape[deep] - 1.0)
    pieces = []
    for layer in range(int(max(0.0, float(np.max(highest - lowest)) + 1.0))):
        depth = lowest + layer
        rows, columns = np.nonzero(depth <= highest)
        coords = [rows, columns]
        coords.insert(deep, depth[rows, columns].astype(np.int64))
        pieces.append(np.ravel_multi_index(coords, shape))
    if not pieces:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(pieces))


def flat_to_box_mask(shape, flat: np.ndarray) -> tuple[Box, np.ndarray] | None:
    """The tight box around flat voxel indices and the boolean mask of them inside it."""
    if flat.size == 0:
        return None
    coords = np.unravel_index(flat, tuple(shape))
    start = tuple(int(c.min()) for c in coords)
    stop = tuple(int(c.max()) + 1 for c in coords)
    box = Box(start, stop)  # type: ignore[arg-type]
    mask = np.zeros(box.shape, dtype=bool)
    mask[tuple(c - s for c, s in zip(coords, start))] = True
    return box, mask
