"""One 2D slice view (axial, coronal or sagittal): a SliceRenderer in a VTK widget.

Mouse and keys (Slicer / ITK-SNAP conventions):
  left click, Shift + left drag        move the linked cursor (all views follow)
  left drag                            window (horizontal) and level (vertical)
  wheel, Up/Down, Left/Right, PgUp/PgDn next / previous slice (Home, End: first, last)
  Ctrl + wheel, right drag             zoom (around the mouse for the wheel)
  middle drag                          pan
  R                                    fit the image to the view again
  double click                         maximise this view / back to the layout
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt, Signal
from PySide6.QtGui import QGuiApplication, QImage, QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QFrame, QHBoxLayout, QLabel, QSlider, QToolButton, QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

from medviewer.model.events import Box
from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume
from medviewer.render.mpr import ViewOrientation
from medviewer.render.readout import CursorSample, format_slice_counter, sample_cursor
from medviewer.render.slice_renderer import VIEW_COLORS, SliceRenderer
from medviewer.render.window_level import WindowLevel, drag_window_level
from medviewer.render.window_presets import initial_window
from medviewer.ui import theme
from medviewer.ui.event_bridge import EventBridge
from medviewer.ui.view_tools import ToolEvent, ToolEventKind, ViewTool

#: Mouse travel (pixels) below which a left press + release counts as a click.
CLICK_SLOP_PX = 4
#: Zoom per wheel notch with Ctrl held.
WHEEL_ZOOM_STEP = 1.15

_NEXT_SLICE_KEYS = {
    Qt.Key.Key_Up: 1, Qt.Key.Key_Right: 1, Qt.Key.Key_PageUp: 1,
    Qt.Key.Key_Down: -1, Qt.Key.Key_Left: -1, Qt.Key.Key_PageDown: -1,
}

SLICE_VIEW_GESTURES: tuple[tuple[str, str], ...] = (
    ("Left click / Shift + left drag", "Move the linked cursor; the other views follow"),
    ("Left drag", "Window (horizontal) and level (vertical)"),
    ("Mouse wheel, Up/Down, Left/Right, Page Up/Down", "Next / previous slice"),
    ("Home / End", "First / last slice"),
    ("Ctrl + mouse wheel, right drag", "Zoom"),
    ("Middle drag", "Pan"),
    ("R", "Fit the image to the view"),
    ("Double click", "Maximise the view / back to the layout"),
)


def qcolor_hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


class SliceView(QWidget):
    """A patient-axis view of the active volume, its labels and the linked cursor."""

    cursor_changed = Signal(object)  # LPS point (numpy) the user moved the cursor to
    window_level_changed = Signal(float, float)  # centre, width (after a drag)
    hover_sample = Signal(object)  # CursorSample under the mouse, or None
    overlay_updated = Signal(object)  # the Box that made this view re-slice its labels
    maximise_requested = Signal()
    activated = Signal()  # the user pressed a mouse button in this view

    def __init__(self, orientation: ViewOrientation | str = ViewOrientation.AXIAL, parent: QWidget | None = None):
        super().__init__(parent)
        self.orientation = ViewOrientation(orientation)
        self.slice_renderer = SliceRenderer(self.orientation)
        self._bridges: list[EventBridge] = []
        self._drag: str | None = None
        self._drag_origin = (0.0, 0.0)
        self._drag_last = (0.0, 0.0)
        self._drag_start_window = WindowLevel(0.0, 1.0)
        self._wheel_remainder = 0
        self._mouse_display: tuple[float, float] | None = None
        self._fit_to_view = True
        self._shut_down = False
        #: Interaction tool offered every gesture first (see medviewer.ui.view_tools).
        self.view_tool: ViewTool | None = None

        self.header = self._build_header()
        self.vtk_widget = QVTKRenderWindowInteractor(self)
        self.vtk_widget.setCursor(Qt.CursorShape.CrossCursor)
        self.vtk_widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.vtk_widget.setMouseTracking(True)
        self.vtk_widget.installEventFilter(self)
        self.render_window = self.vtk_widget.GetRenderWindow()
        # Multisampling smooths polygon edges; a slice view shows textures and 1-pixel
        # lines, and on software OpenGL (Mesa) 4x MSAA costs three quarters of each frame.
        self.render_window.SetMultiSamples(0)
        self.render_window.AddRenderer(self.slice_renderer.renderer)
        self.interactor = self.render_window.GetInteractor()
        self.interactor.SetInteractorStyle(None)  # every gesture is handled in eventFilter

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.vtk_widget, 1)
        self.vtk_widget.Initialize()
        self._sync_header()

    def _build_header(self) -> QFrame:
        """Slicer-like view bar: colour tag, view name, slice slider, maximise button."""
        color = qcolor_hex(VIEW_COLORS[self.orientation])
        header = QFrame(self)
        header.setObjectName("sliceViewHeader")
        header.setStyleSheet(f"#sliceViewHeader {{ background: {theme.PANEL}; border-bottom: 2px solid {color}; }}")
        row = QHBoxLayout(header)
        row.setContentsMargins(6, 2, 4, 2)
        row.setSpacing(6)
        tag = QLabel(self.orientation.title, header)
        tag.setStyleSheet(f"background: {color}; color: #111; font-weight: 600; padding: 0px 7px; border-radius: 3px;")
        tag.setToolTip(f"{self.orientation.title} view (double-click the view to maximise it)")
        self.title_tag = tag
        self.slice_slider = QSlider(Qt.Orientation.Horizontal, header)
        self.slice_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slice_slider.valueChanged.connect(self.set_slice)
        self.fit_button = QToolButton(header)
        self.fit_button.setIcon(theme.icon("mdi6.fit-to-screen-outline"))
        self.fit_button.setToolTip("Fit the image to this view (R)")
        self.fit_button.setAutoRaise(True)
        self.fit_button.clicked.connect(self.reset_view)
        self.maximise_button = QToolButton(header)
        self.maximise_button.setIcon(theme.icon("mdi6.arrow-expand"))
        self.maximise_button.setToolTip("Maximise this view / back to the layout (double-click the view)")
        self.maximise_button.setAutoRaise(True)
        self.maximise_button.clicked.connect(self.maximise_requested)
        row.addWidget(tag)
        row.addWidget(self.slice_slider, 1)
        row.addWidget(self.fit_button)
        row.addWidget(self.maximise_button)
        header.setFixedHeight(26)
        header.installEventFilter(self)
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

    @property
    def cursor(self) -> np.ndarray:
        return self.slice_renderer.cursor.copy()

    def set_volume(
        self,
        volume: Volume | None,
        labelmap: LabelMap | None = None,
        segments: SegmentTable | None = None,
        cursor=None,
        window: WindowLevel | None = None,
    ) -> None:
        """Show ``volume`` through ``cursor`` (default: its centre), fitted, and follow its labels."""
        self._detach_bridges()
        self.slice_renderer.set_volume(volume, labelmap, segments, cursor)
        if volume is not None:
            if window is not None:
                self.slice_renderer.set_window_level(window)
            self._watch_labels(labelmap, segments)
            self.reset_view()
        self._sync_header()
        self.request_render()
        self.hover_sample.emit(None)

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
        if self.volume is None:
            return
        box = box or Box.full(self.volume.shape)
        if self.slice_renderer.labels_changed(box):
            self.request_render()
            self.overlay_updated.emit(box)
            self._refresh_hover()

    def _on_segments_changed(self, *_args) -> None:
        self.slice_renderer.segments_changed()
        self.request_render()
        self._refresh_hover()

    def set_labels_visible(self, visible: bool) -> None:
        self.slice_renderer.set_labels_visible(visible)
        self.request_render()

    def set_label_opacity(self, alpha: float) -> None:
        self.slice_renderer.set_label_alpha(alpha)
        self.request_render()

    def set_outline_mode(self, outline: bool) -> None:
        self.slice_renderer.set_outline_mode(outline)
        self.request_render()

    def set_interpolation(self, linear: bool) -> None:
        self.slice_renderer.set_interpolation(linear)
        self.request_render()

    def set_crosshair_visible(self, visible: bool) -> None:
        self.slice_renderer.set_crosshair_visible(visible)
        self.request_render()

    # -- cursor, slice, window ----------------------------------------------------------
    def set_cursor(self, point, render: bool = True) -> None:
        """Show the plane through ``point`` (LPS) with the crosshair on it (no signal).

        ``render=False`` updates the state only; the caller schedules the repaint (linked
        views are repainted at a throttled rate while the user scrolls another view).
        """
        if self.slice_renderer.set_cursor(point):
            self._sync_header()
            if render:
                self.request_render()
            self._refresh_hover()

    def move_cursor(self, point) -> None:
        """A user gesture moved the cursor: show it and tell the other views."""
        if self.volume is None or point is None:
            return
        point = self.slice_renderer.snap(point)
        self.set_cursor(point)
        self.cursor_changed.emit(self.slice_renderer.cursor.copy())

    def set_slice(self, index: int) -> None:
        if self.volume is not None and index != self.slice_index:
            self.move_cursor(self.slice_renderer.cursor_on_slice(int(index)))

    def step_slice(self, delta: int) -> None:
        if self.volume is not None and delta:
            self.move_cursor(self.slice_renderer.stepped_cursor(int(delta)))

    def set_window_level(self, center: float, width: float, notify: bool = True, render: bool = True) -> None:
        if self.volume is None:
            return
        self.slice_renderer.set_window_level(WindowLevel(center, width))
        if render:
            self.request_render()
        if notify:
            window = self.window_level
            self.window_level_changed.emit(window.center, window.width)

    def reset_window_level(self) -> None:
        if self.volume is not None:
            preset = initial_window(self.volume)
            self.set_window_level(preset.center, preset.width)

    def reset_view(self) -> None:
        """Fit the whole slice into the view (and keep it fitted while resizing)."""
        self._fit_to_view = True
        self._fit_camera()
        self.request_render()

    def zoom(self, factor: float, around_widget_pos: QPoint | QPointF | None = None) -> None:
        anchor = self._to_display(around_widget_pos) if around_widget_pos is not None else None
        self.slice_renderer.zoom(factor, anchor)
        self._fit_to_view = False
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
        if count:
            counter = format_slice_counter(self.slice_index, count)
            self.slice_slider.setToolTip(f"{counter} (mouse wheel, arrow keys, Page Up / Page Down)")
        else:
            self.slice_slider.setToolTip("No image")

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

    def physical_widget_pos(self, point) -> QPointF:
        """Qt widget coordinates (of ``vtk_widget``) where an LPS point appears on the plane."""
        x, y = self.slice_renderer.physical_to_display(point)
        ratio = self.vtk_widget.devicePixelRatioF() or 1.0
        return QPointF(x / ratio, self.vtk_widget.height() - 1 - y / ratio)

    def voxel_widget_pos(self, i: float, j: float, k: float | None = None) -> QPoint:
        """Widget position of voxel (i, j, k) projected onto the plane (k: the cursor's slice)."""
        geometry = self.volume.geometry
        if k is None:
            k = float(geometry.physical_to_index(self.slice_renderer.cursor)[2])
        return self.physical_widget_pos(geometry.index_to_physical((i, j, k))).toPoint()

    def widget_to_physical(self, pos: QPoint | QPointF) -> np.ndarray | None:
        """LPS point on the shown plane under a widget position."""
        return self.slice_renderer.display_to_physical(*self._to_display(pos))

    def shutdown(self) -> None:
        """Release the model subscriptions and the OpenGL context before the widget dies."""
        if self._shut_down:
            return
        self._detach_bridges()
        self._shut_down = True
        self.vtk_widget.removeEventFilter(self)
        self.vtk_widget.Finalize()
        self.render_window.RemoveRenderer(self.slice_renderer.renderer)

    # -- gestures ------------------------------------------------------------------------
    def _to_display(self, pos: QPoint | QPointF) -> tuple[float, float]:
        """Qt widget position -> VTK display pixel (origin bottom-left), as QVTK does it."""
        ratio = self.vtk_widget.devicePixelRatioF() or 1.0
        return (float(pos.x()) * ratio, (self.vtk_widget.height() - float(pos.y()) - 1) * ratio)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if self._shut_down:
            return False
        if watched is self.header:
            if event.type() == QEvent.Type.MouseButtonDblClick:
                self.maximise_requested.emit()
                return True
            return False
        if watched is not self.vtk_widget:
            return False
        kind = event.type()
        if self.view_tool is not None and self.volume is not None and self._offer_to_tool(kind, event):
            return True
        if kind == QEvent.Type.Resize and self._fit_to_view:
            size = event.size()
            self._fit_camera(size.width(), size.height())
            return False
        if kind == QEvent.Type.MouseButtonPress:
            self._on_press(event)
            return True
        if kind == QEvent.Type.MouseMove:
            self._on_move(event)
            return True
        if kind == QEvent.Type.MouseButtonRelease:
            self._on_release(event)
            return True
        if kind == QEvent.Type.MouseButtonDblClick:
            if event.button() == Qt.MouseButton.LeftButton:
                self._drag = None
                self.maximise_requested.emit()
            return True
        if kind == QEvent.Type.Wheel:
            self._on_wheel(event)
            return True
        if kind == QEvent.Type.KeyPress:
            return self._on_key(event)
        if kind == QEvent.Type.Enter:
            # Keys act on the view under the mouse (as in ITK-SNAP), unless the user is
            # typing somewhere else (a segment name, a window value).
            focus = QApplication.focusWidget()
            if focus is None or isinstance(focus, QVTKRenderWindowInteractor):
                self.vtk_widget.setFocus(Qt.FocusReason.MouseFocusReason)
            return False
        if kind == QEvent.Type.Leave:
            self._mouse_display = None
            self.hover_sample.emit(None)
            return False
        return False

    def _offer_to_tool(self, kind: QEvent.Type, event: QEvent) -> bool:
        """Translate a Qt event into a :class:`ToolEvent` and let the active tool take it."""
        mapping = {
            QEvent.Type.MouseButtonPress: ToolEventKind.PRESS,
            QEvent.Type.MouseMove: ToolEventKind.MOVE,
            QEvent.Type.MouseButtonRelease: ToolEventKind.RELEASE,
            QEvent.Type.Wheel: ToolEventKind.WHEEL,
            QEvent.Type.KeyPress: ToolEventKind.KEY,
        }
        tool_kind = mapping.get(kind)
        if tool_kind is None:
            return False
        if tool_kind is ToolEventKind.KEY:
            tool_event = ToolEvent(tool_kind, self, None, None, modifiers=event.modifiers(), key=event.key())
        else:
            position = event.position()
            steps = 0
            if tool_kind is ToolEventKind.WHEEL:
                steps = int(event.angleDelta().y() / 120)
                button, buttons = Qt.MouseButton.NoButton, event.buttons()
            else:
                button, buttons = event.button(), event.buttons()
            if tool_kind is ToolEventKind.PRESS:
                self.vtk_widget.setFocus(Qt.FocusReason.MouseFocusReason)
                self.activated.emit()
            tool_event = ToolEvent(
                tool_kind, self, self.widget_to_physical(position), position,
                button=button, buttons=buttons, modifiers=event.modifiers(), wheel_steps=steps,
            )
        consumed = bool(self.view_tool.handle(tool_event))
        if consumed and tool_kind is ToolEventKind.MOVE:
            self._mouse_display = self._to_display(event.position())
            self._refresh_hover()
        return consumed

    def _on_press(self, event: QMouseEvent) -> None:
        self.vtk_widget.setFocus(Qt.FocusReason.MouseFocusReason)
        self.activated.emit()
        if self.volume is None:
            return
        position = event.position()
        self._drag_origin = self._drag_last = self._to_display(position)
        button = event.button()
        if button == Qt.MouseButton.LeftButton:
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self._drag = "cursor"
                self.move_cursor(self.widget_to_physical(position))
            else:
                self._drag = "click"  # becomes "window" once the mouse travels
                self._drag_start_window = self.window_level
        elif button == Qt.MouseButton.MiddleButton:
            self._drag = "pan"
        elif button == Qt.MouseButton.RightButton:
            self._drag = "zoom"

    def _on_move(self, event: QMouseEvent) -> None:
        position = event.position()
        display = self._to_display(position)
        self._mouse_display = display
        drag = self._drag
        if drag == "click" and math.dist(display, self._drag_origin) > CLICK_SLOP_PX:
            drag = self._drag = "window"
        if drag == "window":
            dx, dy = display[0] - self._drag_origin[0], display[1] - self._drag_origin[1]
            window = drag_window_level(
                self._drag_start_window, dx, dy, self.render_window.GetSize(), self.slice_renderer.intensity_span
            )
            self.set_window_level(window.center, window.width)
        elif drag == "cursor":
            self.move_cursor(self.widget_to_physical(position))
        elif drag == "pan":
            self.slice_renderer.pan(self._drag_last, display)
            self._fit_to_view = False
            self.request_render()
        elif drag == "zoom":
            self.slice_renderer.zoom(math.exp((display[1] - self._drag_last[1]) * 0.01))
            self._fit_to_view = False
            self.request_render()
        self._drag_last = display
        self._refresh_hover()

    def _on_release(self, event: QMouseEvent) -> None:
        if self._drag == "click" and event.button() == Qt.MouseButton.LeftButton:
            self.move_cursor(self.slice_renderer.display_to_physical(*self._drag_origin))
        self._drag = None

    def _on_wheel(self, event: QWheelEvent) -> None:
        self._wheel_remainder += event.angleDelta().y()
        steps = int(self._wheel_remainder / 120)
        if not steps:
            return
        self._wheel_remainder -= steps * 120
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(WHEEL_ZOOM_STEP ** steps, event.position())
        else:
            self.step_slice(steps)

    def _on_key(self, event: QKeyEvent) -> bool:
        key = event.key()
        if event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return False  # leave shortcuts to the window's actions
        if key in _NEXT_SLICE_KEYS:
            self.step_slice(_NEXT_SLICE_KEYS[key])
        elif key == Qt.Key.Key_Home:
            self.set_slice(0)
        elif key == Qt.Key.Key_End:
            self.set_slice(self.num_slices - 1)
        elif key == Qt.Key.Key_R:
            self.reset_view()
        else:
            return False
        return True

    def _refresh_hover(self) -> None:
        """Re-sample the voxel under the mouse (after a move, a slice change, an edit)."""
        if self._mouse_display is None or self.volume is None:
            return
        self.hover_sample.emit(self.sample_at_display(*self._mouse_display))

    def sample_at_display(self, x: float, y: float) -> CursorSample | None:
        ijk = self.slice_renderer.display_to_index(x, y)
        if ijk is None:
            return None
        renderer = self.slice_renderer
        return sample_cursor(renderer.volume, ijk, renderer.labelmap, renderer.segments)
