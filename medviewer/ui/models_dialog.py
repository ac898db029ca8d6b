"""Settings > Models: every discovered model, the checkpoint file it loads and that file's SHA-256.

The dialog edits the AI controller's :class:`~medviewer.ai.checkpoint_store.CheckpointStore`,
the same store the AI dock uses, so a file chosen here is what the next model load reads and
what provenance records. Digests are computed off the GUI thread (a SAM checkpoint is
gigabytes); a short timer picks up finished ones, so no worker ever touches a widget.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.ai.checkpoint_store import CHECKSUMS, ChecksumCache, ModelCheckpointRow, model_checkpoint_rows
from medviewer.ui import theme

COLUMNS = ("Name", "Id", "Status", "Checkpoint", "SHA-256", "")
NAME, ID, STATUS, CHECKPOINT, SHA, BUTTONS = range(len(COLUMNS))
COMPUTING = "computing…"
POLL_MS = 50


class ModelsDialog(QDialog):
    """A table of models with Choose… / Clear per row; changes go through the controller."""

    def __init__(self, controller, parent: QWidget | None = None, checksums: ChecksumCache = CHECKSUMS):
        super().__init__(parent)
        self.controller = controller
        self.checksums = checksums
        self.rows: list[ModelCheckpointRow] = []
        self._pending: dict[int, tuple[str, object]] = {}  # table row -> (file, future digest)
        self.setWindowTitle("Models")
        self.setWindowIcon(theme.icon("mdi6.brain"))
        self.resize(1280, 380)
        layout = QVBoxLayout(self)
        intro = QLabel("Point each model at its checkpoint file. The SHA-256 shown is the one an accepted "
                       "AI mask records in its provenance.", self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # a long path keeps its file name
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(CHECKPOINT, QHeaderView.ResizeMode.Stretch)
        self.table.setColumnWidth(NAME, 200)
        self._digest_font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._collect_digests)
        controller.models_changed.connect(self.refresh)
        controller.model_loaded.connect(self._on_model_loaded)  # a bound slot: gone with the dialog
        self.refresh()

    # -- table -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the rows from the registry and the checkpoint store."""
        controller = self.controller
        self.rows = model_checkpoint_rows(controller.registry, controller.checkpoints)
        self._pending.clear()
        self.table.setRowCount(len(self.rows))
        for index, row in enumerate(self.rows):
            texts = {NAME: row.name, ID: row.model_id, STATUS: row.status, CHECKPOINT: row.checkpoint}
            for column, text in texts.items():
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(index, column, item)
            digest = QTableWidgetItem(self._digest_text(index, row))
            digest.setFont(self._digest_font)
            self.table.setItem(index, SHA, digest)
            self.table.setCellWidget(index, BUTTONS, self._row_buttons(row))
        if self._pending:
            self._poll.start()

    def _on_model_loaded(self, _model_id: str) -> None:
        self.refresh()  # "loaded" status, or "failed: ..." when the plugin's own weights broke

    def _digest_text(self, index: int, row: ModelCheckpointRow) -> str:
        if row.checkpoint.startswith("missing"):
            return "missing"
        if not row.file:
            return "—"
        known = self.checksums.known(row.file)
        if known is not None:
            return known
        self._pending[index] = (row.file, self.checksums.request(row.file))
        return COMPUTING

    def _row_buttons(self, row: ModelCheckpointRow) -> QWidget:
        holder = QWidget(self.table)
        box = QHBoxLayout(holder)
        box.setContentsMargins(2, 0, 2, 0)
        choose = QPushButton("Choose…", holder)
        choose.setEnabled(row.choosable)
        choose.clicked.connect(lambda _=False, model_id=row.model_id: self.choose(model_id))
        clear = QPushButton("Clear", holder)
        clear.setEnabled(row.user_choice)
        clear.setToolTip("Forget the chosen file (the model's own checkpoint, if it has one, is used)")
        clear.clicked.connect(lambda _=False, model_id=row.model_id: self.clear(model_id))
        box.addWidget(choose)
        box.addWidget(clear)
        holder.choose_button, holder.clear_button = choose, clear  # type: ignore[attr-defined]
        return holder

    def _collect_digests(self) -> None:
        for index, (file, future) in list(self._pending.items()):
            if not future.done():
                continue
            del self._pending[index]
            error = future.exception()
            text = future.result() if error is None else ("missing" if isinstance(error, FileNotFoundError)
                                                          else f"unreadable: {error}")
            item = self.table.item(index, SHA)
            if item is not None and index < len(self.rows) and self.rows[index].file == file:
                item.setText(text)
                item.setToolTip(text)
        if not self._pending:
            self._poll.stop()

    # -- queries (tests and the status bar) --------------------------------------------------
    def row_of(self, model_id: str) -> int:
        return next(i for i, row in enumerate(self.rows) if row.model_id == model_id)

    def cell(self, model_id: str, column: int) -> str:
        item = self.table.item(self.row_of(model_id), column)
        return item.text() if item is not None else ""

    def buttons(self, model_id: str) -> tuple[QPushButton, QPushButton]:
        holder = self.table.cellWidget(self.row_of(model_id), BUTTONS)
        return holder.choose_button, holder.clear_button  # type: ignore[attr-defined]

    def digests_pending(self) -> bool:
        return bool(self._pending)

    # -- actions -----------------------------------------------------------------------------
    def choose(self, model_id: str, path: str | None = None) -> None:
        """Record ``path`` (asked for when None) as ``model_id``'s checkpoint; a bad file is
        reported when the model loads, as in the AI dock."""
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, f"Checkpoint for {model_id}", "",
                                                  "Checkpoints (*.pth *.pt *.ckpt *.bin *.safetensors);;All (*)")
        if path:
            self.controller.set_checkpoint(model_id, path)  # emits models_changed: the rows refresh

    def clear(self, model_id: str) -> None:
        self.controller.set_checkpoint(model_id, None)

    def done(self, result: int) -> None:
        self._poll.stop()
        self._pending.clear()
        super().done(result)


def show_models_dialog(window) -> ModelsDialog:
    """Open (or raise) the window's Settings > Models dialog; it is not modal."""
    dialog = getattr(window, "models_dialog", None)
    if dialog is None:
        dialog = window.models_dialog = ModelsDialog(window.ai_controller, window)
    else:
        dialog.refresh()
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


__all__ = ["ModelsDialog", "show_models_dialog"]
