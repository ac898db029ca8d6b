"""Paint and erase with a circle (on a slice) or a sphere, sized in millimetres.

A drag paints the swept shape between successive mouse positions (a capsule), so fast
drags leave no gaps, and the whole drag is one undo step. The GUI forwards events:
``press(point, plane)`` on mouse down, ``move(point)`` while dragging, ``release()`` on
mouse up; ``wheel(steps)`` / ``grow()`` / ``shrink()`` resize the brush.

On an oblique volume the views show planes that cut through the array's slices, so the
circle brush paints the voxels of the plane actually shown (see :func:`plane_disc_footprint`),
matching the physical circle drawn under the cursor. The sphere needs no such care: the
direction matrix is orthonormal, so index offsets scaled by the spacing are already
physical distances.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from medviewer.model.editing import LabelCommand, SegmentEditor
from medviewer.model.events import Box
from medviewer.model.provenance import SlicePlane
from medviewer.tools.base import array_axes_lps, clip_box, is_oblique_plane, physical_to_zyx, spacing_zyx

#: Each wheel step or shortcut press scales the radius by this factor.
RADIUS_STEP = 1.2


class BrushShape(StrEnum):
    CIRCLE = "circle"  # a disc on the slice being viewed
    SPHERE = "sphere"  # a ball through neighbouring slices


def brush_footprint(
    geometry,
    start_zyx,
    end_zyx,
    radius_mm: float,
    plane: SlicePlane | None = None,
) -> tuple[Box, np.ndarray] | None:
    """Voxels within ``radius_mm`` of the segment start->end (continuous z, y, x indices).

    With ``plane`` the shape is a disc swept on that slice only; without, a ball. Distances
    are physical, so a 5 mm brush is round on a 0.7 x 0.7 x 5 mm grid. The voxel under the
    start point is always included, so a tiny brush still paints something. A physical
    plane that no array slice matches (an oblique reslice) goes to
    :func:`plane_disc_footprint`; array slices keep this cheaper slice-by-index path.
    """
    if is_oblique_plane(geometry, plane):
        return plane_disc_footprint(geometry, start_zyx, end_zyx, radius_mm, plane)
    spacing = spacing_zyx(geometry)
    p0 = np.asarray(start_zyx, dtype=float).copy()
    p1 = np.asarray(end_zyx, dtype=float).copy()
    reach = float(radius_mm) / spacing
    low = np.floor(np.minimum(p0, p1) - reach).astype(int)
    high = np.ceil(np.maximum(p0, p1) + reach).astype(int) + 1
    if plane is not None:
        p0[plane.axis] = p1[plane.axis] = plane.index
        low[plane.axis], high[plane.axis] = plane.index, plane.index + 1
    box = clip_box(Box(tuple(low), tuple(high)), geometry.shape)  # type: ignore[arg-type]
    if box is None:
        return None
    grids = np.ogrid[box.slices]
    a, b = p0 * spacing, p1 * spacing
    along = b - a
    length2 = float(along @ along)
    offsets = [g * s - a_ for g, s, a_ in zip(grids, spacing, a)]
    if length2 > 0:
        t = sum(o * d for o, d in zip(offsets, along)) / length2
        t = np.clip(t, 0.0, 1.0)
        distance2 = sum((o - t * d) ** 2 for o, d in zip(offsets, along))
    else:
        distance2 = sum(o**2 for o in offsets)
    mask = np.broadcast_to(distance2 <= float(radius_mm) ** 2 + 1e-9, box.shape).copy()
    centre = tuple(int(np.rint(v)) - s for v, s in zip(p0, box.start))
    if all(0 <= c < n for c, n in zip(centre, box.shape)):
        mask[centre] = True
    return box, mask


def _in_plane_basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane orthogonal to ``normal``."""
    helper = np.zeros(3)
    helper[int(np.argmin(np.abs(normal)))] = 1.0
    first = np.cross(normal, helper)
    first /= np.linalg.norm(first)
    return first, np.cross(normal, first)


