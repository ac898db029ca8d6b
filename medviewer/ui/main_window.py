"""Main window: linked axial / coronal / sagittal views and a 3D view, docks, menus, status bar.

The window observes the :class:`~medviewer.model.Document` through Qt-side event bridges
and never blocks: files are read by :class:`~medviewer.ui.workers.BackgroundJob` on a
thread pool, with progress and a Cancel button in the status bar.

It also owns the state the views share: the cursor (one LPS point all views pass
through), the window/level of each volume, and the layout (remembered in QSettings).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QThreadPool, QTimer, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QFontDatabase, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QToolButton,
    QWidget,
)

from medviewer import gc_control
from medviewer.demo import make_demo_case
from medviewer.io import load_labels as read_label_map
from medviewer.io import load_volume
from medviewer.io.errors import MedViewerIOError, SeriesSelectionError
from medviewer.io.images import is_image_file
from medviewer.jobs import JobControl
from medviewer.model.document import Document
from medviewer.model.labelmap import GridMismatchError, LabelMap
from medviewer.model.volume import Volume, WindowPreset
from medviewer.render.layout import AXIAL, CORONAL, LAYOUT_NAMES, LAYOUT_TITLES, SAGITTAL, VIEW_3D, LayoutState
from medviewer.render.mpr import ViewOrientation, contains_point, snap_cursor, volume_centre
from medviewer.render.readout import format_cursor_readout
from medviewer.render.window_level import WindowLevel
from medviewer.render.window_presets import find_window_preset, initial_window
from medviewer.ui import theme
from medviewer.ui.data_panel import DataPanel
from medviewer.ui.event_bridge import EventBridge
from medviewer.ui.segment_panel import SegmentPanel
from medviewer.ui.series_dialog import SeriesDialog
from medviewer.ui.settings import ViewerSettings
from medviewer.ui.shortcuts_dialog import ShortcutsDialog, action_shortcut_rows
from medviewer.ui.slice_view import SLICE_VIEW_GESTURES, SliceView
from medviewer.ui.tool_panel import ToolPanel
from medviewer.ui.view_layout import ViewLayout, create_view3d
from medviewer.ui.window_level_bar import WindowLevelBar
from medviewer.ui.workers import BackgroundJob

log = logging.getLogger(__name__)

IMAGE_FILE_FILTER = ";;".join(
    (
        "Medical images (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.dcm *.png *.jpg *.jpeg *.tif *.tiff)",
        "NIfTI (*.nii *.nii.gz)",
        "NRRD (*.nrrd *.nhdr)",
        "MetaImage (*.mha *.mhd)",
        "DICOM file (*.dcm)",
        "Pictures (*.png *.jpg *.jpeg *.tif *.tiff)",
        "All files (*)",
    )
)
LABEL_FILE_FILTER = "Label maps (*.nii *.nii.gz *.nrrd *.seg.nrrd *.nhdr *.mha *.mhd);;All files (*)"

VIEW_3D_GESTURES: tuple[tuple[str, str], ...] = (
    ("Left drag", "Rotate"),
    ("Right drag, mouse wheel", "Zoom"),
    ("Middle drag, Shift + left drag", "Pan"),
    ("R", "Reset the 3D camera"),
    ("Double click", "Maximise the view / back to the layout"),
)

EMPTY_VIEW_HINT = "Open a scan (Ctrl+O) or a DICOM folder (Ctrl+D),\nor drop files here"

#: Throttle of the repaints of the views linked to the one being scrolled or windowed (ms).
LINKED_REFRESH_MS = 80
#: Pause in a scroll or window/level drag after which the 3D view's planes follow (ms).
VIEW3D_FOLLOW_MS = 250

#: Keyboard shortcut of each layout (Slicer-like numbering).
LAYOUT_SHORTCUTS = {"2x2": "Ctrl+1", "1x3": "Ctrl+2", AXIAL: "Ctrl+3", CORONAL: "Ctrl+4", SAGITTAL: "Ctrl+5", VIEW_3D: "Ctrl+6"}
LAYOUT_ICONS = {
    "2x2": "mdi6.view-grid-outline",
    "1x3": "mdi6.view-column-outline",
    AXIAL: "mdi6.square-outline",
    CORONAL: "mdi6.square-outline",
    SAGITTAL: "mdi6.square-outline",
    VIEW_3D: "mdi6.cube-outline",
}


def choose_drop_target(paths: list[Path]) -> Path | None:
    """What to open for a drop: one item as is; several DICOM files -> their folder."""
    paths = [p for p in paths if p.exists()]
    if not paths:
        return None
    if len(paths) == 1:
        return paths[0]
    parents = {p.parent for p in paths}
    if len(parents) == 1 and not any(p.is_dir() or is_image_file(p) for p in paths):
        return paths[0].parent  # several slices of one series
    return paths[0]


class MainWindow(QMainWindow):
    """The viewer window for one :class:`Document`."""

    volume_loaded = Signal(object)  # Volume, after it became the active volume
    labels_loaded = Signal(object)  # LabelMap, after it was attached to the active volume
    load_failed = Signal(str)  # user-facing message naming the file and the problem
    busy_changed = Signal(bool)  # a background load started (True) or ended (False)
    cursor_changed = Signal(object)  # the linked cursor (LPS numpy point) moved
    window_level_changed = Signal(float, float)  # centre, width of the shown volume
    layout_changed = Signal(str)  # layout name, after the panes were re-arranged

    def __init__(self, document: Document, parent: QWidget | None = None, settings: QSettings | None = None):
        super().__init__(parent)
        self.document = document
        self.settings = ViewerSettings(settings if settings is not None else QSettings())
        #: Non-interactive runs (screenshots) open the first series instead of asking.
        self.auto_select_first_series = False
        #: Whether layout changes are written to the settings (off for scripted runs).
        self.remember_layout = True
        self._job: BackgroundJob | None = None
        self._finished_jobs: list[BackgroundJob] = []
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._series_dialog: SeriesDialog | None = None
        self.last_message_box: QMessageBox | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self._document_bridges: list[EventBridge] = []
        self._closed = False
        self._cursor = np.zeros(3)
        self._windows: dict[int, WindowLevel] = {}
        self._shown_volume: Volume | None = None
        self._active_pane = AXIAL
        # Linked views repaint at this rate while the user scrolls or drags in another one:
        # on software OpenGL a repaint of all four views would halve the frame rate.
        self._linked_timer = QTimer(self)
        self._linked_timer.setSingleShot(True)
        self._linked_timer.setInterval(LINKED_REFRESH_MS)
        self._linked_timer.timeout.connect(self._refresh_linked_views)
        # The 3D view is the most expensive to draw: it follows when the gesture pauses.
        self._view3d_timer = QTimer(self)
        self._view3d_timer.setSingleShot(True)
        self._view3d_timer.setInterval(VIEW3D_FOLLOW_MS)
        self._view3d_timer.timeout.connect(self._refresh_view3d)
        self._linked_views: set[SliceView] = set()
        self._linked_cursor = False
        self._linked_window = False

        self.setWindowTitle("medviewer")
        self.setWindowIcon(theme.app_icon())
        self.setAcceptDrops(True)
        self.resize(1400, 900)

        self.slice_views: dict[str, SliceView] = {o.value: SliceView(o, self) for o in ViewOrientation}
        self.axial_view.slice_renderer.set_empty_message(EMPTY_VIEW_HINT)
        self.view3d = create_view3d(self)
        self.view_layout = ViewLayout({**self.slice_views, VIEW_3D: self.view3d}, self)
        self.setCentralWidget(self.view_layout)
        self.window_bar = WindowLevelBar(self)
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect_views()
        self._connect_document()
        self.apply_layout_state(self.settings.layout_state(), remember=False)
        self.set_linear_interpolation(self.settings.linear_interpolation())
        self._on_active_volume_changed(document.active_volume)
        self._install_editing()
        self._install_ai_panel()
        self.data_dock.raise_()  # a newcomer starts from the data; tools are one tab away

    def _install_editing(self) -> None:
        """Manual editing: Edit panel, Edit menu (undo/redo), export/import/session, autosave."""
        from medviewer.ui.edit_panel import install_editing

        self.editing = install_editing(self)

    def _install_ai_panel(self) -> None:
        """AI prompting (SAM-family models): its own dock, tabbed with the Tool dock, and an AI menu."""
        from medviewer.ui.ai_panel import install_ai_panel

        self.ai_controller, self.ai_panel, self.ai_dock = install_ai_panel(self)

    # -- public API ----------------------------------------------------------------------
    @property
    def axial_view(self) -> SliceView:
        return self.slice_views[AXIAL]

    @property
    def coronal_view(self) -> SliceView:
        return self.slice_views[CORONAL]

    @property
    def sagittal_view(self) -> SliceView:
        return self.slice_views[SAGITTAL]

    @property
    def slice_view(self) -> SliceView:
        """The axial view (the one view of earlier versions)."""
        return self.axial_view

    @property
    def is_busy(self) -> bool:
        return self._job is not None

    @property
    def cursor_point(self) -> np.ndarray:
        """The linked cursor (LPS, mm) every slice view passes through."""
        return self._cursor.copy()

    @property
    def window_level(self) -> WindowLevel:
        return self.axial_view.window_level

    @property
    def layout_state(self) -> LayoutState:
        return self.view_layout.state

    def open_path(self, path: str | Path, series_key: str | None = None) -> None:
        """Load an image file, DICOM file or DICOM folder in the background.

        Emits ``volume_loaded`` on success and ``load_failed(message)`` on error; a folder
        with several series first asks which one to open.
        """
        path = str(path)
        name = Path(path).name or path

        def job(control: JobControl) -> Volume:
            volume = load_volume(path, series_key, control)
            # Intensity statistics (auto window/level, presets) are cached on the volume;
            # computing them here keeps a 300-slice series from pausing the window.
            control.report(1, 1, "Measuring intensities")
            volume.intensity_range()
            volume.percentiles(1.0, 99.0)
            return volume

        self._start_job(
            f"Opening {name}",
            job,
            on_success=lambda volume: self._on_volume_read(volume, path),
            on_error=lambda exc: self._on_volume_error(exc, path),
        )

    def open_demo(self) -> Volume:
        """Add the synthetic abdominal CT with its ground-truth segments (takes ~0.5 s)."""
        self.cancel_job()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            volume, labels, segments = make_demo_case()
        finally:
            QApplication.restoreOverrideCursor()
        self.document.set_labels(volume, labels, segments)
        self._activate_new_volume(volume, "demo case")
        self.document.mark_saved(volume)  # regenerated identically on demand: nothing to lose
        return volume

    def load_labels(self, path: str | Path) -> None:
        """Load a label map onto the active volume's grid (refused, with a message, on mismatch)."""
        volume = self.document.active_volume
        path = str(path)
        if volume is None:
            self._report_error("No volume open", "Open a volume before loading a label map.")
            self.load_failed.emit("Open a volume before loading a label map.")
            return

        def job(control: JobControl) -> LabelMap:
            return read_label_map(path, volume, control)

        self._start_job(
            f"Loading labels {Path(path).name}",
            job,
            on_success=lambda labelmap: self._on_labels_read(labelmap, volume, path),
            on_error=lambda exc: self._on_labels_error(exc, path),
        )

    def cancel_job(self) -> None:
        """Stop the running load, if any; its result will be ignored."""
        if self._job is not None:
            self._job.cancel()
            self._retire_job(self._job)
            self.statusBar().showMessage("Loading cancelled", 4000)

    def close_active_volume(self) -> None:
        """Close the shown volume; unsaved label changes are confirmed first (Save / Discard / Cancel)."""
        if self.document.active_volume is not None:
            self.editing.files.close_volume(self.document.active_volume)

    def request_close(self) -> bool:
        """Close as the user asked (Quit): unsaved changes are confirmed first; ``close()`` does not ask."""
        return self.editing.files.request_close()

    def update_window_title(self) -> None:
        """The shown volume's name, with ``*`` while its segmentation has unsaved changes."""
        volume = self.document.active_volume
        if volume is None:
            self.setWindowTitle("medviewer")
        else:
            mark = "*" if self.document.is_modified(volume) else ""
            self.setWindowTitle(f"{volume.info.name or 'Untitled'}{mark} — medviewer")

    def set_cursor(self, point, source: SliceView | None = None) -> None:
        """Move the linked cursor; every slice view and the 3D planes follow.

        ``source`` is the view the user is working in: it repaints at once, the others
        at most every :data:`LINKED_REFRESH_MS` while the gesture goes on.
        """
        volume = self._shown_volume
        if volume is None:
            return
        point = snap_cursor(volume.geometry, point)
        if np.allclose(point, self._cursor, atol=1e-9, rtol=0) and all(
            np.allclose(v.cursor, point, atol=1e-9, rtol=0) for v in self.slice_views.values()
        ):
            return
        self._cursor = point
        for view in self.slice_views.values():
            view.set_cursor(point, render=source is None or view is source)
        if source is None:
            self.view3d.set_cursor(tuple(float(c) for c in point))
        else:
            self._defer_linked_refresh(source, cursor=True)
        self.cursor_changed.emit(point.copy())

    def _defer_linked_refresh(self, source: SliceView, cursor: bool = False, window: bool = False) -> None:
        """Repaint the views other than ``source`` soon (throttled, not debounced)."""
        self._linked_views.update(v for v in self.slice_views.values() if v is not source)
        self._linked_cursor |= cursor
        self._linked_window |= window
        if not self._linked_timer.isActive():
            self._linked_timer.start()

    def _refresh_linked_views(self) -> None:
        views, self._linked_views = self._linked_views, set()
        for view in views:
            view.request_render()
        if self._linked_cursor or self._linked_window:
            self._view3d_timer.start()  # (re)start: the 3D view follows once the gesture pauses

    def _refresh_view3d(self) -> None:
        if self._linked_cursor:
            self.view3d.set_cursor(tuple(float(c) for c in self._cursor))
        if self._linked_window and self._shown_volume is not None:
            window = self._windows.get(id(self._shown_volume))
            if window is not None:
                self.view3d.set_window_level(window.center, window.width)
        self._linked_cursor = self._linked_window = False

    def flush_linked_views(self) -> None:
        """Bring every view up to date now (tests, screenshots)."""
        self._linked_timer.stop()
        self._refresh_linked_views()
        self._view3d_timer.stop()
        self._refresh_view3d()

    def centre_cursor(self) -> None:
        if self._shown_volume is not None:
            self.set_cursor(volume_centre(self._shown_volume.geometry))

    def set_window_level(self, center: float, width: float, source: SliceView | None = None) -> None:
        """Window/level of the shown volume, in all views (2D and the 3D planes)."""
        volume = self._shown_volume
        if volume is None:
            return
        window = WindowLevel(float(center), max(float(width), 1e-6))
        self._windows[id(volume)] = window
        for view in self.slice_views.values():
            view.set_window_level(window.center, window.width, notify=False, render=source is None or view is source)
        if source is None:
            self.view3d.set_window_level(window.center, window.width)
        else:
            self._defer_linked_refresh(source, window=True)
        self.window_bar.show_window(window)
        self.window_level_changed.emit(window.center, window.width)

    def window_presets(self) -> list[WindowPreset]:
        return list(self.window_bar.presets)

    def apply_window_preset(self, name: str) -> WindowPreset:
        """Apply a preset by name ('lung', 'Soft tissue', 'auto'...); ValueError if unknown."""
        preset = find_window_preset(self.window_bar.presets, name)
        if preset is None:
            available = ", ".join(p.name for p in self.window_bar.presets) or "none (no volume open)"
            raise ValueError(f"unknown window preset {name!r}; available: {available}")
        self.set_window_level(preset.center, preset.width)
        return preset

    def reset_window_level(self) -> None:
        if self._shown_volume is not None:
            preset = initial_window(self._shown_volume)
            self.set_window_level(preset.center, preset.width)

    def set_layout(self, layout: str, remember: bool = True) -> None:
        """Show one of :data:`~medviewer.render.layout.LAYOUT_NAMES` ('2x2', 'axial', ...)."""
        state = LayoutState(self.view_layout.state.layout, self.view_layout.state.maximised)
        state.set_layout(layout)
        self.apply_layout_state(state, remember)

    def toggle_maximised(self, pane: str | None = None) -> None:
        """Maximise ``pane`` (default: the view used last) or return to the layout."""
        self._active_pane = pane or self._active_pane
        state = LayoutState(self.view_layout.state.layout, self.view_layout.state.maximised)
        state.toggle_maximised(self._active_pane)
        self.apply_layout_state(state)

    def apply_layout_state(self, state: LayoutState, remember: bool = True) -> None:
        self.view_layout.apply(state)
        action = self.layout_actions.get(state.layout) if hasattr(self, "layout_actions") else None
        if action is not None:
            action.setChecked(True)
        if hasattr(self, "maximise_action"):
            self.maximise_action.setChecked(state.maximised is not None)
        if remember and self.remember_layout:
            self.settings.save_layout_state(state)
        self.layout_changed.emit(state.layout)

    def fit_views(self) -> None:
        """Fit the image into every slice view (undo pan and zoom)."""
        for view in self.slice_views.values():
            view.reset_view()

    def reset_views(self) -> None:
        """Cursor to the volume centre, images fitted, 3D camera reset."""
        self.centre_cursor()
        self.fit_views()
        self.view3d.reset_camera()

    def set_tool_widget(self, widget: QWidget | None, title: str = "") -> None:
        """Show a tool's controls in the Tool dock (None clears it) and bring the dock up."""
        self.tool_panel.set_tool_widget(widget, title)
        self.tool_dock.setWindowTitle(title or "Tool")
        if widget is not None:
            self.tool_dock.show()
            self.tool_dock.raise_()

    def set_linear_interpolation(self, linear: bool) -> None:
        for view in self.slice_views.values():
            view.set_interpolation(linear)
        self.interpolation_action.setChecked(bool(linear))
        self.settings.save_linear_interpolation(linear)

    def render_all(self) -> None:
        """Render every visible view now (screenshots, tests)."""
        self.flush_linked_views()
        for view in self.slice_views.values():
            view.render_now()
        self.view3d.render_now()

    # -- docks ---------------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        self.data_panel = DataPanel(self)
        self.data_dock = self._dock("Data", "dataDock", self.data_panel, left)
        self.segment_panel = SegmentPanel(self)
        self.segment_dock = self._dock("Segments", "segmentDock", self.segment_panel, left)
        self.splitDockWidget(self.data_dock, self.segment_dock, Qt.Orientation.Vertical)
        self.tool_panel = ToolPanel(self)
        self.tool_dock = self._dock("Tool", "toolDock", self.tool_panel, left)
        self.tabifyDockWidget(self.data_dock, self.tool_dock)
        self.data_dock.raise_()
        self.resizeDocks([self.data_dock, self.segment_dock], [380, 420], Qt.Orientation.Vertical)
        self.resizeDocks([self.data_dock], [300], Qt.Orientation.Horizontal)
        for dock in (self.data_dock, self.segment_dock, self.tool_dock):
            dock.setMinimumWidth(280)

    # -- actions and menus ---------------------------------------------------------------
    def _action(
        self,
        text: str,
        slot: Callable,
        icon: str | None = None,
        shortcut: QKeySequence | str | None = None,
        tip: str = "",
        checkable: bool = False,
    ) -> QAction:
        action = QAction(text, self)
        if icon:
            action.setIcon(theme.icon(icon))
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        hint = tip or text.replace("...", "").replace("&", "")
        if shortcut:
            hint += f" ({action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)})"
        action.setToolTip(hint)
        action.setStatusTip(tip or hint)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.open_file_action = self._action(
            "&Open File...", self._ask_open_file, "mdi6.folder-open", QKeySequence.StandardKey.Open,
            "Open an image file (NIfTI, NRRD, MetaImage, DICOM, PNG/JPEG/TIFF)",
        )
        self.open_dicom_action = self._action(
            "Open &DICOM Folder...", self._ask_open_dicom_folder, "mdi6.folder-multiple-image", "Ctrl+D",
            "Open a folder of DICOM files (choose a series when there are several)",
        )
        self.open_demo_action = self._action(
            "Open Demo &Case", self.open_demo, "mdi6.human", "Ctrl+Shift+D",
            "Open the built-in synthetic abdominal CT with its segments",
        )
        self.load_labels_action = self._action(
            "Load &Label Map...", self._ask_load_labels, "mdi6.layers-outline", "Ctrl+L",
            "Load a label map on the current volume's grid",
        )
        self.close_volume_action = self._action(
            "&Close Volume", self.close_active_volume, "mdi6.close-box-outline", QKeySequence.StandardKey.Close,
            "Close the volume shown in the views",
        )
        self.quit_action = self._action("&Quit", self.request_close, "mdi6.exit-to-app", QKeySequence.StandardKey.Quit, "Quit medviewer")
        self.fit_views_action = self._action(
            "&Fit to Window", self.fit_views, "mdi6.fit-to-screen-outline", "Ctrl+0",
            "Fit the image to each slice view (undo pan and zoom)",
        )
        self.reset_views_action = self._action(
            "Reset &Views", self.reset_views, "mdi6.restore", "Ctrl+Shift+R",
            "Centre the cursor in the volume, fit the slice views and reset the 3D camera",
        )
        self.reset_window_action = self._action(
            "&Reset Window/Level", self.reset_window_level, "mdi6.contrast-box", "Ctrl+R",
            "Back to the volume's default window/level",
        )
        self.show_labels_action = self._action(
            "Show &Label Overlay", self._set_labels_visible, "mdi6.layers", "Ctrl+T",
            "Show or hide the label overlay in the slice views", checkable=True,
        )
        self.show_labels_action.setChecked(True)
        self.outline_action = self._action(
            "Label &Outline Only", self._set_outline_mode, "mdi6.vector-square", "Ctrl+Shift+O",
            "Draw only the outline of each segment in the slice views", checkable=True,
        )
        self.interpolation_action = self._action(
            "&Smooth Image (Linear Interpolation)", self.set_linear_interpolation, "mdi6.blur", "Ctrl+I",
            "Interpolate the scan linearly (smooth when zoomed); off: nearest neighbour. Labels are never interpolated",
            checkable=True,
        )
        self.crosshair_action = self._action(
            "Show &Crosshair", self._set_crosshair_visible, "mdi6.crosshairs", "Ctrl+Shift+X",
            "Show the linked cursor as coloured lines in the slice views", checkable=True,
        )
        self.crosshair_action.setChecked(True)
        self.centre_cursor_action = self._action(
            "C&entre Cursor", self.centre_cursor, "mdi6.crosshairs-gps", "Ctrl+Shift+C",
            "Move the cursor to the centre of the volume",
        )
        self.maximise_action = self._action(
            "&Maximise View", lambda: self.toggle_maximised(), "mdi6.arrow-expand", "Ctrl+M",
            "Maximise the view used last, or go back to the layout (double-click a view)", checkable=True,
        )
        self.layout_group = QActionGroup(self)
        self.layout_group.setExclusive(True)
        self.layout_actions: dict[str, QAction] = {}
        for name in LAYOUT_NAMES:
            action = self._action(
                LAYOUT_TITLES[name], lambda _=False, n=name: self.set_layout(n), LAYOUT_ICONS[name],
                LAYOUT_SHORTCUTS[name], f"Layout: {LAYOUT_TITLES[name]}", checkable=True,
            )
            self.layout_group.addAction(action)
            self.layout_actions[name] = action
        self.volume_rendering_action = self._action(
            "&Volume Rendering", self._set_volume_rendering, "mdi6.cube-scan", "Ctrl+Shift+V",
            "Show a volume rendering of the scan in the 3D view", checkable=True,
        )
        self.slice_planes_action = self._action(
            "Slice &Planes in 3D", self.view3d.set_slice_planes_visible, "mdi6.layers-outline", None,
            "Show the three slice planes in the 3D view", checkable=True,
        )
        self.slice_planes_action.setChecked(True)
        self.reset_camera_action = self._action(
            "Reset 3D &Camera", self.view3d.reset_camera, "mdi6.camera-retake-outline", "Ctrl+Shift+3",
            "Anterior view of the whole volume in the 3D view",
        )
        self.shortcuts_action = self._action(
            "&Keyboard and Mouse Shortcuts", self.show_shortcuts, "mdi6.keyboard-outline", "F1",
            "List every shortcut and mouse gesture",
        )
        self.about_action = self._action("&About medviewer", self._show_about, "mdi6.information-outline", None, "About medviewer")
        self.models_action = self._action(
            "&Models…", self.show_models_dialog, "mdi6.brain", None,
            "Choose each AI model's checkpoint file and see its SHA-256",
        )
        self._volume_actions = (
            self.load_labels_action, self.close_volume_action, self.fit_views_action, self.reset_views_action,
            self.reset_window_action, self.centre_cursor_action, self.volume_rendering_action,
        )

    def _build_menus(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu("&File")
        file_menu.addActions([self.open_file_action, self.open_dicom_action])
        self.recent_menu = QMenu("Open &Recent", self)
        self.recent_menu.setIcon(theme.icon("mdi6.history"))
        self.recent_menu.aboutToShow.connect(self._rebuild_recent_menu)
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.open_demo_action)
        file_menu.addSeparator()
        file_menu.addAction(self.load_labels_action)
        file_menu.addSeparator()
        file_menu.addAction(self.close_volume_action)
        file_menu.addAction(self.quit_action)
        self._rebuild_recent_menu()

        view_menu = menu_bar.addMenu("&View")
        layout_menu = view_menu.addMenu(theme.icon("mdi6.view-dashboard-outline"), "&Layout")
        layout_menu.addActions(list(self.layout_actions.values()))
        layout_menu.addSeparator()
        layout_menu.addAction(self.maximise_action)
        view_menu.addSeparator()
        view_menu.addActions([self.fit_views_action, self.reset_views_action, self.centre_cursor_action])
        view_menu.addSeparator()
        view_menu.addAction(self.reset_window_action)
        view_menu.addMenu(self.window_bar.presets_menu)
        view_menu.addAction(self.interpolation_action)
        view_menu.addSeparator()
        view_menu.addActions([self.show_labels_action, self.outline_action, self.crosshair_action])
        view_menu.addSeparator()
        view_3d_menu = view_menu.addMenu(theme.icon("mdi6.cube-outline"), "&3D View")
        view_3d_menu.addAction(self.volume_rendering_action)
        self.volume_rendering_presets_menu = view_3d_menu.addMenu("Volume Rendering &Preset")
        self.volume_rendering_presets_group = QActionGroup(self)
        for name in self.view3d.volume_rendering_presets():
            action = self.volume_rendering_presets_menu.addAction(name)
            action.setCheckable(True)
            action.setToolTip(f"Volume rendering transfer function: {name}")
            action.triggered.connect(lambda _=False, n=name: self.set_volume_rendering(True, n))
            self.volume_rendering_presets_group.addAction(action)
        view_3d_menu.addAction(self.slice_planes_action)
        view_3d_menu.addAction(self.reset_camera_action)
        view_menu.addSeparator()
        panels = view_menu.addMenu("&Panels")
        for dock in (self.data_dock, self.segment_dock, self.tool_dock):
            panels.addAction(dock.toggleViewAction())

        settings_menu = menu_bar.addMenu("&Settings")
        settings_menu.addAction(self.models_action)

        help_menu = menu_bar.addMenu("&Help")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(self.about_action)

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        toolbar.addActions([self.open_file_action, self.open_dicom_action, self.open_demo_action, self.load_labels_action])
        toolbar.addSeparator()
        layout_button = QToolButton(toolbar)
        layout_button.setIcon(theme.icon("mdi6.view-dashboard-outline"))
        layout_button.setToolTip("View layout (Ctrl+1 ... Ctrl+6; double-click a view to maximise it)")
        layout_menu = QMenu(layout_button)
        layout_menu.addActions(list(self.layout_actions.values()))
        layout_button.setMenu(layout_menu)
        layout_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.layout_button = layout_button
        toolbar.addWidget(layout_button)
        toolbar.addActions([self.fit_views_action, self.reset_views_action])
        toolbar.addSeparator()
        toolbar.addAction(self.reset_window_action)
        toolbar.addWidget(self.window_bar)
        toolbar.addSeparator()
        toolbar.addActions([self.show_labels_action, self.outline_action, self.crosshair_action])
        toolbar.addSeparator()
        toolbar.addAction(self.volume_rendering_action)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.readout_label = QLabel("", self)
        self.readout_label.setFont(mono)
        self.readout_label.setMinimumWidth(560)
        self.readout_label.setToolTip("Voxel index (i, j, k), LPS position and intensity under the mouse")
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setMaximumWidth(260)
        self.progress_bar.setMinimumWidth(200)
        self.progress_bar.setTextVisible(True)
        self.cancel_button = QToolButton(self)
        self.cancel_button.setIcon(theme.icon("mdi6.close-circle-outline"))
        self.cancel_button.setToolTip("Cancel loading")
        self.cancel_button.setAutoRaise(True)
        self.cancel_button.clicked.connect(self.cancel_job)
        status.addPermanentWidget(self.readout_label)
        status.addPermanentWidget(self.progress_bar)
        status.addPermanentWidget(self.cancel_button)
        self._show_progress(False)
        status.showMessage("Open a scan (Ctrl+O), a DICOM folder (Ctrl+D) or the demo case, or drop files here.")

    def _connect_views(self) -> None:
        for pane, view in self.slice_views.items():
            view.cursor_changed.connect(lambda point, v=view: self.set_cursor(point, source=v))
            view.window_level_changed.connect(lambda center, width, v=view: self.set_window_level(center, width, source=v))
            view.hover_sample.connect(lambda sample: self.readout_label.setText(format_cursor_readout(sample)))
            view.maximise_requested.connect(lambda p=pane: self.toggle_maximised(p))
            view.activated.connect(lambda p=pane: setattr(self, "_active_pane", p))
        self.view_layout.maximise_requested.connect(self.toggle_maximised)
        self.window_bar.window_entered.connect(self.set_window_level)
        self.data_panel.volume_chosen.connect(self._on_volume_chosen)
        self.data_panel.close_requested.connect(self.close_active_volume)
        self.segment_panel.label_opacity_changed.connect(self._set_label_opacity)
        self.segment_panel.outline_mode_changed.connect(self._set_outline_mode)
        # The 3D view has its own header toggles; keep the menu and toolbar in step with them.
        for name, signal_name in (("volume_button", "toggled"), ("planes_button", "toggled"), ("preset_combo", "currentTextChanged")):
            widget = getattr(self.view3d, name, None)
            if widget is not None:
                getattr(widget, signal_name).connect(lambda *_: self._sync_3d_actions())

    def _connect_document(self) -> None:
        document = self.document
        self._document_bridges = [
            EventBridge(document.active_volume_changed, self._on_active_volume_changed, self),
            EventBridge(document.volume_added, self._on_volume_list_changed, self),
            EventBridge(document.volume_removed, self._on_volume_removed, self),
        ]

    # -- display toggles -----------------------------------------------------------------
    def _set_labels_visible(self, visible: bool) -> None:
        for view in self.slice_views.values():
            view.set_labels_visible(visible)
        self.show_labels_action.setChecked(bool(visible))

    def _set_label_opacity(self, alpha: float) -> None:
        for view in self.slice_views.values():
            view.set_label_opacity(alpha)

    def _set_outline_mode(self, outline: bool) -> None:
        for view in self.slice_views.values():
            view.set_outline_mode(outline)
        self.outline_action.setChecked(bool(outline))
        self.segment_panel.set_outline_mode(outline)

    def _set_crosshair_visible(self, visible: bool) -> None:
        for view in self.slice_views.values():
            view.set_crosshair_visible(visible)

    def _set_volume_rendering(self, enabled: bool) -> None:
        self.set_volume_rendering(enabled)

    def set_volume_rendering(self, enabled: bool, preset: str | None = None) -> None:
        """Volume rendering in the 3D view on or off, optionally with a preset by name."""
        self.view3d.set_volume_rendering(enabled, preset)
        self._sync_3d_actions()

    def _sync_3d_actions(self) -> None:
        scene = getattr(self.view3d, "scene", None)
        self.volume_rendering_action.setChecked(bool(getattr(scene, "volume_rendering_enabled", False)))
        self.slice_planes_action.setChecked(bool(getattr(scene, "planes_visible", True)))
        current = getattr(scene, "volume_rendering_preset", None)
        for action in self.volume_rendering_presets_group.actions():
            action.setChecked(action.text() == current)

    # -- document events -----------------------------------------------------------------
    def _on_active_volume_changed(self, volume: Volume | None) -> None:
        previous = self._shown_volume
        self._shown_volume = volume
        if volume is None:
            for view in self.slice_views.values():
                view.set_volume(None)
            self.view3d.set_segmentation(None, None)
            self.view3d.set_volume(None)
            self.segment_panel.set_segmentation(None, None)
            self.update_window_title()
        else:
            segmentation = self.document.segmentation(volume)
            keep_cursor = previous is not None and contains_point(volume.geometry, self._cursor)
            cursor = snap_cursor(volume.geometry, self._cursor) if keep_cursor else volume_centre(volume.geometry)
            self._cursor = cursor
            window = self._windows.get(id(volume))
            if window is None:
                preset = initial_window(volume)
                window = self._windows[id(volume)] = WindowLevel(preset.center, preset.width)
            for view in self.slice_views.values():
                view.set_volume(volume, segmentation.labelmap, segmentation.segments, cursor, window)
            self.view3d.set_volume(volume)
            self.view3d.set_segmentation(segmentation.labelmap, segmentation.segments)
            self.view3d.set_cursor(tuple(float(c) for c in cursor))
            self.view3d.set_window_level(window.center, window.width)
            self.segment_panel.set_segmentation(segmentation.labelmap, segmentation.segments)
            self.update_window_title()
            self.axial_view.vtk_widget.setFocus()
            if volume.shape[0] == 1 and self.view_layout.state.maximised is None and self.view_layout.state.layout != AXIAL:
                # A 2D picture has nothing to show in coronal, sagittal or 3D.
                self.apply_layout_state(LayoutState(self.view_layout.state.layout, AXIAL), remember=False)
        self._forget_closed_volumes()
        self.data_panel.set_volumes(self.document.volumes, volume)
        self.window_bar.set_volume(volume)
        if volume is not None:
            self.window_bar.show_window(self._windows[id(volume)])
            self.cursor_changed.emit(self._cursor.copy())
            self.window_level_changed.emit(self._windows[id(volume)].center, self._windows[id(volume)].width)
        for action in self._volume_actions:
            action.setEnabled(volume is not None)

    def _forget_closed_volumes(self) -> None:
        open_ids = {id(v) for v in self.document.volumes}
        for key in [k for k in self._windows if k not in open_ids]:
            del self._windows[key]

    def _on_volume_list_changed(self, *_args) -> None:
        self.data_panel.set_volumes(self.document.volumes, self.document.active_volume)

    def _on_volume_removed(self, *_args) -> None:
        self._on_volume_list_changed()
        # A volume open when objects were frozen (gc_control) is reclaimed by a full
        # collection, once the views have let go of it.
        QTimer.singleShot(0, gc_control.collect_and_freeze)

    def _on_volume_chosen(self, index: int) -> None:
        if 0 <= index < len(self.document.volumes):
            self.document.set_active_volume(self.document.volumes[index])

    # -- loading -------------------------------------------------------------------------
    def _start_job(self, description: str, function, on_success, on_error) -> BackgroundJob:
        self.cancel_job()
        job = BackgroundJob(function, description)
        job.signals.progress.connect(lambda done, total, message: self._on_job_progress(job, done, total, message))
        job.signals.succeeded.connect(lambda result: self._deliver(job, on_success, result))
        job.signals.failed.connect(lambda exc: self._deliver(job, on_error, exc))
        job.signals.cancelled.connect(
            lambda: self._deliver(job, lambda _: self.statusBar().showMessage("Loading cancelled", 4000), None)
        )
        job.signals.finished.connect(lambda: self._on_job_finished(job))
        self._job = job
        self._show_progress(True, description)
        self.busy_changed.emit(True)
        self._pool.start(job)
        return job

    def _is_current(self, job: BackgroundJob) -> bool:
        return job is self._job and not job.cancelled and not self._closed

    def _deliver(self, job: BackgroundJob, callback, payload) -> None:
        """Hand a finished job's outcome to its callback, unless the job was superseded."""
        if not self._is_current(job):
            return
        self._retire_job(job)  # first, so the callback may start the next job
        callback(payload)

    def _on_job_progress(self, job: BackgroundJob, done: int, total: int, message: str) -> None:
        if not self._is_current(job):
            return
        if total > 0:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(min(done, total))
        else:
            self.progress_bar.setRange(0, 0)  # busy indicator
        if message:
            self.progress_bar.setFormat(f"{message}  %p%" if total > 0 else message)
            self.progress_bar.setToolTip(message)

    def _on_job_finished(self, job: BackgroundJob) -> None:
        # Runs after succeeded/failed/cancelled (same sender, same order).
        self._retire_job(job)
        if job in self._finished_jobs:
            self._finished_jobs.remove(job)
        # Deleting the signal object drops its connections, and with them the callbacks
        # that reference this window (Qt holds those; Python's collector cannot see them).
        job.signals.deleteLater()

    def _retire_job(self, job: BackgroundJob) -> None:
        if job is self._job:
            self._job = None
            self._finished_jobs.append(job)  # keep its signals alive until ``finished``
            self._show_progress(False)
            self.busy_changed.emit(False)

    def _show_progress(self, visible: bool, description: str = "") -> None:
        self.progress_bar.setVisible(visible)
        self.cancel_button.setVisible(visible)
        if visible:
            self.progress_bar.setRange(0, 0)
            self.progress_bar.setFormat(description)
            self.progress_bar.setToolTip(description)

    def _on_volume_read(self, volume: Volume, path: str) -> None:
        if not volume.info.name:
            volume.info.name = Path(path).name or path
        self.settings.add_recent_file(path)
        self._activate_new_volume(volume, Path(path).name)
        if volume.info.warnings:
            self.statusBar().showMessage(f"Opened {volume.info.name} with warnings: " + "; ".join(volume.info.warnings), 15000)

    def _activate_new_volume(self, volume: Volume, what: str) -> None:
        self.document.add_volume(volume, make_active=True)
        nx, ny, nz = volume.geometry.size_xyz
        self.statusBar().showMessage(f"Opened {what}: {nx} x {ny} x {nz} {volume.info.modality}".rstrip(), 6000)
        self.volume_loaded.emit(volume)

    def _on_volume_error(self, exc: BaseException, path: str) -> None:
        if isinstance(exc, SeriesSelectionError) and exc.series:
            self._choose_series(path, exc.series)
            return
        message = self._describe_error(exc, path, "opening")
        self._report_error("Could not open the image", message)
        self.load_failed.emit(message)

    def _choose_series(self, path: str, series: list) -> None:
        if self.auto_select_first_series:
            self.open_path(path, series[0].key)
            return
        dialog = SeriesDialog(series, path, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._open_chosen_series(path, dialog.selected_key()))
        dialog.rejected.connect(lambda: self.statusBar().showMessage("No series opened", 4000))
        self._series_dialog = dialog
        self.statusBar().showMessage(f"{len(series)} series found; choose one to open")
        dialog.open()

    def _open_chosen_series(self, path: str, key: str | None) -> None:
        self._series_dialog = None
        if key is not None:
            self.open_path(path, key)

    def _on_labels_read(self, labelmap: LabelMap, volume: Volume, path: str) -> None:
        if volume not in self.document.volumes:
            return  # the volume was closed meanwhile
        self.editing.files.confirm_unsaved([volume], "Loading the label map replaces them.",
                                           lambda: self._attach_labels(labelmap, volume, path))

    def _attach_labels(self, labelmap: LabelMap, volume: Volume, path: str) -> None:
        if volume not in self.document.volumes:
            return
        try:
            self.document.set_labels(volume, labelmap)
            self.document.mark_saved(volume)  # the labels are those of the file just read
        except (GridMismatchError, ValueError) as exc:
            self._on_labels_error(MedViewerIOError(str(exc), path), path)
            return
        labels = labelmap.labels_present()
        self.statusBar().showMessage(f"Loaded label map {Path(path).name}: {len(labels)} labels", 6000)
        self.labels_loaded.emit(labelmap)

    def _on_labels_error(self, exc: BaseException, path: str) -> None:
        message = self._describe_error(exc, path, "loading the label map")
        self._report_error("Could not load the label map", message)
        self.load_failed.emit(message)

    @staticmethod
    def _describe_error(exc: BaseException, path: str, doing: str) -> str:
        if isinstance(exc, MedViewerIOError):
            text = str(exc)
            return text if (exc.path or path in text) else f"{path}: {text}"
        log.error("unexpected error while %s %s:\n%s", doing, path,
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return f"{path}: unexpected error while {doing} ({type(exc).__name__}: {exc})"

    def _report_error(self, title: str, message: str) -> None:
        """Non-blocking message box plus a status line; the app keeps running."""
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        if self._closed:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.last_message_box = box
        box.destroyed.connect(lambda *_: setattr(self, "last_message_box", None))
        box.open()

    # -- file dialogs and recent files -----------------------------------------------------
    def _ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILE_FILTER)
        if path:
            self.open_path(path)

    def _ask_open_dicom_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if path:
            self.open_path(path)

    def _ask_load_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load label map", "", LABEL_FILE_FILTER)
        if path:
            self.load_labels(path)

    def _rebuild_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        files = self.settings.recent_files()
        for number, path in enumerate(files, start=1):
            text = f"&{number % 10} {Path(path).name or path}" if number <= 10 else Path(path).name
            action = menu.addAction(text)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.setData(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if not files:
            empty = menu.addAction("No recent files")
            empty.setEnabled(False)
        menu.addSeparator()
        clear = menu.addAction(theme.icon("mdi6.delete-outline"), "Clear Recent Files")
        clear.setEnabled(bool(files))
        clear.triggered.connect(self.settings.clear_recent_files)

    # -- help ------------------------------------------------------------------------------
    def show_shortcuts(self) -> ShortcutsDialog:
        actions = [a for a in self.findChildren(QAction) if a.parent() is self]
        sections = [
            ("Keyboard (window)", action_shortcut_rows(actions)),
            ("Slice views", [(what, gesture) for gesture, what in SLICE_VIEW_GESTURES]),
            ("3D view", [(what, gesture) for gesture, what in VIEW_3D_GESTURES]),
        ]
        dialog = ShortcutsDialog(sections, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda *_: setattr(self, "shortcuts_dialog", None))
        self.shortcuts_dialog = dialog
        dialog.open()
        return dialog

    def show_models_dialog(self):
        """Settings > Models (opened on demand: nothing is hashed until the user looks)."""
        from medviewer.ui.models_dialog import show_models_dialog

        return show_models_dialog(self)

    def _show_about(self) -> None:
        from medviewer.ui.about_dialog import AboutDialog

        dialog = AboutDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.about_dialog = dialog  # tests look at the open dialog
        dialog.open()

    # -- drag and drop ---------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        target = choose_drop_target(paths)
        if target is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.open_path(str(target))

    # -- shutdown --------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        editing = getattr(self, "editing", None)
        if not self._closed and editing is not None and not editing.files.allow_close(event):
            event.ignore()  # the user cancelled, or the window closes once its sessions are saved
            return
        if not self._closed:
            self._closed = True
            if self._job is not None:
                self._job.cancel()
            self._pool.waitForDone(5000)
            for job in [self._job, *self._finished_jobs]:
                if job is not None:
                    job.signals.deleteLater()
            self._job = None
            self._finished_jobs.clear()
            for bridge in self._document_bridges:
                bridge.detach()
            self.editing.shutdown()
            self.segment_panel.shutdown()
            self.view_layout.release()
            for view in self.slice_views.values():
                view.shutdown()
            self.view3d.shutdown()
            self.settings.sync()
        super().closeEvent(event)
