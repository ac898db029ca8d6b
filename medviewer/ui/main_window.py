"""Main window: menus, toolbar, the axial view, the data panel and the status bar.

The window observes the :class:`~medviewer.model.Document` through Qt-side event bridges
and never blocks: files are read by :class:`~medviewer.ui.workers.BackgroundJob` on a
thread pool, with progress and a Cancel button in the status bar.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QThreadPool, QTimer, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QFontDatabase, QKeySequence
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

import medviewer
from medviewer.demo import make_demo_case
from medviewer.io import load_labels as read_label_map
from medviewer.io import load_volume
from medviewer.io.errors import MedViewerIOError, SeriesSelectionError
from medviewer.io.images import PICTURE_SUFFIXES, VOLUME_SUFFIXES, is_image_file
from medviewer.jobs import JobControl
from medviewer.model.document import Document
from medviewer.model.labelmap import GridMismatchError, LabelMap
from medviewer.model.volume import Volume
from medviewer.render.readout import format_cursor_readout
from medviewer.render.window_level import CT_WINDOW_PRESETS
from medviewer.ui import theme
from medviewer.ui.data_panel import DataPanel
from medviewer.ui.event_bridge import EventBridge
from medviewer.ui.series_dialog import SeriesDialog
from medviewer.ui.slice_view import SliceView
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

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        #: Non-interactive runs (screenshots) open the first series instead of asking.
        self.auto_select_first_series = False
        self._job: BackgroundJob | None = None
        self._finished_jobs: list[BackgroundJob] = []
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._series_dialog: SeriesDialog | None = None
        self.last_message_box: QMessageBox | None = None
        self._document_bridges: list[EventBridge] = []
        self._segment_bridge: EventBridge | None = None
        self._closed = False

        self.setWindowTitle("medviewer")
        self.setWindowIcon(theme.app_icon())
        self.setAcceptDrops(True)
        self.resize(1200, 800)

        self._slice_view = SliceView(self)
        self.setCentralWidget(self._slice_view)
        self.data_panel = DataPanel(self)
        dock = QDockWidget("Data", self)
        dock.setObjectName("dataDock")
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        dock.setWidget(self.data_panel)
        dock.setMinimumWidth(250)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.data_dock = dock

        self._segments_refresh = QTimer(self)
        self._segments_refresh.setSingleShot(True)
        self._segments_refresh.setInterval(0)
        self._segments_refresh.timeout.connect(self._refresh_segment_list)

        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect_view()
        self._connect_document()
        self._on_active_volume_changed(document.active_volume)

    # -- public API ----------------------------------------------------------------------
    @property
    def slice_view(self) -> SliceView:
        return self._slice_view

    @property
    def is_busy(self) -> bool:
        return self._job is not None

    def open_path(self, path: str | Path, series_key: str | None = None) -> None:
        """Load an image file, DICOM file or DICOM folder in the background.

        Emits ``volume_loaded`` on success and ``load_failed(message)`` on error; a folder
        with several series first asks which one to open.
        """
        path = str(path)
        name = Path(path).name or path

        def job(control: JobControl) -> Volume:
            return load_volume(path, series_key, control)

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
        if self.document.active_volume is not None:
            self.document.remove_volume(self.document.active_volume)

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
            "Close the volume shown in the view",
        )
        self.quit_action = self._action("&Quit", self.close, "mdi6.exit-to-app", QKeySequence.StandardKey.Quit, "Quit medviewer")
        self.reset_view_action = self._action(
            "&Fit to View", self._slice_view.reset_view, "mdi6.fit-to-screen-outline", "Ctrl+0",
            "Fit the image to the view (undo pan and zoom)",
        )
        self.reset_window_action = self._action(
            "&Reset Window/Level", self._slice_view.reset_window_level, "mdi6.contrast-box", "Ctrl+R",
            "Back to the volume's default window/level",
        )
        self.show_labels_action = self._action(
            "Show &Label Overlay", self._slice_view.set_labels_visible, "mdi6.layers", "Ctrl+T",
            "Show or hide the label overlay", checkable=True,
        )
        self.show_labels_action.setChecked(True)
        self.about_action = self._action("&About medviewer", self._show_about, "mdi6.information-outline", None, "About medviewer")
        self._volume_actions = (self.load_labels_action, self.close_volume_action, self.reset_view_action,
                                self.reset_window_action, self.show_labels_action)

    def _build_menus(self) -> None:
        menu_bar = self.menuBar()
        file_menu = menu_bar.addMenu("&File")
        file_menu.addActions([self.open_file_action, self.open_dicom_action, self.open_demo_action])
        file_menu.addSeparator()
        file_menu.addAction(self.load_labels_action)
        file_menu.addSeparator()
        file_menu.addAction(self.close_volume_action)
        file_menu.addAction(self.quit_action)
        view_menu = menu_bar.addMenu("&View")
        view_menu.addActions([self.reset_view_action, self.reset_window_action])
        self.window_presets_menu = QMenu("Window &Presets", self)
        self.window_presets_menu.setIcon(theme.icon("mdi6.tune-variant"))
        view_menu.addMenu(self.window_presets_menu)
        view_menu.addSeparator()
        view_menu.addAction(self.show_labels_action)
        view_menu.addAction(self.data_dock.toggleViewAction())
        help_menu = menu_bar.addMenu("&Help")
        help_menu.addAction(self.about_action)

    def _build_toolbar(self) -> None:
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        toolbar.addActions([self.open_file_action, self.open_dicom_action, self.open_demo_action, self.load_labels_action])
        toolbar.addSeparator()
        toolbar.addActions([self.reset_view_action, self.reset_window_action])
        presets_button = QToolButton(toolbar)
        presets_button.setIcon(theme.icon("mdi6.tune-variant"))
        presets_button.setToolTip("Window/level presets")
        presets_button.setMenu(self.window_presets_menu)
        presets_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.presets_button = presets_button
        toolbar.addWidget(presets_button)
        toolbar.addSeparator()
        toolbar.addAction(self.show_labels_action)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.readout_label = QLabel("", self)
        self.readout_label.setFont(mono)
        self.readout_label.setMinimumWidth(600)
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

    def _connect_view(self) -> None:
        view = self._slice_view
        view.cursor_moved.connect(lambda sample: self.readout_label.setText(format_cursor_readout(sample)))
        self.data_panel.volume_chosen.connect(self._on_volume_chosen)
        self.data_panel.label_opacity_changed.connect(view.set_label_opacity)

    def _connect_document(self) -> None:
        document = self.document
        self._document_bridges = [
            EventBridge(document.active_volume_changed, self._on_active_volume_changed, self),
            EventBridge(document.volume_added, self._on_volume_list_changed, self),
            EventBridge(document.volume_removed, self._on_volume_list_changed, self),
        ]

    # -- document events -----------------------------------------------------------------
    def _on_active_volume_changed(self, volume: Volume | None) -> None:
        if self._segment_bridge is not None:
            self._segment_bridge.detach()
            self._segment_bridge = None
        if volume is None:
            self._slice_view.set_volume(None)
            self.data_panel.show_segments(None)
            self.setWindowTitle("medviewer")
        else:
            segmentation = self.document.segmentation(volume)
            self._slice_view.set_volume(volume, segmentation.labelmap, segmentation.segments)
            self._segment_bridge = EventBridge(segmentation.segments.changed, lambda *_: self._segments_refresh.start(), self)
            self.data_panel.show_segments(segmentation.segments)
            self.setWindowTitle(f"{volume.info.name or 'Untitled'} — medviewer")
            self._slice_view.vtk_widget.setFocus()
        self.data_panel.set_volumes(self.document.volumes, volume)
        self._rebuild_window_presets(volume)
        for action in self._volume_actions:
            action.setEnabled(volume is not None)

    def _on_volume_list_changed(self, *_args) -> None:
        self.data_panel.set_volumes(self.document.volumes, self.document.active_volume)

    def _on_volume_chosen(self, index: int) -> None:
        if 0 <= index < len(self.document.volumes):
            self.document.set_active_volume(self.document.volumes[index])

    def _refresh_segment_list(self) -> None:
        if self.document.active_volume is not None:
            self.data_panel.show_segments(self.document.segmentation().segments)

    def _rebuild_window_presets(self, volume: Volume | None) -> None:
        menu = self.window_presets_menu
        menu.clear()
        if volume is None:
            menu.setEnabled(False)
            self.presets_button.setEnabled(False)
            return
        menu.setEnabled(True)
        self.presets_button.setEnabled(True)
        presets = [(p.name or "Scanner", p.center, p.width) for p in volume.info.window_presets]
        if volume.info.modality.upper() == "CT":
            known = {(c, w) for _, c, w in presets}
            presets += [p for p in CT_WINDOW_PRESETS if (p[1], p[2]) not in known]
        low, high = volume.percentiles(1.0, 99.0)
        if high > low:
            presets.append(("Auto (1–99 %)", (low + high) / 2.0, high - low))
        for name, center, width in presets:
            action = menu.addAction(f"{name}\tW {width:g}  L {center:g}")
            action.triggered.connect(lambda _=False, c=center, w=width: self._slice_view.set_window_level(c, w))

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
        try:
            self.document.set_labels(volume, labelmap)
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

    # -- file dialogs ----------------------------------------------------------------------
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

    def _show_about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("About medviewer")
        box.setIconPixmap(theme.app_icon().pixmap(64, 64))
        box.setText(
            f"<h3>medviewer {getattr(medviewer, '__version__', '')}</h3>"
            "<p>Desktop viewer for medical scans with label-map segmentation.</p>"
            "<p>Reads DICOM, NIfTI, NRRD, MetaImage and common picture formats.<br>"
            f"Supported volume files: {' '.join(VOLUME_SUFFIXES)}<br>"
            f"Pictures: {' '.join(PICTURE_SUFFIXES)}</p>"
            "<p><b>Not for diagnostic use.</b></p>"
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

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
            if self._segment_bridge is not None:
                self._segment_bridge.detach()
            self._slice_view.shutdown()
        super().closeEvent(event)