def plane_disc_footprint(
    geometry,
    start_zyx,
    end_zyx,
    radius_mm: float,
    plane: SlicePlane,
) -> tuple[Box, np.ndarray] | None:
    """The circle brush swept start->end on a physical plane (``plane.origin``/``normal``, LPS mm).

    A voxel is painted when its centre lies within ``radius_mm`` of the swept segment,
    measured in the plane, and within half the voxel's extent along the normal from the
    plane (``|d| <= sum_a |n . axis_a| * spacing_a / 2``). That is exactly the voxels whose
    cells the plane cuts, so a drag covers the shown plane without holes; for an array slice
    through voxel centres it is that one slice. The segment's ends are projected onto the plane.
    """
    spacing = spacing_zyx(geometry)
    axes = array_axes_lps(geometry)
    normal = np.asarray(plane.normal, dtype=float)
    origin = np.asarray(plane.origin, dtype=float)
    radius = float(radius_mm)
    cosines = axes.T @ normal  # per array axis (z, y, x)
    half_thickness = 0.5 * float(np.sum(np.abs(cosines) * spacing))

    def onto_plane(zyx) -> np.ndarray:
        point = geometry.index_to_physical(np.asarray(zyx, dtype=float)[::-1])
        return point - float((point - origin) @ normal) * normal

    a, b = onto_plane(start_zyx), onto_plane(end_zyx)
    a_zyx = np.asarray(geometry.physical_to_index(a), dtype=float)[::-1]
    b_zyx = np.asarray(geometry.physical_to_index(b), dtype=float)[::-1]
    # Extent of a disc of the radius, thickened by the slab, along each array axis.
    reach = (radius * np.sqrt(np.clip(1.0 - cosines**2, 0.0, 1.0)) + half_thickness * np.abs(cosines)) / spacing
    low = np.floor(np.minimum(a_zyx, b_zyx) - reach - 1e-9).astype(int)
    high = np.ceil(np.maximum(a_zyx, b_zyx) + reach + 1e-9).astype(int) + 1
    box = clip_box(Box(tuple(low), tuple(high)), geometry.shape)  # type: ignore[arg-type]
    if box is None:
        return None

    first, second = _in_plane_basis(normal)
    # Every coordinate below is linear in the box-local voxel index: value at box.start plus
    # one step per array axis. Rows: distance from the plane, in-plane u, in-plane v.
    frame = np.stack([normal, first, second])
    start_point = geometry.index_to_physical(np.asarray(box.start, dtype=float)[::-1])
    base = frame @ (start_point - a)
    steps = frame @ (axes * spacing)  # (3 coordinates, 3 array axes)
    along_u, along_v = float(first @ (b - a)), float(second @ (b - a))
    length2 = along_u**2 + along_v**2

    # Walk the axis closest to the normal column by column: the slab holds only an interval
    # of one or two voxels of each column, so the cost is that of a 2D disc, not a 3D box.
    deep = int(np.argmax(np.abs(cosines)))
    across = [axis for axis in range(3) if axis != deep]
    grids = [np.arange(box.shape[axis], dtype=float) for axis in across]
    g1, g2 = grids[0][:, None], grids[1][None, :]

    def at(row: int, depth):
        return base[row] + steps[row, deep] * depth + steps[row, across[0]] * g1 + steps[row, across[1]] * g2

    # Depths of each column inside the slab |distance| <= half_thickness.
    rest = at(0, 0.0)
    slope = float(steps[0, deep])
    ends = ((-half_thickness - 1e-9 - rest) / slope, (half_thickness + 1e-9 - rest) / slope)
    if slope < 0:
        ends = ends[::-1]
    lowest = np.maximum(np.ceil(ends[0]), 0.0)
    highest = np.minimum(np.floor(ends[1]), box.shape[deep] - 1.0)
    mask = np.zeros(box.shape, dtype=bool)
    layers = int(max(0.0, float(np.max(highest - lowest)) + 1.0))
    for layer in range(layers):
        depth = lowest + layer
        u, v = at(1, depth), at(2, depth)
        if length2 > 0:
            t = np.clip((u * along_u + v * along_v) / length2, 0.0, 1.0)
            distance2 = (u - t * along_u) ** 2 + (v - t * along_v) ** 2
        else:
            distance2 = u**2 + v**2
        rows, columns = np.nonzero((depth <= highest) & (distance2 <= radius**2 + 1e-9))
        index = [rows, columns]
        index.insert(deep, depth[rows, columns].astype(int))
        mask[tuple(index)] = True
    centre = tuple(int(np.rint(value)) - s for value, s in zip(a_zyx, box.start))
    if all(0 <= c < n for c, n in zip(centre, box.shape)):
        mask[centre] = True
    return box, mask


