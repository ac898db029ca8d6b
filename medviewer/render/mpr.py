"""Geometry of the patient-axis slice views (axial, coronal, sagittal) through a volume.

Pure numpy: no Qt, no VTK, so all the orientation and sampling rules are tested headlessly.

Every 2D view shows a plane through the shared cursor point (LPS, mm). Its screen axes are
fixed patient directions (the radiological convention of Slicer and ITK-SNAP):

=========  ===================  ==================
view       screen right         screen down
=========  ===================  ==================
axial      L  (patient R left)  P  (A on top)
coronal    L  (patient R left)  I  (S on top)
sagittal   P  (A on the left)   I  (S on top)
=========  ===================  ==================

so oblique acquisitions are resliced into true anatomical planes. The plane's 2D
coordinates are ``x = right . p`` and ``y = down . p`` (mm); the slice coordinate is
``s = normal . p`` along the scroll direction. For volumes whose axes are aligned with the
patient axes, the sampling grid lands exactly on voxel centres, so nothing is interpolated
and a wheel notch moves exactly one slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from medviewer.model.events import Box
from medviewer.model.geometry import Geometry
from medviewer.render.orientation import OrientationLetters, nearest_anatomical_letter

#: Slack when comparing positions on the slice lattice (mm).
POSITION_EPSILON = 1e-6

_POSITIVE_LETTERS = ("L", "P", "S")


class ViewOrientation(str, Enum):
    """The three patient-axis slice views."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"

    @property
    def title(self) -> str:
        return self.value.capitalize()


#: (screen right, screen down) as LPS unit vectors for each view.
SCREEN_AXES: dict[ViewOrientation, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    ViewOrientation.AXIAL: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    ViewOrientation.CORONAL: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    ViewOrientation.SAGITTAL: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}

#: The patient axis (0 = L, 1 = P, 2 = S) each view's slices move along.
PATIENT_AXIS: dict[ViewOrientation, int] = {
    ViewOrientation.AXIAL: 2,
    ViewOrientation.CORONAL: 1,
    ViewOrientation.SAGITTAL: 0,
}


def aligned_direction(geometry: Geometry) -> np.ndarray | None:
    """The direction matrix rounded to a signed permutation, or None when truly oblique.

    Directions within the geometry's obliqueness tolerance of a patient axis are treated as
    exactly aligned, so tiny rounding in a file header does not turn every slice into an
    interpolated one.
    """
    if geometry.is_oblique():
        return None
    matrix = geometry.direction_matrix
    rounded = np.zeros((3, 3))
    for column in range(3):
        row = int(np.argmax(np.abs(matrix[:, column])))
        rounded[row, column] = 1.0 if matrix[row, column] > 0 else -1.0
    return rounded


def _corner_indices(shape_zyx) -> np.ndarray:
    nz, ny, nx = shape_zyx
    return np.array([(i, j, k) for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)], dtype=float)


