"""Paint and erase with a circle (on a slice) or a sphere, sized in millimetres.

A drag paints the swept shape between successive mouse positions (a capsule), so fast
drags leave no gaps, and the whole drag is one undo step. The GUI forwards events:
``press(point, plane)`` on mouse down, ``move(point)`` while dragging, ``release()`` on
mouse up; ``wheel(steps)`` / ``grow()`` / ``shrink()`` resize the brush.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from medviewer.model.editing import LabelCommand, SegmentEditor
from medviewer.model.events import Box
from medviewer.model.provenance import SlicePlane
from medviewer.tools.base import clip_box, physical_to_zyx, spacing_zyx

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
    start point is always included, so a tiny brush still paints something.
    """
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
            "plane": None if plane is None else {"axis": "zyx"[plane.axis], "index": plane.index},
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