class BrushTool:
    """Paint (or erase) the active segment with a circle or sphere brush."""

    name = "brush"

    def __init__(
        self,
        editor: SegmentEditor,
        radius_mm: float = 5.0,
        shape: BrushShape | str = BrushShape.CIRCLE,
        erase: bool = False,
        min_radius_mm: float | None = None,
        max_radius_mm: float = 250.0,
    ):
        self.editor = editor
        self.shape = BrushShape(shape)
        self.erase = bool(erase)
        self.min_radius_mm = float(min_radius_mm if min_radius_mm is not None else min(editor.geometry.spacing) / 2)
        self.max_radius_mm = float(max_radius_mm)
        self._radius_mm = 0.0
        self.radius_mm = radius_mm
        self._plane: SlicePlane | None = None
        self._last: np.ndarray | None = None

    # -- size ------------------------------------------------------------------------------------
    @property
    def radius_mm(self) -> float:
        return self._radius_mm

    @radius_mm.setter
    def radius_mm(self, value: float) -> None:
        self._radius_mm = float(np.clip(float(value), self.min_radius_mm, self.max_radius_mm))

    def wheel(self, steps: float) -> float:
        """Resize by mouse-wheel steps (positive grows); returns the new radius."""
        self.radius_mm = self._radius_mm * RADIUS_STEP ** float(steps)
        return self._radius_mm

    def grow(self) -> float:
        return self.wheel(1)

    def shrink(self) -> float:
        return self.wheel(-1)

    # -- events ------------------------------------------------------------------------------------
    def footprint(self, point_lps, plane: SlicePlane | None = None) -> tuple[Box, np.ndarray] | None:
        """The voxels one dab at ``point_lps`` would cover (for drawing the cursor outline)."""
        zyx = physical_to_zyx(self.editor.geometry, point_lps)
        return brush_footprint(self.editor.geometry, zyx, zyx, self._radius_mm, self._dab_plane(plane))

    def press(self, point_lps, plane: SlicePlane | None = None) -> int:
        """Mouse down: start one undo step and paint the first dab. Returns voxels changed."""
        if self.shape == BrushShape.CIRCLE and plane is None:
            raise ValueError("a circle brush paints on a slice: pass the view's SlicePlane")
        self._plane = plane
        parameters = {
            "radius_mm": self._radius_mm,
            "shape": str(self.shape),
            "erase": self.erase,
            "plane": None if plane is None else plane.as_dict(),
        }
        self.editor.begin_stroke(tool="erase" if self.erase else "brush", parameters=parameters, erase=self.erase)
        self._last = physical_to_zyx(self.editor.geometry, point_lps)
        return self._paint(self._last, self._last)

    def move(self, point_lps) -> int:
        """Mouse drag: paint the swept brush from the previous position to this one."""
        if self._last is None:
            return 0
        current = physical_to_zyx(self.editor.geometry, point_lps)
        changed = self._paint(self._last, current)
        self._last = current
        return changed

    def release(self) -> LabelCommand | None:
        """Mouse up: the drag becomes one undo step (None if it changed nothing)."""
        self._last = None
        return self.editor.end_stroke()

    def cancel(self) -> None:
        """Escape during a drag: undo what the drag painted, record nothing."""
        self._last = None
        self.editor.cancel_stroke()

    # -- internals -----------------------------------------------------------------------------------
    def _dab_plane(self, plane: SlicePlane | None) -> SlicePlane | None:
        return plane if self.shape == BrushShape.CIRCLE else None

    def _paint(self, start, end) -> int:
        found = brush_footprint(self.editor.geometry, start, end, self._radius_mm, self._dab_plane(self._plane))
        if found is None:
            return 0
        box, mask = found
        return self.editor.stroke_apply(mask, box)
