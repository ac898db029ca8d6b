"""The AI dock: model picker and card, device, checkpoint, prompt mode, accept/reject, propagate."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from medviewer.ai.checkpoint_store import SETTINGS_PREFIX  # noqa: F401 - re-exported for callers
from medviewer.ai.engine import JobStatus
from medviewer.ui.ai_tools import AiController


class AiPanel(QWidget):
    """Controls for :class:`AiController`; all model work happens on the engine's worker."""

    def __init__(self, controller: AiController, settings=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.settings = settings  # a QSettings (or None)
        if settings is not None:
            controller.checkpoints.settings = settings  # choices persist, wherever they are made
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        self.enable_box = QCheckBox("Prompt on the views (AI tool active)", self)
        self.enable_box.toggled.connect(controller.set_active)
        layout.addWidget(self.enable_box)

        form = QFormLayout()
        self.model_combo = QComboBox(self)
        self.model_combo.setModel(QStandardItemModel(self.model_combo))
        self.model_combo.currentIndexChanged.connect(self._on_model_chosen)
        form.addRow("Model", self.model_combo)
        self.device_combo = QComboBox(self)
        self.device_combo.addItems(["auto", "cpu"])
        self.device_combo.activated.connect(lambda _i: controller.set_device(self.device_combo.currentText()))
        form.addRow("Device", self.device_combo)
        layout.addLayout(form)

        self.card = QLabel(self)
        self.card.setWordWrap(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.card)
        self.checkpoint_button = QPushButton("Choose checkpoint…", self)
        self.checkpoint_button.clicked.connect(self.choose_checkpoint)
        layout.addWidget(self.checkpoint_button)

        modes = QHBoxLayout()
        self.box_mode = QLabel("Box: left drag", self)
        self.point_mode = QPushButton("Clicks: positive (+)", self)
        self.point_mode.setToolTip("Left click adds a positive point, right click a negative one; T toggles")
        self.point_mode.clicked.connect(controller.toggle_polarity)
        modes.addWidget(self.box_mode)
        modes.addWidget(self.point_mode)
        layout.addLayout(modes)
        modes3d = QHBoxLayout()
        self.box3d_button = QPushButton("3D box", self)
        self.box3d_button.setCheckable(True)
        self.box3d_button.setToolTip("Drag a box on the first slice of the structure, scroll to its last slice and "
                                     "drag a second box: every slice in between is segmented")
        self.box3d_button.toggled.connect(controller.set_box3d_mode)
        self.volume_clicks_box = QCheckBox("3D clicks", self)
        self.volume_clicks_box.setToolTip("Clicks segment the whole volume with the model's 3D mode")
        self.volume_clicks_box.toggled.connect(controller.set_volume_clicks)
        self.volume_clicks_box.toggled.connect(lambda _on: self._update_card())  # the click buttons follow
        modes3d.addWidget(self.box3d_button)
        modes3d.addWidget(self.volume_clicks_box)
        layout.addLayout(modes3d)

        self.state_label = QLabel("idle", self)
        self.score_label = QLabel("", self)
        layout.addWidget(self.state_label)
        layout.addWidget(self.score_label)

        buttons = QHBoxLayout()
        self.accept_button = QPushButton("Accept", self)
        self.accept_button.setToolTip("Write the candidate into the active segment (Enter)")
        self.accept_button.clicked.connect(controller.accept)
        self.reject_button = QPushButton("Reject", self)
        self.reject_button.clicked.connect(controller.reject)
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.setToolTip("Clear the prompts (Esc)")
        self.clear_button.clicked.connect(controller.clear_prompts)
        for button in (self.accept_button, self.reject_button, self.clear_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        propagate = QHBoxLayout()
        self.propagate_button = QPushButton("Propagate", self)
        self.propagate_button.setToolTip("Spread the candidate / accepted mask to neighbouring slices")
        self.propagate_button.clicked.connect(controller.propagate)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop and write nothing")
        self.cancel_button.clicked.connect(controller.cancel_propagation)
        self.cancel_button.setEnabled(False)
        self.stop_button = QPushButton("Stop here", self)
        self.stop_button.setToolTip("Stop after the current slice and keep the slices done so far")
        self.stop_button.clicked.connect(controller.stop_here)
        self.stop_button.setEnabled(False)
        propagate.addWidget(self.propagate_button)
        propagate.addWidget(self.cancel_button)
        propagate.addWidget(self.stop_button)
        layout.addLayout(propagate)
        self.progress = QProgressBar(self)
        self.progress.hide()
        layout.addWidget(self.progress)

        self.message_label = QLabel("", self)
        self.message_label.setWordWrap(True)
        layout.addWidget(self.message_label)
        layout.addStretch(1)

        controller.state_changed.connect(self._on_state)
        controller.candidate_changed.connect(self._on_candidate)
        controller.message.connect(self.show_message)
        controller.propagation_running.connect(self._on_propagation_running)
        controller.propagation_progress.connect(self._on_propagation_progress)
        controller.model_loaded.connect(lambda _id: self.refresh_models())
        controller.active_changed.connect(self._on_active_changed)
        controller.models_changed.connect(self.refresh_models)
        self._devices_asked = False
        self.refresh_models()
        self._on_candidate(None)

    # -- models -------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        controller = self.controller
        model: QStandardItemModel = self.model_combo.model()  # type: ignore[assignment]
        self.model_combo.blockSignals(True)
        model.clear()
        current_row = 0
        for entry in controller.registry.entries():
            item = QStandardItem(f"{entry.name} — {entry.status}")
            item.setData(entry.id, Qt.ItemDataRole.UserRole)
            item.setToolTip(entry.status)
            if not entry.available:
                item.setEnabled(False)
            if entry.id == controller.model_id:
                current_row = model.rowCount()
            model.appendRow(item)
        self.model_combo.setCurrentIndex(current_row)
        self.model_combo.blockSignals(False)
        self._update_card()

    def model_texts(self) -> list[tuple[str, bool]]:
        model: QStandardItemModel = self.model_combo.model()  # type: ignore[assignment]
        return [(model.item(r).text(), model.item(r).isEnabled()) for r in range(model.rowCount())]

    def _on_model_chosen(self, row: int) -> None:
        model_id = self.model_combo.itemData(row, Qt.ItemDataRole.UserRole)
        if not model_id:
            return
        self.controller.checkpoints.recall(model_id)
        self.controller.set_model(model_id)
        self._update_card()

    def _update_card(self) -> None:
        controller = self.controller
        info = controller.model_info()
        if info is None:
            self.card.setText("<i>no model</i>")
            self.checkpoint_button.setEnabled(False)
            return
        try:
            entry = controller.registry.get(info.id)
            status = entry.status
        except Exception:  # noqa: BLE001
            status = ""
        checkpoint = controller.checkpoints.get(info.id, "")
        if not checkpoint and info.checkpoint.kind in ("package_asset", "file"):
            try:
                path = controller.registry.resolve_checkpoint(info.id)
                checkpoint = str(path) if path else ""
            except Exception as exc:  # noqa: BLE001
                checkpoint = f"(missing: {exc})"
        sha = controller.checkpoint_sha256()
        prompts = ", ".join(sorted(k.value for k in info.prompts)) or "none"
        size = "×".join(str(s) for s in info.input_size) if info.input_size else "any"
        rows = [
            ("Status", status),
            ("Version", info.version),
            ("License", info.license),
            ("Citation", info.citation),
            ("Input size", size),
            ("Prompts", prompts),
            ("Device", str(controller.engine.device) if controller._engine is not None else "auto"),
            ("Checkpoint", checkpoint or info.checkpoint.describe()),
            ("SHA-256", sha or "—"),
        ]
        text = "".join(f"<b>{html.escape(k)}:</b> {html.escape(str(v))}<br>" for k, v in rows if v)
        self.card.setText(f"<b>{html.escape(info.name)}</b><br>{text}")
        self.checkpoint_button.setEnabled(info.checkpoint.kind == "user_file" or info.needs_checkpoint)
        volume_clicks = controller.uses_3d_clicks()
        points = controller.supports_points() or volume_clicks
        self.point_mode.setEnabled(points)
        self.point_mode.setToolTip("" if points else f"{info.name} accepts box prompts only")
        self.box_mode.setEnabled(info.supports("box"))
        box3d = info.supports("box_3d") or (info.is_2d and info.supports("box"))
        self.box3d_button.setEnabled(box3d)
        if not box3d and self.box3d_button.isChecked():
            self.box3d_button.setChecked(False)  # the tool switches off with it
        self.volume_clicks_box.blockSignals(True)
        self.volume_clicks_box.setChecked(volume_clicks)
        self.volume_clicks_box.setEnabled(info.is_3d and info.is_2d and info.supports("points_3d"))
        self.volume_clicks_box.blockSignals(False)

    def choose_checkpoint(self, path: str | None = None) -> None:
        controller = self.controller
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Choose checkpoint", "", "Checkpoints (*.pth *.pt *.ckpt *.bin);;All (*)")
        if not path:
            return
        controller.set_checkpoint(controller.model_id, path, load=True)
        self._update_card()

    def _on_active_changed(self, active: bool) -> None:
        if self.enable_box.isChecked() != active:
            self.enable_box.setChecked(active)
        if active and not self._devices_asked:
            self._devices_asked = True
            from medviewer.ai.device import available_devices

            job = self.controller.engine.submit(lambda control: available_devices(), "devices", "listing devices")

            def done(job):
                if job.status is JobStatus.DONE:
                    for device in job.result:
                        if device != "cpu" and self.device_combo.findText(device) < 0:
                            self.device_combo.addItem(device)

            self.controller.bridge.watch(job, done)

    # -- state --------------------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        self.state_label.setText(f"State: {state}")
        if state in ("error", "loading…"):
            self._update_card()  # status / SHA-256 may have changed (ready: see model_loaded)

    def _on_candidate(self, candidate) -> None:
        has = candidate is not None
        self.accept_button.setEnabled(has)
        self.reject_button.setEnabled(has)
        if has:
            score = "—" if candidate.score is None else f"{candidate.score:.2f}"
            self.score_label.setText(f"Predicted quality (IoU): {score}   {int(candidate.mask.sum())} px")
        else:
            self.score_label.setText("")
        self.point_mode.setText("Clicks: positive (+)" if self.controller.positive_mode else "Clicks: negative (−)")

    def show_message(self, text: str, error: bool = False) -> None:
        self.message_label.setStyleSheet("color: #ff6b6b;" if error else "")
        self.message_label.setText(text)
        self.point_mode.setText("Clicks: positive (+)" if self.controller.positive_mode else "Clicks: negative (−)")

    def _on_propagation_running(self, running: bool) -> None:
        self.propagate_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.stop_button.setEnabled(running and self.controller.stoppable)
        self.progress.setVisible(running)
        if running:
            self.progress.setRange(0, 0)

    def _on_propagation_progress(self, done: int, total: int, message: str) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        self.progress.setFormat(f"%v / %m {message}")


def install_ai_panel(window):
    """Build the AI controller, its dock (tabbed with the Tool dock) and the AI menu on ``window``."""
    from PySide6.QtGui import QAction, QKeySequence
    from PySide6.QtWidgets import QDockWidget

    controller = AiController(window)
    qsettings = getattr(getattr(window, "settings", None), "qsettings", None)
    panel = AiPanel(controller, qsettings, window)
    dock = QDockWidget("AI", window)
    dock.setObjectName("aiDock")
    dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable)
    dock.setWidget(panel)
    dock.setMinimumWidth(280)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    tool_dock = getattr(window, "tool_dock", None)
    if tool_dock is not None:
        window.tabifyDockWidget(tool_dock, dock)
    action = QAction("AI &Segmentation Tool", window)
    action.setCheckable(True)
    action.setShortcut(QKeySequence("Ctrl+Shift+A"))
    action.setToolTip("Prompt a segmentation model with boxes and clicks on the slice views")
    action.toggled.connect(controller.set_active)
    controller.active_changed.connect(action.setChecked)

    def activated(active: bool) -> None:
        if active:
            dock.show()
            dock.raise_()

    controller.active_changed.connect(activated)
    window.addAction(action)
    bar = window.menuBar()
    menu = QMenu("&AI", bar)
    # Beside the other tool menus: Settings and Help stay last, where users look for them.
    later = next((a for a in bar.actions() if a.text() in ("&Settings", "&Help")), None)
    if later is not None:
        bar.insertMenu(later, menu)
    else:
        bar.addMenu(menu)
    menu.addAction(action)
    menu.addAction(dock.toggleViewAction())
    controller.toggle_action = action
    editing = getattr(window, "editing", None)
    signal = getattr(editing, "tool_activated", None)
    if signal is not None:
        signal.connect(lambda name: controller.set_active(False) if name else None)
    return controller, panel, dock
