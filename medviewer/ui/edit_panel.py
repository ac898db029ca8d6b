"""Manual segmentation editing in the main window: the Edit panel, undo/redo, files, autosave.

:func:`install_editing` builds one :class:`EditingController` for a :class:`MainWindow`. It
keeps one :class:`SegmentEditor` per volume (sharing the document's history), mirrors the
panel's settings into a single :class:`EditPolicy`, puts the brush into the slice views,
shows tool previews (threshold, fill between slices) as a yellow overlay layer, adds the
Edit menu (Undo / Redo) and the File menu's export / import / session entries, and runs
the crash-recovery autosave.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import shiboken6
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSlider,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from vtkmodules.vtkCommonCore import vtkLookupTable

from medviewer.model.editing import EditMode, EditPolicy, EditRefused, SegmentEditor
from medviewer.model.events import Box
from medviewer.render.slice_renderer import LABEL_LAYER_OFFSET, _ResliceLayer
from medviewer.render.vtk_arrays import SharedImage
from medviewer.tools.base import Preview
from medviewer.tools.brush import BrushShape, BrushTool
from medviewer.tools.interpolate import FillBetweenSlicesTool
from medviewer.tools.islands import FloodFillTool, IslandsTool
from medviewer.tools.logical import LogicalTool
from medviewer.tools.morphology import MorphologyTool, SmoothingMethod
from medviewer.tools.threshold import ThresholdTool
from medviewer.ui import theme
from medviewer.ui.edit_tools import BrushViewTool, PickViewTool
from medviewer.ui.event_bridge import EventBridge
from medviewer.ui.file_jobs import FileJobs

log = logging.getLogger(__name__)

TOOLS = ("paint", "erase", "flood fill", "threshold", "islands", "fill holes", "smooth", "margin", "logical",
         "fill between")
TOOL_TITLES = {
    "paint": "Paint", "erase": "Erase", "flood fill": "Flood fill", "threshold": "Threshold", "islands": "Islands", "fill holes": "Fill holes",
    "smooth": "Smooth", "margin": "Margin", "logical": "Logical", "fill between": "Fill between slices",
}
PREVIEW_COLOR = (1.0, 0.9, 0.1, 1.0)
PREVIEW_OPACITY = 0.55

#: Autosave recovery files written by windows of this process that are still open.
_LIVE_AUTOSAVES: set[Path] = set()


# -- preview overlay ---------------------------------------------------------------------------
class PreviewOverlay:
    """A yellow layer in one slice view showing a volume-sized 0/1 mask (a tool's preview)."""

    def __init__(self, view):
        self.view = view
        self.layer: _ResliceLayer | None = None
        self._position: float | None = None
        self._observer = None
        self.mask: np.ndarray | None = None

    def _build(self) -> _ResliceLayer:
        layer = _ResliceLayer(nearest_only=True)
        table = vtkLookupTable()
        table.SetNumberOfTableValues(2)
        table.SetTableRange(-0.5, 1.5)
        table.SetTableValue(0, 0.0, 0.0, 0.0, 0.0)
        table.SetTableValue(1, *PREVIEW_COLOR)
        table.Build()
        layer.property.SetLookupTable(table)
        layer.property.SetUseLookupTableScalarRange(True)
        layer.property.SetOpacity(PREVIEW_OPACITY)
        layer.actor.SetPosition(0.0, 0.0, -2 * LABEL_LAYER_OFFSET)
        renderer = self.view.slice_renderer.renderer
        renderer.AddViewProp(layer.actor)
        self._observer = renderer.AddObserver("StartEvent", lambda *_: self._follow_slice())
        return layer

    def _follow_slice(self) -> None:
        renderer = self.view.slice_renderer
        if self.layer is None or self.mask is None or renderer.plan is None:
            return
        if self._position is None or abs(renderer.slice_position - self._position) > 1e-9:
            self._position = renderer.slice_position
            self.layer.set_matrix(renderer.plan.reslice_matrix(self._position))

    def show(self, mask: np.ndarray | None) -> None:
        renderer = self.view.slice_renderer
        if mask is None or renderer.plan is None or self.view.volume is None:
            self.mask = None
            if self.layer is not None:
                self.layer.actor.VisibilityOff()
                self.layer.attach(None)
            self.view.request_render()
            return
        if self.layer is None:
            self.layer = self._build()
        self.mask = np.ascontiguousarray(mask, dtype=np.uint8)
        self.layer.attach(SharedImage(self.mask, self.view.volume.geometry.spacing), background=0)
        self.layer.set_sampling(renderer.plan)
        self._position = None
        self._follow_slice()
        self.layer.actor.VisibilityOn()
        self.view.request_render()

    def release(self) -> None:
        if self.layer is not None:
            renderer = self.view.slice_renderer.renderer
            if self._observer is not None:
                renderer.RemoveObserver(self._observer)
            renderer.RemoveViewProp(self.layer.actor)
            self.layer.attach(None)
            self.layer = None
        self.mask = None


# -- the controller -----------------------------------------------------------------------------
class EditingController(QObject):
    """Editing state of one main window (see module docstring)."""

    tool_activated = Signal(str)  # tool name, "" when none
    message = Signal(str)  # user-facing feedback (refusals, results)

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.document = window.document
        self.policy = EditPolicy()
        self.brush_radius_mm = 5.0
        self.brush_shape = BrushShape.CIRCLE
        self._editors: dict[int, SegmentEditor] = {}
        self.editor: SegmentEditor | None = None
        self.brush: BrushTool | None = None
        self.brush_view_tool = BrushViewTool(self)
        self.flood_view_tool = PickViewTool(self.flood_fill, "Click a region to fill it with the selected segment")
        self.island_view_tool = PickViewTool(self.pick_island, "Click an island of the selected segment")
        self.tool = ""
        self.preview: Preview | None = None
        self.autosaver = None
        self.recovery_box: QMessageBox | None = None
        self.recoverable = []
        self.export_dialog = None
        self.files = FileJobs(window, self)  # export / import / sessions on worker threads
        self._history_bridge: EventBridge | None = None
        self._bridges: list[EventBridge] = []
        self._shut_down = False
        self.overlays = {name: PreviewOverlay(view) for name, view in window.slice_views.items()}

        self._panel: EditPanel | None = None
        self._build_actions()
        self.segment_panel = window.segment_panel
        self.segment_panel.active_segment_changed.connect(self._on_active_segment)
        self.segment_panel.message.connect(self._show_message)
        self.message.connect(self._show_message)
        self._bridges.append(EventBridge(self.document.active_volume_changed, self._on_active_volume, self))
        self._on_active_volume(self.document.active_volume)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(30_000)
        self._autosave_timer.timeout.connect(lambda: self.autosaver is not None and self.autosaver.tick())
        self._autosave_timer.start()

    # -- actions and menus ----------------------------------------------------------------
    def _build_actions(self) -> None:
        w = self.window
        self.undo_action = w._action("&Undo", self.undo, "mdi6.undo", QKeySequence.StandardKey.Undo, "Undo the last edit")
        self.redo_action = w._action("&Redo", self.redo, "mdi6.redo", "Ctrl+Shift+Z", "Redo the last undone edit")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.grow_action = w._action("Larger Brush", self.grow_brush, None, "]", "Make the brush larger")
        self.shrink_action = w._action("Smaller Brush", self.shrink_brush, None, "[", "Make the brush smaller")
        self.edit_panel_action = w._action("Show Edit &Tools", self.show_panel, "mdi6.brush", "Ctrl+E",
                                           "Show the segmentation editing tools")
        self.export_action = w._action("&Export Segmentation...", self.show_export_dialog, "mdi6.export", "Ctrl+Shift+E",
                                       "Write the segmentation (NIfTI, NRRD, Slicer, DICOM SEG, meshes, CSV, provenance)")
        self.import_action = w._action("&Import Segmentation...", self._ask_import, "mdi6.import", "Ctrl+Shift+I",
                                       "Add segments from a label map, .seg.nrrd or DICOM SEG file")
        self.save_session_action = w._action("&Save Session...", self._ask_save_session, "mdi6.content-save", "Ctrl+S",
                                             "Save the segmentation, segments and view in a session file")
        self.open_session_action = w._action("Open Sessio&n...", self._ask_open_session, "mdi6.folder-open-outline", None,
                                             "Open a session file and its scan")
        for action in (self.undo_action, self.redo_action, self.grow_action, self.shrink_action):
            w.addAction(action)
        self.volume_actions = [self.export_action, self.import_action, self.save_session_action, self.edit_panel_action]

        bar = w.menuBar()
        menus = [a.menu() for a in bar.actions() if a.menu() is not None]
        file_menu = menus[0] if menus else bar.addMenu("&File")
        anchor = next((a for a in file_menu.actions() if a is getattr(w, "close_volume_action", None)), None)
        for action in (self.open_session_action, self.save_session_action, None,
                       self.import_action, self.export_action, None):
            if action is None:
                file_menu.insertSeparator(anchor) if anchor is not None else file_menu.addSeparator()
            elif anchor is not None:
                file_menu.insertAction(anchor, action)
            else:
                file_menu.addAction(action)
        from PySide6.QtWidgets import QMenu

        self.edit_menu = QMenu("&Edit", w)
        self.edit_menu.addActions([self.undo_action, self.redo_action])
        self.edit_menu.addSeparator()
        self.edit_menu.addActions([self.edit_panel_action, self.shrink_action, self.grow_action])
        second = bar.actions()[1] if len(bar.actions()) > 1 else None
        if second is not None:
            bar.insertMenu(second, self.edit_menu)
        else:
            bar.addMenu(self.edit_menu)

    @property
    def panel(self) -> EditPanel:
        """The Edit panel; rebuilt when the Tool dock deleted it for another tool's widget."""
        if self._panel is None or not shiboken6.isValid(self._panel):
            # Parented to the window so it dies with it (its signal connections would
            # otherwise keep the controller and the VTK views alive after the window).
            self._panel = EditPanel(self, self.window)
            self._panel.hide()
            self._panel.show_brush_radius(self.brush_radius_mm)
            if self.editor is not None:
                self._panel.volume_changed()
        return self._panel

    def show_panel(self) -> None:
        self.window.set_tool_widget(self.panel, "Edit")
        self.window.tool_dock.show()
        self.window.tool_dock.raise_()

    def _show_message(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 8000)
        if self._panel is not None and shiboken6.isValid(self._panel):
            self._panel.status.setText(text)

    def refused(self, text: str) -> None:
        self.message.emit(f"Edit refused: {text}")

    # -- volume / editor ------------------------------------------------------------------
    def _on_active_volume(self, volume) -> None:
        if self._shut_down:
            return
        self.clear_preview()
        if self._history_bridge is not None:
            self._history_bridge.detach()
            self._history_bridge.deleteLater()
            self._history_bridge = None
        if self.brush is not None and self.editor is not None and self.editor.in_stroke:
            self.editor.end_stroke()
        live = {id(v) for v in self.document.volumes}
        for key in [k for k in self._editors if k not in live]:
            del self._editors[key]
        if volume is None:
            self.editor = None
            self.brush = None
            self.segment_panel.set_editor(None)
        else:
            editor = self.editor_for(volume)
            editor.policy = self.policy
            self.editor = editor
            self.brush = BrushTool(editor, self.brush_radius_mm, self.brush_shape, erase=self.tool == "erase")
            self.brush_radius_mm = self.brush.radius_mm
            self._history_bridge = EventBridge(editor.history.changed, self._on_history_changed, self)
            self.segment_panel.set_editor(editor)
            if self.policy.active_label not in editor.segments:
                self.policy.active_label = next(iter(editor.segments.labels()), None)
            self.segment_panel.select_label(self.policy.active_label)
        for action in self.volume_actions:
            action.setEnabled(volume is not None)
        self._update_undo_actions()
        if self._panel is not None and shiboken6.isValid(self._panel):
            self._panel.volume_changed()

    def editor_for(self, volume) -> SegmentEditor:
        """The editor of ``volume`` (shares the document's history), created on first use."""
        editor = self._editors.get(id(volume))
        if editor is None:
            editor = SegmentEditor.for_document(self.document, volume)
            editor.policy = self.policy
            self._editors[id(volume)] = editor
        return editor

    def _on_active_segment(self, label) -> None:
        self.policy.active_label = label
        if self.tool == "threshold":
            self.panel.update_threshold_preview()

    def sync_policy(self) -> None:
        """Copy the panel's restrictions into the policy (called before every edit)."""
        self.panel.apply_to_policy(self.policy)
        selected = self.segment_panel.current_label()
        if selected is not None:
            self.policy.active_label = selected

    # -- undo / redo -----------------------------------------------------------------------
    def _on_history_changed(self, *_args) -> None:
        self._update_undo_actions()
        if self.editor is not None and self.editor.history.can_undo:
            self._autosave()

    def _update_undo_actions(self) -> None:
        history = self.editor.history if self.editor is not None else None
        can_undo = bool(history is not None and history.can_undo)
        can_redo = bool(history is not None and history.can_redo)
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.undo_action.setText(f"&Undo {history.undo_text}" if can_undo and history.undo_text else "&Undo")
        self.redo_action.setText(f"&Redo {history.redo_text}" if can_redo and history.redo_text else "&Redo")

    def undo(self) -> None:
        if self.editor is None or self.brush_view_tool.painting:
            return
        self.clear_preview()
        command = self.editor.undo()
        if command is not None:
            self.message.emit(f"Undone: {getattr(command, 'description', '')}")
        self.segment_panel.select_label(self.policy.active_label)

    def redo(self) -> None:
        if self.editor is None or self.brush_view_tool.painting:
            return
        self.clear_preview()
        command = self.editor.redo()
        if command is not None:
            self.message.emit(f"Redone: {getattr(command, 'description', '')}")
        self.segment_panel.select_label(self.policy.active_label)

    # -- tools -------------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        """Activate a tool by name (see :data:`TOOLS`), or "" for none."""
        if name and name not in TOOLS:
            raise ValueError(f"unknown tool {name!r}")
        self.clear_preview()
        self.tool = name
        view_tool = None
        if name in ("paint", "erase"):
            if self.brush is not None:
                self.brush.erase = name == "erase"
            view_tool = self.brush_view_tool
        elif name == "flood fill":
            view_tool = self.flood_view_tool
        elif name == "islands":
            view_tool = self.island_view_tool
        for view in self.window.slice_views.values():
            if view.view_tool is not None and view.view_tool is not view_tool:
                view.view_tool.deactivate()
            view.view_tool = view_tool
        if view_tool is not None:
            view_tool.activate()
            self.window.statusBar().showMessage(view_tool.hint, 5000)
        self.panel.tool_changed(name)
        if name == "threshold":
            self.panel.update_threshold_preview()
        self.tool_activated.emit(name)

    def set_brush_radius(self, radius_mm: float) -> float:
        self.brush_radius_mm = float(radius_mm)
        if self.brush is not None:
            self.brush.radius_mm = radius_mm
            self.brush_radius_mm = self.brush.radius_mm
        for cursor in self.brush_view_tool.cursors.values():
            cursor.hide()  # redrawn at the new size on the next mouse move
        self.panel.show_brush_radius(self.brush_radius_mm)
        return self.brush_radius_mm

    def resize_brush(self, steps: float) -> float:
        if self.brush is None:
            return self.brush_radius_mm
        return self.set_brush_radius(self.brush.wheel(steps))

    def grow_brush(self) -> float:
        return self.resize_brush(1)

    def shrink_brush(self) -> float:
        return self.resize_brush(-1)

    def set_brush_shape(self, shape: BrushShape | str) -> None:
        self.brush_shape = BrushShape(shape)
        if self.brush is not None:
            self.brush.shape = self.brush_shape

    def run(self, description: str, function):
        """Run one tool operation with the current policy; refusals become messages."""
        if self.editor is None:
            self.message.emit("Open a scan first")
            return None
        self.sync_policy()
        try:
            result = function()
        except EditRefused as exc:
            self.refused(str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - a failing tool must not take the app down
            log.exception("%s failed", description)
            self.message.emit(f"{description} failed: {exc}")
            return None
        if result is None:
            self.message.emit(f"{description}: nothing changed")
        else:
            count = getattr(result, "voxels_changed", None)
            self.message.emit(f"{description}: {count} voxels changed" if count is not None else description)
        return result

    # -- previews --------------------------------------------------------------------------
    def show_preview(self, mask: np.ndarray | None) -> None:
        for overlay in self.overlays.values():
            overlay.show(mask)

    def show_tool_preview(self, preview: Preview | None) -> None:
        self.preview = preview
        if preview is None or self.editor is None:
            self.show_preview(None)
            return
        full = np.zeros(self.editor.labelmap.shape, dtype=np.uint8)
        full[preview.box.slices] = preview.mask
        self.show_preview(full)

    def clear_preview(self) -> None:
        self.preview = None
        if self._shut_down:
            return
        self.show_preview(None)

    def threshold_preview(self, low: float, high: float) -> None:
        if self.editor is None or self.editor.volume is None:
            return
        self.preview = None
        self.show_preview(ThresholdTool(self.editor).preview(low, high).mask)

    def apply_threshold(self, low: float, high: float):
        result = self.run("Threshold", lambda: ThresholdTool(self.editor).apply(low, high))
        self.clear_preview()
        return result

    def keep_largest_island(self):
        return self.run("Keep largest island", lambda: IslandsTool(self.editor).keep_largest())

    def remove_small_islands(self, min_mm3: float):
        return self.run("Remove small islands", lambda: IslandsTool(self.editor).remove_small(min_mm3))

    def flood_fill(self, point_lps, plane=None):
        """Fill the connected region under a click (on the clicked slice, or in 3D)."""
        tolerance = self.panel.flood_tolerance.value() if self.panel.flood_tolerance.value() > 0 else None
        plane = plane if self.panel.flood_in_slice.isChecked() else None
        return self.run("Flood fill", lambda: FloodFillTool(self.editor, tolerance).fill(point_lps, plane))

    def pick_island(self, point_lps, plane=None):
        """Keep or remove the island under a click (the Islands page says which); False: not picking."""
        action = self.panel.island_click.currentData()
        if not action:
            return False
        tool = IslandsTool(self.editor) if self.editor is not None else None
        if action == "keep":
            return self.run("Keep selected island", lambda: tool.keep_selected(point_lps))
        return self.run("Remove selected island", lambda: tool.remove_selected(point_lps))

    def fill_holes(self):
        return self.run("Fill holes", lambda: MorphologyTool(self.editor).fill_holes())

    def smooth(self, method: str, kernel_mm: float):
        return self.run("Smooth", lambda: MorphologyTool(self.editor).smooth(SmoothingMethod(method), kernel_mm))

    def margin(self, margin_mm: float):
        return self.run("Margin", lambda: MorphologyTool(self.editor).margin(margin_mm))

    def logical(self, operation: str, operand: int):
        return self.run(f"Logical {operation}", lambda: LogicalTool(self.editor).run(operation, operand))

    def preview_fill_between(self, axis: int = 0) -> Preview | None:
        if self.editor is None:
            return None
        self.sync_policy()
        try:
            preview = FillBetweenSlicesTool(self.editor, axis).preview()
        except EditRefused as exc:
            self.refused(str(exc))
            return None
        if preview is None:
            self.message.emit("Fill between slices: draw the segment on at least two separated slices first")
        else:
            self.message.emit(f"Fill between slices: {preview.voxels} voxels previewed; Accept or Cancel")
        self.show_tool_preview(preview)
        return preview

    def accept_fill_between(self):
        preview = self.preview
        if preview is None or self.editor is None:
            return None
        result = self.run("Fill between slices", lambda: FillBetweenSlicesTool(self.editor).accept(preview))
        self.clear_preview()
        return result

    # -- files ----------------------------------------------------------------------------------
    def show_export_dialog(self):
        from medviewer.ui.export_dialog import ExportDialog

        if self.editor is None:
            self.message.emit("Open a scan first")
            return None
        if self.export_dialog is None:
            self.export_dialog = ExportDialog(self, self.window)
        self.export_dialog.show()
        self.export_dialog.raise_()
        return self.export_dialog

    def export(self, path, fmt: str | None = None, overwrite: bool = False, **options):
        """Write the active segmentation in the background; returns the job (see :class:`FileJobs`)."""
        return self.files.export(path, fmt, overwrite, **options)

    def import_segmentation(self, path):
        """Add the segments of a label map / .seg.nrrd / DICOM SEG file (one undo step), in the background."""
        return self.files.import_segmentation(path)

    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Import segmentation", "",
            "Segmentations (*.seg.nrrd *.nii *.nii.gz *.nrrd *.mha *.mhd *.dcm *.mvsession);;All files (*)",
        )
        if path:
            self.import_segmentation(path)

    def snapshot(self, volume=None):
        """The session state of ``volume`` (default: the active one), copied so later edits cannot change it."""
        from medviewer.io.session import capture_session

        volume = volume if volume is not None else self.document.active_volume
        segmentation = self.document.segmentation(volume)
        view_state = {"cursor": [float(c) for c in self.window.cursor_point]}
        active_label = self.policy.active_label if volume is self.document.active_volume else None
        return capture_session(volume, segmentation.labelmap, segmentation.segments, active_label,
                               view_state, edit_count=segmentation.history.undo_count)

    def save_session(self, path):
        """Save the active segmentation as a session in the background; returns the job."""
        return self.files.save_session(path)

    def open_session(self, path, recovered: bool = False, on_done=None):
        """Open a session in the background (onto the shown scan when on its grid); returns the job."""
        return self.files.open_session(path, recovered, on_done)

    def session_restored(self, volume, state) -> None:
        """Select the session's active segment once its labels are in place."""
        if volume is self.document.active_volume and state.active_label in self.document.segmentation(volume).segments:
            self.policy.active_label = state.active_label
            self.segment_panel.select_label(state.active_label)

    def _ask_save_session(self) -> None:
        volume = self.document.active_volume
        start = (self.document.segmentation(volume).session_path or "") if volume is not None else ""
        path, _ = QFileDialog.getSaveFileName(self.window, "Save session", start, "medviewer session (*.mvsession)")
        if path:
            self.save_session(path)

    def _ask_open_session(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open session", "", "medviewer session (*.mvsession)")
        if path:
            self.open_session(path)

    # -- autosave and recovery ------------------------------------------------------------------
    def _autosave(self) -> None:
        from medviewer.io.session import Autosaver

        if self.document.active_volume is None:
            return
        if self.autosaver is None:
            self.autosaver = Autosaver(self.snapshot, every_edits=1)
            _LIVE_AUTOSAVES.add(self.autosaver.path)
        try:
            self.autosaver.edit_committed()
        except Exception:  # noqa: BLE001 - autosave must never break editing
            log.exception("autosave snapshot failed")

    def abandon_autosave(self) -> None:
        """Stop autosaving but leave the file behind (what a crash does; for tests)."""
        if self.autosaver is not None:
            self.autosaver.close()
            _LIVE_AUTOSAVES.discard(self.autosaver.path)
            self.autosaver = None

    def find_recoverable(self):
        from medviewer.io.session import find_recoverable_sessions

        others = find_recoverable_sessions()
        mine = [s for s in find_recoverable_sessions(include_running=True)
                if s.pid == os.getpid() and s.path not in _LIVE_AUTOSAVES]
        found = {s.path: s for s in [*others, *mine]}
        return sorted(found.values(), key=lambda s: s.saved_at, reverse=True)

    def offer_recovery(self) -> QMessageBox | None:
        """Ask (non-blocking) whether to recover the newest autosave left by a crashed session."""
        if self._shut_down or self.window._closed:
            return None
        try:
            self.recoverable = self.find_recoverable()
        except Exception:  # noqa: BLE001
            log.exception("looking for autosaves failed")
            return None
        if not self.recoverable:
            return None
        session = self.recoverable[0]
        box = QMessageBox(QMessageBox.Icon.Question, "Recover unsaved work?",
                          f"medviewer found unsaved edits from a session that ended unexpectedly:\n\n"
                          f"Scan: {session.scan_name or session.scan_source}\nSaved: {session.saved_at}\n"
                          f"Segments: {session.segments}, edits: {session.edit_count}",
                          QMessageBox.StandardButton.NoButton, self.window)
        box.recover_button = box.addButton("Recover", QMessageBox.ButtonRole.AcceptRole)
        box.discard_button = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self._on_recovery_answer(session, button is box.recover_button))
        box.destroyed.connect(lambda *_: setattr(self, "recovery_box", None))
        self.recovery_box = box
        box.open()
        return box

    def _on_recovery_answer(self, session, recover: bool) -> None:
        from medviewer.io.session import discard_recovery

        if recover:
            # Keep the file when opening fails: the user may locate the scan later.
            self.open_session(session.path, recovered=True, on_done=lambda ok: ok and discard_recovery(session))
            return
        discard_recovery(session)

    # -- shutdown ---------------------------------------------------------------------------------
    def shutdown(self, clean: bool = True) -> None:
        """Window closing: stop timers, drop the overlays, delete the autosave on a clean exit."""
        if self._shut_down:
            return
        self.files.shutdown()  # waits for a running session save; cancels exports and imports
        self._autosave_timer.stop()
        for overlay in self.overlays.values():
            overlay.release()
            overlay.view = None
        self.overlays.clear()  # no Python reference may keep a VTK view alive after the window
        for view in self.window.slice_views.values():
            view.view_tool = None
        self.brush_view_tool.release()
        if self.export_dialog is not None:
            self.export_dialog.close()
        self._shut_down = True
        for bridge in [*self._bridges, *([self._history_bridge] if self._history_bridge else [])]:
            bridge.detach()
        self._bridges.clear()
        self._history_bridge = None
        if self.autosaver is not None:
            path = self.autosaver.path
            if clean:
                self.autosaver.discard()
            else:
                self.autosaver.close()
            _LIVE_AUTOSAVES.discard(path)
            self.autosaver = None


# -- the panel --------------------------------------------------------------------------------------
class EditPanel(QWidget):
    """Tool buttons plus the active tool's options; shown in the Tool dock."""

    def __init__(self, controller: EditingController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.buttons: dict[str, QToolButton] = {}
        group = QButtonGroup(self)
        group.setExclusive(False)
        grid = QGridLayout()
        grid.setSpacing(3)
        for index, name in enumerate(TOOLS):
            button = QToolButton(self)
            button.setText(TOOL_TITLES[name])
            button.setCheckable(True)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(button.sizePolicy().horizontalPolicy().Expanding, button.sizePolicy().verticalPolicy())
            button.clicked.connect(lambda checked, n=name: self.controller.set_tool(n if checked else ""))
            self.buttons[name] = button
            group.addButton(button)
            grid.addWidget(button, index // 3, index % 3)

        # Common settings: brush, edit mode, intensity restriction.
        self.radius_spin = QDoubleSpinBox(self)
        self.radius_spin.setRange(0.1, 250.0)
        self.radius_spin.setDecimals(1)
        self.radius_spin.setSuffix(" mm")
        self.radius_spin.setValue(controller.brush_radius_mm)
        self.radius_spin.setToolTip("Brush radius ([ and ] or Ctrl+wheel change it)")
        self.radius_spin.valueChanged.connect(self._on_radius)
        self.shape_combo = QComboBox(self)
        self.shape_combo.addItem("2D circle", BrushShape.CIRCLE.value)
        self.shape_combo.addItem("3D sphere", BrushShape.SPHERE.value)
        self.shape_combo.currentIndexChanged.connect(lambda _: controller.set_brush_shape(self.shape_combo.currentData()))
        self.mode_combo = QComboBox(self)
        self.mode_combo.addItem("Everywhere (except locked)", EditMode.EVERYWHERE.value)
        self.mode_combo.addItem("Only empty voxels", EditMode.EMPTY_ONLY.value)
        self.mode_combo.addItem("Only over visible segments", EditMode.VISIBLE_ONLY.value)
        self.mode_combo.setToolTip("Which voxels an edit may take over from other segments")
        self.range_check = QCheckBox("Only intensities", self)
        self.range_low = QDoubleSpinBox(self)
        self.range_high = QDoubleSpinBox(self)
        for spin, value in ((self.range_low, -100.0), (self.range_high, 300.0)):
            spin.setRange(-1e6, 1e6)
            spin.setDecimals(1)
            spin.setValue(value)
            spin.setEnabled(False)
        self.range_check.toggled.connect(self.range_low.setEnabled)
        self.range_check.toggled.connect(self.range_high.setEnabled)
        range_row = QHBoxLayout()
        range_row.addWidget(self.range_check)
        range_row.addWidget(self.range_low)
        range_row.addWidget(QLabel("to"))
        range_row.addWidget(self.range_high)
        common = QFormLayout()
        brush_row = QHBoxLayout()
        brush_row.addWidget(self.radius_spin)
        brush_row.addWidget(self.shape_combo)
        common.addRow("Brush", brush_row)
        common.addRow("Edit mode", self.mode_combo)
        common.addRow(range_row)
        common_box = QGroupBox("Settings", self)
        common_box.setLayout(common)

        self.stack = QStackedWidget(self)
        self.pages: dict[str, QWidget] = {}
        self._build_pages()

        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setStyleSheet(f"color: {theme.MUTED};")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(grid)
        layout.addWidget(common_box)
        layout.addWidget(self.stack)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.tool_changed("")

    # -- pages ---------------------------------------------------------------------------
    def _page(self, name: str) -> QFormLayout:
        page = QWidget(self)
        form = QFormLayout(page)
        form.setContentsMargins(0, 4, 0, 0)
        self.pages[name] = page
        self.stack.addWidget(page)
        return form

    def _build_pages(self) -> None:
        c = self.controller
        form = self._page("")
        form.addRow(QLabel("Choose a tool above. Select the segment to edit in the Segments list.", self))
        form = self._page("paint")
        form.addRow(QLabel("Left-drag paints the selected segment on the slice.\n"
                           "Right / middle drag zoom and pan; Ctrl+Z undoes a stroke.", self))
        form = self._page("erase")
        form.addRow(QLabel("Left-drag erases the selected segment.", self))

        form = self._page("flood fill")
        self.flood_tolerance = QDoubleSpinBox(self)
        self.flood_tolerance.setRange(0.0, 1e5)
        self.flood_tolerance.setValue(50.0)
        self.flood_tolerance.setToolTip("Intensity tolerance around the clicked voxel (0: fill the label region only)")
        self.flood_in_slice = QCheckBox("Only on the clicked slice", self)
        self.flood_in_slice.setChecked(True)
        form.addRow(QLabel("Click a region to fill it with the selected segment.", self))
        form.addRow("Tolerance", self.flood_tolerance)
        form.addRow(self.flood_in_slice)

        form = self._page("threshold")
        self.threshold_low = QDoubleSpinBox(self)
        self.threshold_high = QDoubleSpinBox(self)
        self.threshold_low_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.threshold_high_slider = QSlider(Qt.Orientation.Horizontal, self)
        for spin, slider in ((self.threshold_low, self.threshold_low_slider),
                             (self.threshold_high, self.threshold_high_slider)):
            spin.setRange(-1e6, 1e6)
            spin.setDecimals(1)
            spin.valueChanged.connect(self.update_threshold_preview)
            spin.valueChanged.connect(lambda v, s=slider: self._sync_slider(s, v))
            slider.valueChanged.connect(lambda v, s=spin: s.setValue(float(v)) if abs(s.value() - v) >= 1 else None)
        self.threshold_low.setValue(100.0)
        self.threshold_high.setValue(300.0)
        form.addRow("Low", self._pair(self.threshold_low, self.threshold_low_slider))
        form.addRow("High", self._pair(self.threshold_high, self.threshold_high_slider))
        self.threshold_apply = QPushButton("Apply", self)
        self.threshold_apply.clicked.connect(lambda: c.apply_threshold(self.threshold_low.value(), self.threshold_high.value()))
        form.addRow(self.threshold_apply)

        form = self._page("islands")
        self.keep_largest_button = QPushButton("Keep largest island", self)
        self.keep_largest_button.clicked.connect(c.keep_largest_island)
        self.min_island = QDoubleSpinBox(self)
        self.min_island.setRange(0.0, 1e7)
        self.min_island.setValue(100.0)
        self.min_island.setSuffix(" mm³")
        self.remove_small_button = QPushButton("Remove smaller", self)
        self.remove_small_button.clicked.connect(lambda: c.remove_small_islands(self.min_island.value()))
        self.island_click = QComboBox(self)
        self.island_click.addItem("does nothing", "")
        self.island_click.addItem("keeps that island", "keep")
        self.island_click.addItem("removes that island", "remove")
        form.addRow(self.keep_largest_button)
        form.addRow(self._pair(self.min_island, self.remove_small_button))
        form.addRow("A click in a view", self.island_click)

        form = self._page("fill holes")
        self.fill_holes_button = QPushButton("Fill holes", self)
        self.fill_holes_button.clicked.connect(c.fill_holes)
        form.addRow(self.fill_holes_button)

        form = self._page("smooth")
        self.smooth_method = QComboBox(self)
        for method in SmoothingMethod:
            self.smooth_method.addItem(str(method.value).replace("_", " "), method.value)
        self.smooth_kernel = QDoubleSpinBox(self)
        self.smooth_kernel.setRange(0.5, 50.0)
        self.smooth_kernel.setValue(3.0)
        self.smooth_kernel.setSuffix(" mm")
        self.smooth_button = QPushButton("Smooth", self)
        self.smooth_button.clicked.connect(lambda: c.smooth(self.smooth_method.currentData(), self.smooth_kernel.value()))
        form.addRow("Method", self.smooth_method)
        form.addRow("Kernel", self.smooth_kernel)
        form.addRow(self.smooth_button)

        form = self._page("margin")
        self.margin_spin = QDoubleSpinBox(self)
        self.margin_spin.setRange(-100.0, 100.0)
        self.margin_spin.setValue(2.0)
        self.margin_spin.setSuffix(" mm")
        self.margin_spin.setToolTip("Positive grows, negative shrinks")
        self.margin_button = QPushButton("Apply margin", self)
        self.margin_button.clicked.connect(lambda: c.margin(self.margin_spin.value()))
        form.addRow("Margin", self.margin_spin)
        form.addRow(self.margin_button)

        form = self._page("logical")
        self.logical_op = QComboBox(self)
        for text, value in (("Union (add)", "union"), ("Subtract", "subtract"), ("Intersect", "intersect")):
            self.logical_op.addItem(text, value)
        self.logical_operand = QComboBox(self)
        self.logical_button = QPushButton("Apply", self)
        self.logical_button.clicked.connect(self._run_logical)
        form.addRow("Operation", self.logical_op)
        form.addRow("With segment", self.logical_operand)
        form.addRow(self.logical_button)

        form = self._page("fill between")
        self.interp_axis = QComboBox(self)
        for text, axis in (("Axial slices", 0), ("Coronal slices", 1), ("Sagittal slices", 2)):
            self.interp_axis.addItem(text, axis)
        self.interp_preview = QPushButton("Preview", self)
        self.interp_accept = QPushButton("Accept", self)
        self.interp_cancel = QPushButton("Cancel", self)
        self.interp_preview.clicked.connect(lambda: self._after_preview(c.preview_fill_between(self.interp_axis.currentData())))
        self.interp_accept.clicked.connect(lambda: (c.accept_fill_between(), self._after_preview(None)))
        self.interp_cancel.clicked.connect(lambda: (c.clear_preview(), self._after_preview(None)))
        self.interp_accept.setEnabled(False)
        self.interp_cancel.setEnabled(False)
        form.addRow("Between", self.interp_axis)
        row = QHBoxLayout()
        for button in (self.interp_preview, self.interp_accept, self.interp_cancel):
            row.addWidget(button)
        form.addRow(row)

    def _pair(self, first: QWidget, second: QWidget) -> QWidget:
        holder = QWidget(self)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(first)
        row.addWidget(second, 1)
        return holder

    @staticmethod
    def _sync_slider(slider: QSlider, value: float) -> None:
        if slider.value() != round(value):
            slider.blockSignals(True)
            slider.setValue(round(value))
            slider.blockSignals(False)

    def _after_preview(self, preview) -> None:
        self.interp_accept.setEnabled(preview is not None)
        self.interp_cancel.setEnabled(preview is not None)

    def _run_logical(self) -> None:
        operand = self.logical_operand.currentData()
        if operand is None:
            self.controller.message.emit("Logical: choose another segment")
            return
        self.controller.logical(self.logical_op.currentData(), int(operand))

    # -- state ------------------------------------------------------------------------------
    def tool_changed(self, name: str) -> None:
        for tool, button in self.buttons.items():
            button.setChecked(tool == name)
        self.stack.setCurrentWidget(self.pages.get(name, self.pages[""]))
        if name == "logical":
            self._fill_operands()
        if name != "fill between":
            self._after_preview(None)

    def _fill_operands(self) -> None:
        self.logical_operand.clear()
        editor = self.controller.editor
        if editor is None:
            return
        for segment in editor.segments:
            if segment.label != self.controller.policy.active_label:
                self.logical_operand.addItem(segment.name, segment.label)

    def volume_changed(self) -> None:
        editor = self.controller.editor
        if editor is None or editor.volume is None:
            return
        low, high = float(np.min(editor.volume.array)), float(np.max(editor.volume.array))
        for slider in (self.threshold_low_slider, self.threshold_high_slider):
            slider.blockSignals(True)
            slider.setRange(int(np.floor(low)), int(np.ceil(high)))
            slider.blockSignals(False)
        self._sync_slider(self.threshold_low_slider, self.threshold_low.value())
        self._sync_slider(self.threshold_high_slider, self.threshold_high.value())

    def show_brush_radius(self, radius: float) -> None:
        if abs(self.radius_spin.value() - radius) > 0.05:
            self.radius_spin.blockSignals(True)
            self.radius_spin.setValue(radius)
            self.radius_spin.blockSignals(False)

    def _on_radius(self, value: float) -> None:
        self.controller.set_brush_radius(value)

    def apply_to_policy(self, policy: EditPolicy) -> None:
        policy.mode = EditMode(self.mode_combo.currentData())
        policy.intensity_range = (
            (min(self.range_low.value(), self.range_high.value()), max(self.range_low.value(), self.range_high.value()))
            if self.range_check.isChecked() else None
        )

    def update_threshold_preview(self, *_args) -> None:
        if self.controller.tool != "threshold":
            return
        self.controller.threshold_preview(self.threshold_low.value(), self.threshold_high.value())


def install_editing(window) -> EditingController:
    """Build the editing controller for ``window`` and offer crash recovery once the window is up."""
    controller = EditingController(window)
    if window.tool_panel.tool_widget is None:
        window.set_tool_widget(controller.panel, "Edit")
    QTimer.singleShot(0, controller, controller.offer_recovery)
    return controller


__all__ = ["EditingController", "EditPanel", "PreviewOverlay", "install_editing", "TOOLS", "Box"]