@dataclass(frozen=True)
class SliceGeometry:
    """How one patient-axis view samples one volume.

    ``pixel_spacing`` and ``origin_2d`` define the 2D sampling grid of the view (mm, in
    plane coordinates); ``size`` is its number of pixels (columns, rows). Slices sit at
    ``slice_first + m * slice_step`` for ``m`` in ``range(slice_count)``.
    """

    orientation: ViewOrientation
    geometry: Geometry
    direction: np.ndarray  # the (possibly snapped) direction matrix used for sampling
    right: np.ndarray
    down: np.ndarray
    normal: np.ndarray  # scroll direction: towards increasing index of the closest volume axis
    pixel_spacing: tuple[float, float]
    origin_2d: tuple[float, float]
    size: tuple[int, int]
    slice_first: float
    slice_step: float
    slice_count: int
    axis_aligned: bool

    @classmethod
    def for_volume(cls, geometry: Geometry, orientation: ViewOrientation | str) -> SliceGeometry:
        orientation = ViewOrientation(orientation)
        right, down = (np.asarray(v, dtype=float) for v in SCREEN_AXES[orientation])
        snapped = aligned_direction(geometry)
        direction = snapped if snapped is not None else geometry.direction_matrix
        spacing = np.asarray(geometry.spacing, dtype=float)
        origin = np.asarray(geometry.origin, dtype=float)
        counts = np.asarray(geometry.size_xyz)

        # Scroll direction: along the plane normal, signed so that it follows the index
        # axis closest to it (a standard axial CT scrolls k -> k + 1).
        normal = np.cross(right, down)
        along_axes = direction.T @ normal
        closest = int(np.argmax(np.abs(along_axes)))
        if along_axes[closest] < 0:
            normal = -normal
        # Step: the voxel spacing seen along the normal (exactly the slice spacing when aligned).
        step = float(np.sum(np.abs(direction.T @ normal) * spacing))

        centres = _corner_indices(geometry.shape) * spacing @ direction.T + origin
        if snapped is not None:
            def axis_of(vector):
                axis = int(np.argmax(np.abs(direction.T @ vector)))
                return axis

            x_axis, y_axis = axis_of(right), axis_of(down)
            pixel = (float(spacing[x_axis]), float(spacing[y_axis]))
            size = (int(counts[x_axis]), int(counts[y_axis]))
            count = int(counts[closest])
        else:
            smallest = float(spacing.min())
            pixel = (smallest, smallest)
            x_extent = float(np.ptp(centres @ right))
            y_extent = float(np.ptp(centres @ down))
            size = (int(math.ceil(x_extent / smallest - 1e-6)) + 1, int(math.ceil(y_extent / smallest - 1e-6)) + 1)
            count = int(math.floor(float(np.ptp(centres @ normal)) / step + 1e-6)) + 1
        return cls(
            orientation=orientation,
            geometry=geometry,
            direction=direction,
            right=right,
            down=down,
            normal=normal,
            pixel_spacing=pixel,
            origin_2d=(float((centres @ right).min()), float((centres @ down).min())),
            size=size,
            slice_first=float((centres @ normal).min()),
            slice_step=step,
            slice_count=max(count, 1),
            axis_aligned=snapped is not None,
        )

    # -- slice lattice ---------------------------------------------------------------------
    @property
    def slice_last(self) -> float:
        return self.slice_first + (self.slice_count - 1) * self.slice_step

    def slice_position(self, point) -> float:
        """Slice coordinate ``s`` of an LPS point (mm along the scroll direction)."""
        return float(np.dot(self.normal, np.asarray(point, dtype=float)))

    def slice_index(self, position: float) -> int:
        """Nearest slice number (0-based, clamped) for slice coordinate ``position``."""
        index = int(math.floor((position - self.slice_first) / self.slice_step + 0.5))
        return int(np.clip(index, 0, self.slice_count - 1))

    def position_of_index(self, index: int) -> float:
        index = int(np.clip(index, 0, self.slice_count - 1))
        return self.slice_first + index * self.slice_step

    def move_to_slice(self, point, index: int) -> np.ndarray:
        """``point`` moved along the normal onto slice ``index`` (clamped to the volume)."""
        point = np.asarray(point, dtype=float)
        return point + (self.position_of_index(index) - self.slice_position(point)) * self.normal

    def step_point(self, point, delta: int) -> np.ndarray:
        """``point`` moved ``delta`` slices along the normal, landing on the slice lattice."""
        return self.move_to_slice(point, self.slice_index(self.slice_position(point)) + int(delta))

    def position_text(self, point) -> str:
        """Patient coordinate of the plane, e.g. 'S -12.50 mm' (LPS sign, like the readout)."""
        axis = PATIENT_AXIS[self.orientation]
        value = float(np.asarray(point, dtype=float)[axis])
        if abs(value) < 0.005:
            value = 0.0
        return f"{_POSITIVE_LETTERS[axis]} {value:.2f} mm"

    # -- in-plane coordinates ----------------------------------------------------------------
    def plane_coordinates(self, point) -> tuple[float, float]:
        point = np.asarray(point, dtype=float)
        return float(np.dot(self.right, point)), float(np.dot(self.down, point))

    def point_on_plane(self, x: float, y: float, slice_position: float) -> np.ndarray:
        return x * self.right + y * self.down + slice_position * self.normal

    def image_bounds(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max) of the sampled image including its pixel borders."""
        (x0, y0), (sx, sy), (nx, ny) = self.origin_2d, self.pixel_spacing, self.size
        return (x0 - sx / 2.0, x0 + (nx - 0.5) * sx, y0 - sy / 2.0, y0 + (ny - 0.5) * sy)

    def reslice_matrix(self, slice_position: float) -> np.ndarray:
        """4x4 matrix from output coordinates (x, y, z) to the input's scaled index space.

        The input image is handed to VTK without origin and direction (origin 0, the volume's
        spacing), i.e. in ``spacing * (i, j, k)`` coordinates; the direction and origin are
        folded into this matrix so every VTK version reslices oblique data identically.
        """
        to_local = self.direction.T
        origin = np.asarray(self.geometry.origin, dtype=float)
        matrix = np.eye(4)
        matrix[:3, 0] = to_local @ self.right
        matrix[:3, 1] = to_local @ self.down
        matrix[:3, 2] = to_local @ self.normal
        matrix[:3, 3] = to_local @ (slice_position * self.normal - origin)
        return matrix

    def sample_index(self, x: float, y: float, slice_position: float) -> np.ndarray:
        """Continuous voxel index (i, j, k) sampled at plane point (x, y) of slice ``s``."""
        point = self.point_on_plane(x, y, slice_position)
        local = (point - np.asarray(self.geometry.origin)) @ self.direction
        return local / np.asarray(self.geometry.spacing)

    def box_touches_slice(self, box: Box, slice_position: float) -> bool:
        """Whether the plane at ``slice_position`` passes through any voxel cell of ``box``.

        Conservative for oblique volumes (uses the box's projected extent), exact when the
        volume is aligned: edits on other slices then cost no re-render at all.
        """
        if box.is_empty:
            return False
        (z0, y0, x0), (z1, y1, x1) = box.start, box.stop
        corners = np.array(
            [(i, j, k) for i in (x0 - 0.5, x1 - 0.5) for j in (y0 - 0.5, y1 - 0.5) for k in (z0 - 0.5, z1 - 0.5)]
        )
        spacing = np.asarray(self.geometry.spacing)
        points = corners * spacing @ self.direction.T + np.asarray(self.geometry.origin)
        along = points @ self.normal
        return bool(along.min() - POSITION_EPSILON <= slice_position <= along.max() + POSITION_EPSILON)

    def letters(self) -> OrientationLetters:
        return OrientationLetters(
            left=nearest_anatomical_letter(-self.right),
            right=nearest_anatomical_letter(self.right),
            top=nearest_anatomical_letter(-self.down),
            bottom=nearest_anatomical_letter(self.down),
        )


# -- the shared cursor ------------------------------------------------------------------------
def volume_centre(geometry: Geometry) -> np.ndarray:
    """LPS position of the centre voxel (integer index, so aligned views show whole slices)."""
    nx, ny, nz = geometry.size_xyz
    return geometry.index_to_physical((nx // 2, ny // 2, nz // 2))


def snap_cursor(geometry: Geometry, point) -> np.ndarray:
    """Keep the cursor inside the volume; on aligned volumes put it on a voxel centre.

    Oblique volumes keep the exact point: their views sample at arbitrary positions anyway,
    and rounding would move the crosshair away from where the user clicked.
    """
    index = geometry.physical_to_index(np.asarray(point, dtype=float))
    upper = np.asarray(geometry.size_xyz, dtype=float) - 1.0
    index = np.clip(index, 0.0, upper)
    if aligned_direction(geometry) is not None:
        index = np.rint(index)
    return geometry.index_to_physical(index)


def contains_point(geometry: Geometry, point, margin: float = 0.5) -> bool:
    """Whether an LPS point lies inside the volume's voxel cells (plus ``margin`` voxels)."""
    index = geometry.physical_to_index(np.asarray(point, dtype=float))
    upper = np.asarray(geometry.size_xyz, dtype=float) - 1.0 + margin
    return bool(np.all(index >= -margin) and np.all(index <= upper))
