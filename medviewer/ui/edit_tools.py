"""Slice-view interaction tools for manual editing: brush / erase and click-to-pick tools.

They are :class:`~medviewer.ui.view_tools.ViewTool` objects: a :class:`SliceView` offers
them every gesture first. Only the left button is consumed, so right / middle drags and
the plain wheel keep zooming, panning and scrolling; Ctrl+wheel resizes the brush.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Qt

from medviewer.model.editing import EditRefused
from medviewer.model.provenance import SlicePlane
from medviewer.tools.base import physical_to_zyx
from medviewer.ui.view_tools import ToolEvent, ToolEventKind, ViewTool

log = logging.getLogger(__name__)


def view_plane(view, point_lps) -> SlicePlane | None:
    """The slice a view shows at ``point_lps``: the nearest array slice (axis of z, y, x +
    index), and on an oblique volume also the shown plane itself (origin, normal in LPS),
    which the circle brush paints exactly."""
    volume = view.volume
    plan = view.slice_renderer.plan
    if volume is None or plan is None or point_lps is None:
        return None
    geometry = volume.geometry
    direction = np.asarray(geometry.direction_matrix, dtype=float)
    ijk_axis = int(np.argmax(np.abs(direction.T @ np.asarray(plan.normal, dtype=float))))
    axis = 2 - ijk_axis
    index = int(np.rint(physical_to_zyx(geometry, point_lps)[axis]))
    if plan.axis_aligned:
        if not 0 <= index < volume.shape[axis]:
            return None
        return SlicePlane(axis, index)
    # A resliced plane may cut the volume where the nearest array slice lies just outside.
    index = int(np.clip(index, 0, volume.shape[axis] - 1))
    normal = np.asarray(plan.normal, dtype=float)
    point = np.asarray(point_lps, dtype=float)
    origin = point + (view.slice_renderer.slice_position - float(normal @ point)) * normal  # on the shown plane
    return SlicePlane(axis, index, tuple(float(v) for v in origin), tuple(float(v) for v in normal))


class BrushCursor:
    """The brush outline (a circle of the brush radius) drawn in one slice view."""

    SEGMENTS = 48

    def __init__(self, view):
        from vtkmodules.vtkCommonCore import vtkPoints
        from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        self.view = view
        self.points = vtkPoints()
        self.points.SetNumberOfPoints(self.SEGMENTS)
        lines = vtkCellArray()
        lines.InsertNextCell(self.SEGMENTS + 1, [*range(self.SEGMENTS), 0])
        self.data = vtkPolyData()
        self.data.SetPoints(self.points)
        self.data.SetLines(lines)
        mapper = vtkPolyDataMapper()
        mapper.SetInputData(self.data)
        self.actor = vtkActor()
        self.actor.SetMapper(mapper)
        self.actor.GetProperty().SetColor(1.0, 1.0, 0.3)
        self.actor.GetProperty().LightingOff()
        self.actor.PickableOff()
        self.actor.VisibilityOff()
        view.slice_renderer.renderer.AddActor(self.actor)
        self.visible = False

    def show(self, point_lps, radius_mm: float) -> None:
        plan = self.view.slice_renderer.plan
        if plan is None or point_lps is None:
            self.hide()
            return
        x, y = plan.plane_coordinates(point_lps)
        angles = np.linspace(0.0, 2 * np.pi, self.SEGMENTS, endpoint=False)
        for index, angle in enumerate(angles):
            self.points.SetPoint(index, x + radius_mm * np.cos(angle), y + radius_mm * np.sin(angle), -1.5)
        self.points.Modified()
        self.data.Modified()
        self.actor.VisibilityOn()
        self.visible = True
        self.view.request_render()

    def hide(self) -> None:
        if self.visible:
            self.actor.VisibilityOff()
            self.visible = False
            self.view.request_render()

    def release(self) -> None:
        self.view.slice_renderer.renderer.RemoveActor(self.actor)
        self.view = None


class BrushViewTool(ViewTool):
    """Left-drag paints (or erases) with the controller's :class:`BrushTool`; one drag = one undo step."""

    hint = "Left-drag to paint; [ / ] or Ctrl+wheel change the brush size; right/middle drag zoom and pan"

    def __init__(self, controller):
        self.controller = controller
        self.painting = False
        self.cursors: dict[int, BrushCursor] = {}

    def show_cursor(self, view, point_lps) -> None:
        """Draw the brush outline under the pointer in ``view`` (hidden in the others)."""
        for key, cursor in self.cursors.items():
            if key != id(view):
                cursor.hide()
        brush = self.brush
        if brush is None or point_lps is None:
            cursor = self.cursors.get(id(view))
            if cursor is not None:
                cursor.hide()
            return
        cursor = self.cursors.get(id(view))
        if cursor is None:
            cursor = self.cursors[id(view)] = BrushCursor(view)
        cursor.show(point_lps, brush.radius_mm)

    def hide_cursors(self) -> None:
        for cursor in self.cursors.values():
            cursor.hide()

    def release(self) -> None:
        """Remove the outlines from the views (before they shut down)."""
        for cursor in self.cursors.values():
            cursor.release()
        self.cursors.clear()

    @property
    def brush(self):
        return self.controller.brush

    def handle(self, event: ToolEvent) -> bool:
        kind = event.kind
        if kind is ToolEventKind.KEY:
            if event.key == Qt.Key.Key_BracketRight:
                self.controller.grow_brush()
                return True
            if event.key == Qt.Key.Key_BracketLeft:
                self.controller.shrink_brush()
                return True
            if event.key == Qt.Key.Key_Escape and self.painting:
                self.painting = False
                self.brush.cancel()
                return True
            return False
        if kind is ToolEventKind.WHEEL:
            if event.control and event.wheel_steps:
                self.controller.resize_brush(event.wheel_steps)
                return True
            return False
        if kind is ToolEventKind.PRESS:
            if event.button != Qt.MouseButton.LeftButton or event.point_lps is None:
                return False
            brush = self.brush
            if brush is None:
                return False
            plane = view_plane(event.view, event.point_lps)
            if plane is None:
                return True
            self.controller.sync_policy()
            try:
                brush.press(event.point_lps, plane)
            except EditRefused as exc:
                self.controller.refused(str(exc))
                return True
            self.painting = True
            return True
        if kind is ToolEventKind.MOVE:
            try:
                self.show_cursor(event.view, event.point_lps)
            except Exception:  # noqa: BLE001 - the outline is cosmetic
                log.debug("brush outline failed", exc_info=True)
            if not self.painting:
                return False
            if event.point_lps is not None:
                self.brush.move(event.point_lps)
            return True
        if kind is ToolEventKind.RELEASE:
            if not self.painting or event.button != Qt.MouseButton.LeftButton:
                return self.painting
            self.painting = False
            self.brush.release()
            return True
        return False

    def deactivate(self) -> None:
        self.hide_cursors()
        if self.painting:
            self.painting = False
            self.brush.release()


class PickViewTool(ViewTool):
    """A left click calls ``on_pick(point_lps, plane)`` (flood fill, island selection)."""

    hint = "Click in a view"

    def __init__(self, on_pick: Callable[[np.ndarray, SlicePlane | None], object], hint: str = ""):
        #: Returns False to leave the click to the view (e.g. nothing to pick in this mode).
        self.on_pick = on_pick
        self._consumed_press = False
        if hint:
            self.hint = hint

    def handle(self, event: ToolEvent) -> bool:
        if event.kind is ToolEventKind.PRESS and event.button == Qt.MouseButton.LeftButton:
            if event.point_lps is None:
                return True
            consumed = self.on_pick(np.asarray(event.point_lps, dtype=float), view_plane(event.view, event.point_lps))
            self._consumed_press = consumed is not False
            return self._consumed_press
        if event.kind is ToolEventKind.RELEASE and event.button == Qt.MouseButton.LeftButton:
            consumed, self._consumed_press = self._consumed_press, False
            return consumed
        return False
