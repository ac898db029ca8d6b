"""2D prompts on views that cut a volume obliquely (a tilted MR or CT acquisition shown in
patient axes): resample the shown plane into an image a 2D model can take, and map the mask
the model returns back onto the voxels the plane passes through.

Qt-free. A plane is the view's sampling grid: pixel (column c, row r) lies at
``(x0 + c * sx) * right + (y0 + r * sy) * down + position * normal`` in LPS millimetres,
exactly as the slice view samples it, so what the user prompts on is what the model sees.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from medviewer.model.events import Box


@dataclass(frozen=True)
class ObliquePlane:
    """One oblique view plane: its axes (unit LPS vectors), sampling grid and position."""

    right: tuple[float, float, float]
    down: tuple[float, float, float]
    normal: tuple[float, float, float]
    origin_2d: tuple[float, float]  # plane coordinates (mm) of pixel (0, 0)
    pixel_spacing: tuple[float, float]  # (columns, rows) mm
    size: tuple[int, int]  # (columns, rows)
    position: float  # mm along ``normal``
    thickness: float  # mm: the voxel extent along the normal (one slice of the view)

    @classmethod
    def from_slice_geometry(cls, plan, cursor) -> ObliquePlane:
        """The plane a view with sampling plan ``plan`` (a render SliceGeometry) shows at ``cursor``."""
        def rounded(values, digits=6):
            return tuple(round(float(v), digits) for v in values)

        return cls(
            rounded(plan.right), rounded(plan.down), rounded(plan.normal),
            rounded(plan.origin_2d), rounded(plan.pixel_spacing), tuple(int(v) for v in plan.size),
            round(plan.slice_position(cursor), 4), float(plan.slice_step),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the sampled image."""
        return int(self.size[1]), int(self.size[0])

    def cache_index(self) -> int:
        """A stable integer naming this plane (the embedding cache's slice index)."""
        text = repr((self.right, self.down, self.origin_2d, self.pixel_spacing, self.size, self.position))
        return int.from_bytes(hashlib.sha1(text.encode()).digest()[:6], "big")

    def pixel_to_lps(self, columns, rows) -> np.ndarray:
        columns, rows = np.asarray(columns, float), np.asarray(rows, float)
        x = self.origin_2d[0] + columns * self.pixel_spacing[0]
        y = self.origin_2d[1] + rows * self.pixel_spacing[1]
        return (x[..., None] * np.asarray(self.right) + y[..., None] * np.asarray(self.down)
                + self.position * np.asarray(self.normal))

    def lps_to_pixel(self, point) -> tuple[float, float]:
        point = np.asarray(point, float)
        x, y = float(point @ np.asarray(self.right)), float(point @ np.asarray(self.down))
        return (x - self.origin_2d[0]) / self.pixel_spacing[0], (y - self.origin_2d[1]) / self.pixel_spacing[1]


def _lps_to_index(geometry, points: np.ndarray) -> np.ndarray:
    """Continuous (i, j, k) of LPS points (..., 3)."""
    direction = np.asarray(geometry.direction_matrix, float)
    local = (points - np.asarray(geometry.origin, float)) @ direction
    return local / np.asarray(geometry.spacing, float)


def sample_plane(array: np.ndarray, geometry, plane: ObliquePlane, control=None) -> np.ndarray:
    """The plane as a (rows, columns) float32 image, trilinear; outside the volume: its minimum."""
    from scipy import ndimage

    rows, columns = plane.shape
    image = np.empty((rows, columns), np.float32)
    fill = float(np.min(array))
    column_index = np.arange(columns)
    chunk = max(1, 262_144 // max(columns, 1))  # rows per step: progress and cancel stay responsive
    for first in range(0, rows, chunk):
        if control is not None:
            control.check()
        row_index = np.arange(first, min(rows, first + chunk))
        grid_columns, grid_rows = np.meshgrid(column_index, row_index)
        ijk = _lps_to_index(geometry, plane.pixel_to_lps(grid_columns, grid_rows))
        coordinates = np.stack([ijk[..., 2], ijk[..., 1], ijk[..., 0]])  # array order (k, j, i)
        image[row_index] = ndimage.map_coordinates(array, coordinates, order=1, mode="constant", cval=fill)
    return image


def plane_mask_to_volume(mask2d: np.ndarray, plane: ObliquePlane, geometry, shape) -> tuple[np.ndarray, Box] | None:
    """Voxels whose centre lies within half a slice of the plane and projects onto a true pixel
    of ``mask2d``, as (mask cropped to its box, box); None when no voxel qualifies."""
    mask2d = np.asarray(mask2d, bool)
    if mask2d.shape != plane.shape:
        raise ValueError(f"the mask is {mask2d.shape}, the plane samples {plane.shape}")
    rows, columns = np.nonzero(mask2d)
    if rows.size == 0:
        return None
    # Voxel-index bounding box of the mask's pixel corners, one voxel of slack.
    corner_columns = np.array([columns.min() - 0.5, columns.max() + 0.5])
    corner_rows = np.array([rows.min() - 0.5, rows.max() + 0.5])
    grid_c, grid_r = np.meshgrid(corner_columns, corner_rows)
    centre = plane.pixel_to_lps(grid_c, grid_r).reshape(-1, 3)
    half = plane.thickness / 2.0
    normal = np.asarray(plane.normal)
    corners = np.concatenate([centre - half * normal, centre + half * normal])
    ijk = _lps_to_index(geometry, corners)
    low = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - 1, 0)
    high = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.asarray(shape[::-1]) - 1)  # (i, j, k)
    if np.any(high < low):
        return None
    i = np.arange(low[0], high[0] + 1)
    j = np.arange(low[1], high[1] + 1)
    out = np.zeros((high[2] - low[2] + 1, j.size, i.size), bool)
    direction = np.asarray(geometry.direction_matrix, float)
    spacing = np.asarray(geometry.spacing, float)
    origin = np.asarray(geometry.origin, float)
    jj, ii = np.meshgrid(j, i, indexing="ij")
    right, down = np.asarray(plane.right), np.asarray(plane.down)
    for slot, k in enumerate(range(low[2], high[2] + 1)):  # one k plane at a time: bounded memory
        index = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(float)
        lps = (index * spacing) @ direction.T + origin
        near = np.abs(lps @ normal - plane.position) <= half + 1e-6
        c = np.rint((lps @ right - plane.origin_2d[0]) / plane.pixel_spacing[0]).astype(int)
        r = np.rint((lps @ down - plane.origin_2d[1]) / plane.pixel_spacing[1]).astype(int)
        inside = near & (c >= 0) & (c < mask2d.shape[1]) & (r >= 0) & (r < mask2d.shape[0])
        hit = np.zeros_like(inside)
        hit[inside] = mask2d[r[inside], c[inside]]
        out[slot] = hit
    tight = Box.from_mask(out)
    if tight is None:
        return None
    start = (int(low[2]), int(low[1]), int(low[0]))  # (z, y, x) of out[0, 0, 0]
    box = Box(tuple(a + b for a, b in zip(start, tight.start)), tuple(a + b for a, b in zip(start, tight.stop)))
    return out[tight.slices], box


__all__ = ["ObliquePlane", "plane_mask_to_volume", "sample_plane"]
