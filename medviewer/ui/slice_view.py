"""The axial slice view widget: hosts a SliceRenderer and turns gestures into calls.

Mouse and keys (Slicer / ITK-SNAP conventions):
  wheel, Up/Down, Page Up/Page Down   next / previous slice (Home, End: first, last)
  left drag                           window (horizontal) and level (vertical)
  middle drag or Shift + left drag    pan
  right drag                          zoom
  R                                   fit the image to the view again
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

from medviewer.model.events import Box
from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume
from medviewer.render.readout import CursorSample, format_slice_counter, sample_cursor
from medviewer.render.slice_renderer import SliceRenderer
from medviewer.render.window_level import WindowLevel, drag_window_level
from medviewer.ui import theme
from medviewer.ui.event_bridge import EventBridge

_NEXT_SLICE_KEYS = {"Up": 1, "Prior": 1, "Down": -1, "Next": -1}


class SliceView(QWidget):
    """Axial view of the active volume with its label overlay."""

    slice_changed = Signal(int)
    window_level_changed = Signal(float, float)  # centre, width
    cursor_moved = Signal(object)  # CursorSample, or None when the mouse left the image
    overlay_updated = Signal(object)  # the Box re-uploaded after a LabelMap.changed event

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.slice_renderer = SliceRenderer()
        self._bridges: list[EventBridge] = []
        self._drag: str | None = None
        self._drag_origin = (0, 0)
        self._drag_last = (0, 0)
        self._drag_start_window = WindowLevel(0.0, 1.0)
        self._mouse_display: tuple[int, int] | None = None
        self._fit_to_view = True
        self._shut_down = False

        self._header = self._build_header()
        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.vtk_widget.setCursor(Qt.CursorShape.CrossCursor)
        self.vtk_widget.setToolTip("")
        self.vtk_widget.installEventFilter(self)
        self.render_window = self.vtk_widget.GetRenderWindow()
        self.render_window.AddRenderer(self.slice_renderer.renderer)
        self.interactor = self.render_window.GetInteractor()
        self.interactor.SetInteractorStyle(None)  # every gesture is ours
        self._observer_tags: list[int] = []
        for event, handler in (
            ("MouseMoveEvent", self._on_mouse_move),
            ("LeftButtonPressEvent", self._on_left_press),
            ("LeftButtonReleaseEvent", self._on_release),
            ("MiddleButtonPressEvent", self._on_middle_press),
            ("MiddleButtonReleaseEvent", self._on_release),
            ("RightButtonPressEvent", self._on_right_press),
            ("RightButtonReleaseEvent", self._on_release),
            ("MouseWheelForwardEvent", lambda *_: self.step_slice(1)),
            ("MouseWheelBackwardEvent", lambda *_: self.step_slice(-1)),
            ("KeyPressEvent", self._on_key_press),
            ("LeaveEvent", self._on_leave),
        ):
            self._observer_tags.append(self.interactor.AddObserver(event, handler))

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._header)
        layout.addWidget(self.vtk_widget, 1)
        self.vtk_widget.Initialize()
        self._sync_header()

    def _build_header(self) -> QFrame:
        """Slicer-like view bar: colour tag, view name, slice slider and counter."""
        header = QFrame(self)
        header.setObjectName("sliceViewHeader")
        header.setStyleSheet(
            f"#sliceViewHeader {{ background: {theme.PANEL}; border-bottom: 2px solid {theme.AXIAL_MARKER}; }}"
        )
        row = QHBoxLayout(header)
        row.setContentsMargins(8, 3, 8, 3)
        row.setSpacing(8)
        tag = QLabel("Axial", header)
        tag.setStyleSheet(
            f"background: {theme.AXIAL_MARKER}; color: white; font-weight: 600; padding: 1px 8px; border-radius: 3px;"
        )
        tag.setToolTip("Axial view (index-space slices k of the volume)")
        self.slice_slider = QSlider(Qt.Orientation.Horizontal, header)
        self.slice_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slice_slider.valueChanged.connect(self.set_slice)
        row.addWidget(tag)
        row.addWidget(self.slice_slider, 1)
        return header

    # -- content -------------------------------------------------------------------------
    @property
    def volume(self) -> Volume | None:
        return self.slice_renderer.volume

    @property
    def slice_index(self) -> int:
        return self.slice_renderer.slice_index

    @property
    def num_slices(self) -> int:
        return self.slice_renderer.num_slices

    @property
    def window_level(self) -> WindowLevel:
        return self.slice_renderer.window

    def set_volume(self, volume: Volume | None, labelmap: LabelMap | None = None, segments: SegmentTable | None = None) -> None:
        """Show ``volume`` (middle slice, default window, fitted) and follow its labels."""
        self._detach_bridges()
        self.slice_renderer.set_volume(volume, labelmap, segments)
        if volume is not None:
            self._watch_labels(labelmap, segments)
            self.reset_view()
        self._sync_header()
        self.request_render()
        if volume is not None:
            self.slice_changed.emit(self.slice_index)
            self.window_level_changed.emit(self.window_level.center, self.window_level.width)
        self.cursor_moved.emit(None)

    def _watch_labels(self, labelmap: LabelMap | None, segments: SegmentTable | None) -> None:
        if labelmap is not None:
            self._bridges.append(EventBridge(labelmap.changed, self._on_labels_changed, self))
        if segments is not None:
            self._bridges.append(EventBridge(segments.changed, self._on_segments_changed, self))

    def _detach_bridges(self) -> None:
        for bridge in self._bridges:
            bridge.detach()
            bridge.deleteLater()
        self._bridges.clear()

    def _on_labels_changed(self, box: Box | None = None) -> None:
        box = box or (Box.full(self.volume.shape) if self.volume is not None else None)
        if self.slice_renderer.labels_changed(box):
            self.request_render()
            self.overlay_updated.emit(box)
            self._refresh_cursor()

    def _on_segments_changed(self, *_args) -> None:
        self.slice_renderer.segments_changed()
        self.request_render()
        self._refresh_cursor()

    def set_labels_visible(self, visible: bool) -> None:
        self.slice_renderer.set_labels_visible(visible)
        self.request_render()

    def set_label_opacity(self, alpha: float) -> None:
        self.slice_renderer.set_label_alpha(alpha)
        self.request_render()

    # -- slice / window ------------------------------------------------------------------
    def set_slice(self, index: int) -> None:
        if self.slice_renderer.set_slice(index):
            self._sync_header()
            self.request_render()
            self._refresh_cursor()
            self.slice_changed.emit(self.slice_index)

    def step_slice(self, delta: int) -> None:
        self.set_slice(self.slice_index + delta)

    def set_window_level(self, center: float, width: float) -> None:
        if self.volume is None:
            return
        self.slice_renderer.set_window_level(WindowLevel(center, width))
        self.request_render()
        window = self.window_level
        self.window_level_changed.emit(window.center, window.width)

    def reset_window_level(self) -> None:
        if self.volume is not None:
            preset = self.volume.auto_window()
            self.set_window_level(preset.center, preset.width)

    def reset_view(self) -> None:
        """Fit the whole slice into the view (and keep it fitted while resizing)."""
        self._fit_to_view = True
        self._fit_camera()
        self.request_render()

    def _fit_camera(self, width: int | None = None, height: int | None = None) -> None:
        width = width if width is not None else self.vtk_widget.width()
        height = height if height is not None else self.vtk_widget.height()
        self.slice_renderer.fit_camera(max(width, 1), max(height, 1))

    def _sync_header(self) -> None:
        count = self.num_slices
        self.slice_slider.blockSignals(True)
        self.slice_slider.setEnabled(count > 1)
        self.slice_slider.setRange(0, max(count - 1, 0))
        self.slice_slider.setValue(self.slice_index if count else 0)
        self.slice_slider.blockSignals(False)
        self.slice_slider.setToolTip(
            f"{format_slice_counter(self.slice_index, count)} (mouse wheel, Up/Down, Page Up/Page Down)"
            if count else "No image"
        )

    # -- rendering -----------------------------------------------------------------------
    def request_render(self) -> None:
        """Schedule a render; Qt merges several requests into one paint."""
        if not self._shut_down:
            self.vtk_widget.update()

    def render_now(self) -> None:
        if not self._shut_down and self.vtk_widget.isVisible():
            self.render_window.Render()

    def grab_view(self) -> QImage:
        """What is on screen in the VTK area (QWidget.grab cannot read OpenGL content)."""
        self.render_now()
        screen = self.vtk_widget.screen() or QGuiApplication.primaryScreen()
        return screen.grabWindow(int(self.vtk_widget.winId())).toImage()

    def voxel_widget_pos(self, i: float, j: float) -> QPoint:
        """Qt widget coordinates (of ``vtk_widget``) of the centre of voxel (i, j) on the slice."""
        x, y = self.slice_renderer.index_to_display(i, j)
        ratio = self.vtk_widget.devicePixelRatioF() or 1.0
        return QPoint(round(x / ratio), round(self.vtk_widget.height() - 1 - y / ratio))

    def shutdown(self) -> None:
        """Release the model subscriptions and the OpenGL context before the widget dies."""
        if self._shut_down:
            return
        self._detach_bridges()
        self._shut_down = True
        # The observers reference this widget from inside VTK, a cycle Python's garbage
        # collector cannot see; removing them lets the render window be freed with us.
        for tag in self._observer_tags:
            self.interactor.RemoveObserver(tag)
        self._observer_tags.clear()
        self.vtk_widget.Finalize()
        self.render_window.RemoveRenderer(self.slice_renderer.renderer)

    # -- gestures ------------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.vtk_widget and event.type() == QEvent.Type.Resize and self._fit_to_view:
            size = event.size()
            self._fit_camera(size.width(), size.height())
        return super().eventFilter(watched, event)

    def _event_position(self) -> tuple[int, int]:
        x, y = self.interactor.GetEventPosition()
        return int(x), int(y)

    def _on_left_press(self, *_args) -> None:
        self.vtk_widget.setFocus()
        if self.interactor.GetShiftKey():
            self._begin_drag("pan")
        else:
            self._begin_drag("window")

    def _on_middle_press(self, *_args) -> None:
        self._begin_drag("pan")

    def _on_right_press(self, *_args) -> None:
        self._begin_drag("zoom")

    def _begin_drag(self, kind: str) -> None:
        if self.volume is None:
            return
        self._drag = kind
        self._drag_origin = self._drag_last = self._event_position()
        self._drag_start_window = self.window_level

    def _on_release(self, *_args) -> None:
        self._drag = None

    def _on_mouse_move(self, *_args) -> None:
        position = self._event_position()
        self._mouse_display = position
        if self._drag == "window":
            dx = position[0] - self._drag_origin[0]
            dy = position[1] - self._drag_origin[1]
            window = drag_window_level(
                self._drag_start_window, dx, dy, self.render_window.GetSize(), self.slice_renderer.intensity_span
            )
            self.set_window_level(window.center, window.width)
        elif self._drag == "pan":
            self.slice_renderer.pan(self._drag_last, position)
            self._fit_to_view = False
            self.request_render()
        elif self._drag == "zoom":
            self.slice_renderer.zoom(math.exp((position[1] - self._drag_last[1]) * 0.01))
            self._fit_to_view = False
            self.request_render()
        self._drag_last = position
        self._refresh_cursor()

    def _on_key_press(self, *_args) -> None:
        key = self.interactor.GetKeySym()
        if key in _NEXT_SLICE_KEYS:
            self.step_slice(_NEXT_SLICE_KEYS[key])
        elif key == "Home":
            self.set_slice(0)
        elif key == "End":
            self.set_slice(self.num_slices - 1)
        elif key in ("r", "R"):
            self.reset_view()

    def _on_leave(self, *_args) -> None:
        self._mouse_display = None
        self.cursor_moved.emit(None)

    def _refresh_cursor(self) -> None:
        """Re-sample the voxel under the mouse (after a move, a slice change, an edit)."""
        if self._mouse_display is None or self.volume is None:
            return
        self.cursor_moved.emit(self.sample_at_display(*self._mouse_display))

    def sample_at_display(self, x: float, y: float) -> CursorSample | None:
        ijk = self.slice_renderer.display_to_index(x, y)
        if ijk is None:
            return None
        renderer = self.slice_renderer
        return sample_cursor(renderer.volume, ijk, renderer.labelmap, renderer.segments)
