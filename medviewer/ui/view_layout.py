"""The central area: the three slice views and the 3D view arranged by a LayoutState.

The panes are created once and only re-arranged (hidden panes keep their state and skip
rendering), so switching layouts or maximising a view is instant.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from medviewer.render.layout import LayoutState, PANES, VIEW_3D
from medviewer.ui import theme


class Missing3DView(QWidget):
    """Stand-in with View3D's interface for builds where the 3D view cannot be created."""

    surfaces_updated = Signal()

    def __init__(self, reason: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.busy = False
        label = QLabel(f"3D view unavailable\n{reason}", self)
        label.setStyleSheet(f"color: {theme.MUTED};")
        label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        self.vtk_widget = None

    def set_volume(self, volume) -> None: ...
    def set_segmentation(self, labelmap, segments) -> None: ...
    def set_cursor(self, point_lps) -> None: ...
    def set_window_level(self, center: float, width: float) -> None: ...
    def set_volume_rendering(self, enabled: bool, preset: str | None = None) -> None: ...
    def set_slice_planes_visible(self, visible: bool) -> None: ...
    def volume_rendering_presets(self) -> list[str]:
        return []
    def reset_camera(self) -> None: ...
    def render_now(self) -> None: ...
    def shutdown(self) -> None: ...


def create_view3d(parent: QWidget | None = None) -> QWidget:
    """The real 3D view, or a labelled stand-in if it cannot be built (logged, not fatal)."""
    try:
        from medviewer.ui.view3d import View3D

        return View3D(parent)
    except Exception as exc:  # noqa: BLE001 - the 2D viewer must still open
        import logging

        logging.getLogger(__name__).exception("the 3D view could not be created")
        return Missing3DView(f"{type(exc).__name__}: {exc}", parent)


class ViewLayout(QWidget):
    """Grid of view panes; ``apply(state)`` shows the panes of a layout or one maximised."""

    maximise_requested = Signal(str)  # pane name (double click on the 3D view or its header)

    def __init__(self, panes: dict[str, QWidget], parent: QWidget | None = None):
        super().__init__(parent)
        missing = set(PANES) - set(panes)
        if missing:
            raise ValueError(f"missing view panes: {sorted(missing)}")
        self.panes = dict(panes)
        self.state = LayoutState()
        self._shown_once = False
        self._frames: dict[str, QFrame] = {}
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.setStyleSheet(f"ViewLayout {{ background: {theme.BASE}; }}")
        for name, widget in self.panes.items():
            frame = QFrame(self)
            frame.setObjectName(f"pane_{name}")
            # Panes share the grid equally whatever their contents ask for: otherwise a
            # status text appearing in one header would shift every view sideways.
            frame.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
            box = QVBoxLayout(frame)
            box.setContentsMargins(0, 0, 0, 0)
            box.addWidget(widget)
            frame.hide()
            self._frames[name] = frame
        self._watch_3d_double_click(self.panes[VIEW_3D])
        self.apply(self.state)

    def _watch_3d_double_click(self, view3d: QWidget) -> None:
        """Double click on the 3D view's header or picture maximises it, as in the 2D views."""
        header = view3d.findChild(QFrame, "view3dHeader")
        if header is not None:
            button = QToolButton(header)
            button.setIcon(theme.icon("mdi6.arrow-expand"))
            button.setToolTip("Maximise the 3D view / back to the layout (double-click the view)")
            button.setAutoRaise(True)
            button.clicked.connect(lambda: self.maximise_requested.emit(VIEW_3D))
            if header.layout() is not None:
                header.layout().addWidget(button)
            header.installEventFilter(self)
            self.maximise_3d_button = button
        vtk_widget = getattr(view3d, "vtk_widget", None)
        if vtk_widget is not None:
            vtk_widget.installEventFilter(self)
        self._watched_3d = [w for w in (header, vtk_widget) if w is not None]

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched in self._watched_3d and event.type() == QEvent.Type.MouseButtonDblClick:
            self.maximise_requested.emit(VIEW_3D)
            return True
        return super().eventFilter(watched, event)

    def release(self) -> None:
        """Stop watching the 3D view (before it shuts down)."""
        for widget in self._watched_3d:
            widget.removeEventFilter(self)
        self._watched_3d = []

    def apply(self, state: LayoutState) -> None:
        """Arrange the panes for ``state`` (the object is kept, not copied).

        Before the window is first shown every pane is laid out (the VTK widgets need their
        native windows created with the window); ``state`` takes effect right after.
        """
        self.state = state
        if not self._shown_once:
            self._arrange(LayoutState().cells())
            return
        self._arrange(state.cells())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            QTimer.singleShot(0, lambda: self._arrange(self.state.cells()))

    def _arrange(self, cells: dict[str, tuple[int, int]]) -> None:
        for name, frame in self._frames.items():
            if name not in cells and frame.isVisible():
                frame.hide()
            self._grid.removeWidget(frame)
        rows = max(r for r, _ in cells.values()) + 1
        columns = max(c for _, c in cells.values()) + 1
        for index in range(4):
            self._grid.setRowStretch(index, 1 if index < rows else 0)
            self._grid.setColumnStretch(index, 1 if index < columns else 0)
        for name, (row, column) in cells.items():
            self._grid.addWidget(self._frames[name], row, column)
            self._frames[name].show()

    def visible_panes(self) -> list[str]:
        return [name for name in self.state.cells()]
