"""Segment list dock: visibility, colour, name, lock, voxel count and volume per segment.

A Qt model over the document's SegmentTable (the table stays the single truth: every edit
in the list goes through ``SegmentTable.update``). Voxel counts follow
``LabelMap.changed`` boxes, debounced, recounting only the touched slices.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QColorDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSlider,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from medviewer.model.events import Box
from medviewer.model.labelmap import LabelMap
from medviewer.model.segments import SegmentTable
from medviewer.render.label_colors import DEFAULT_LABEL_ALPHA
from medviewer.render.segment_stats import LabelCounter, format_volume_ml, volume_ml
from medviewer.ui import theme
from medviewer.ui.event_bridge import EventBridge

#: Quiet time after the last label edit before the counts are refreshed (a brush stroke
#: sends many edits; counting after each would steal time from drawing).
COUNT_DEBOUNCE_MS = 150

VISIBLE, COLOR, NAME, LOCK, VOXELS, VOLUME = range(6)
HEADERS = ("", "", "Name", "", "Voxels", "mL")
HEADER_TIPS = (
    "Visible in the views",
    "Colour (click to change)",
    "Segment name (double-click to rename)",
    "Locked: protected from editing tools (click to toggle)",
    "Number of voxels with this label",
    "Volume in millilitres (voxels x voxel volume)",
)


def swatch_icon(color: tuple[int, int, int], size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*color))
    return QIcon(pixmap)


class SegmentTableModel(QAbstractTableModel):
    """Rows = segments in display order; columns as in :data:`HEADERS`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.segments: SegmentTable | None = None
        #: When set (by the editing controller), edits go through it and are undoable.
        self.editor = None
        self.voxel_volume_mm3 = 1.0
        self.counts: dict[int, int] = {}
        self._labels: list[int] = []
        self._lock_icon = theme.icon("mdi6.lock", "#e0a030")
        self._unlock_icon = theme.icon("mdi6.lock-open-variant-outline", "#5a616b")

    def set_segments(self, segments: SegmentTable | None, voxel_volume_mm3: float = 1.0) -> None:
        self.beginResetModel()
        self.segments = segments
        self.voxel_volume_mm3 = float(voxel_volume_mm3)
        self._labels = [s.label for s in segments] if segments is not None else []
        self.endResetModel()

    def refresh(self) -> None:
        """Re-read the segment table (rows added, removed, renamed, recoloured...)."""
        labels = [s.label for s in self.segments] if self.segments is not None else []
        if labels != self._labels:
            self.beginResetModel()
            self._labels = labels
            self.endResetModel()
        elif labels:
            self.dataChanged.emit(self.index(0, 0), self.index(len(labels) - 1, len(HEADERS) - 1))

    def set_counts(self, counts: dict[int, int]) -> None:
        self.counts = dict(counts)
        if self._labels:
            self.dataChanged.emit(self.index(0, VOXELS), self.index(len(self._labels) - 1, VOLUME))

    def label_at(self, row: int) -> int | None:
        return self._labels[row] if 0 <= row < len(self._labels) else None

    def row_of(self, label: int) -> int:
        return self._labels.index(label)

    # -- Qt model interface ---------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._labels)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADER_TIPS[section]
        if role == Qt.ItemDataRole.DecorationRole and section == VISIBLE:
            return theme.icon("mdi6.eye-outline", theme.MUTED)
        if role == Qt.ItemDataRole.DecorationRole and section == LOCK:
            return theme.icon("mdi6.lock-outline", theme.MUTED)
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        label = self.label_at(index.row())
        if label is None or self.segments is None or label not in self.segments:
            return None
        segment = self.segments[label]
        column = index.column()
        count = self.counts.get(label, 0)
        if role == Qt.ItemDataRole.DisplayRole or role == Qt.ItemDataRole.EditRole:
            if column == NAME:
                return segment.name
            if column == VOXELS:
                return f"{count:,}".replace(",", "\u2009")
            if column == VOLUME:
                return format_volume_ml(volume_ml(count, self.voxel_volume_mm3))
        elif role == Qt.ItemDataRole.CheckStateRole and column == VISIBLE:
            return Qt.CheckState.Checked if segment.visible else Qt.CheckState.Unchecked
        elif role == Qt.ItemDataRole.DecorationRole:
            if column == COLOR:
                return swatch_icon(segment.color)
            if column == LOCK:
                return self._lock_icon if segment.locked else self._unlock_icon
        elif role == Qt.ItemDataRole.ToolTipRole:
            if column == COLOR:
                return f"Colour RGB {segment.color} (click to change)"
            if column == LOCK:
                return "Locked (click to unlock)" if segment.locked else "Unlocked (click to lock against edits)"
            if column == VISIBLE:
                return "Hide" if segment.visible else "Show"
            return f"[{label}] {segment.name}: {count} voxels, {format_volume_ml(volume_ml(count, self.voxel_volume_mm3))} mL"
        elif role == Qt.ItemDataRole.TextAlignmentRole and column in (VOXELS, VOLUME):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        elif role == Qt.ItemDataRole.UserRole:
            return label
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.column() == VISIBLE:
            return base | Qt.ItemFlag.ItemIsUserCheckable
        if index.column() == NAME:
            return base | Qt.ItemFlag.ItemIsEditable
        return base

    def setData(self, index: QModelIndex | QPersistentModelIndex, value, role: int = Qt.ItemDataRole.EditRole) -> bool:
        label = self.label_at(index.row())
        if label is None or self.segments is None:
            return False
        if index.column() == VISIBLE and role == Qt.ItemDataRole.CheckStateRole:
            visible = Qt.CheckState(value) == Qt.CheckState.Checked if not isinstance(value, bool) else value
            if self.editor is not None:
                self.editor.set_visible(label, bool(visible))
            else:
                self.segments.update(label, visible=bool(visible))
            return True
        if index.column() == NAME and role == Qt.ItemDataRole.EditRole:
            name = str(value).strip()
            if not name:
                return False
            if self.editor is not None:
                self.editor.rename_segment(label, name)
            else:
                self.segments.update(label, name=name)
            return True
        return False


class SegmentPanel(QWidget):
    """The segment list plus overlay opacity and outline mode."""

    label_opacity_changed = Signal(float)
    outline_mode_changed = Signal(bool)
    counts_updated = Signal()
    active_segment_changed = Signal(object)  # label of the selected (active) segment, or None
    message = Signal(str)  # feedback such as "segment is locked"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.labelmap: LabelMap | None = None
        self.segments: SegmentTable | None = None
        self.counter = LabelCounter()
        self._pending_box: Box | None = None
        self._bridges: list[EventBridge] = []
        self.color_dialog: QColorDialog | None = None

        self.model = SegmentTableModel(self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.setToolTip("Segments of the shown volume")
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        for column, width in ((VISIBLE, 28), (COLOR, 26), (LOCK, 28)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
            header.resizeSection(column, width)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        for column in (VOXELS, VOLUME):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.clicked.connect(self._on_clicked)
        self.editor = None
        self._active_label: int | None = None
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.add_button = self._button("Add", "mdi6.plus", "Add a new empty segment", self.add_segment)
        self.delete_button = self._button("Delete", "mdi6.delete-outline", "Delete the selected segments and their voxels",
                                          self.delete_selected)
        self.merge_button = self._button("Merge", "mdi6.call-merge", "Merge the selected segments into the current one",
                                         self.merge_selected)
        self.up_button = self._button("", "mdi6.arrow-up", "Move the segment up", lambda: self.move_selected(-1))
        self.down_button = self._button("", "mdi6.arrow-down", "Move the segment down", lambda: self.move_selected(+1))
        buttons = QHBoxLayout()
        for button in (self.add_button, self.delete_button, self.merge_button, self.up_button, self.down_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.empty_hint = QLabel("No segments yet. Load a label map (Ctrl+L).", self)
        self.empty_hint.setStyleSheet(f"color: {theme.MUTED}; padding: 4px;")
        self.empty_hint.setWordWrap(True)

        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(DEFAULT_LABEL_ALPHA * 100))
        self.opacity_slider.setToolTip("Opacity of the label overlay in the slice views")
        self.opacity_slider.valueChanged.connect(lambda v: self.label_opacity_changed.emit(v / 100.0))
        self.outline_check = QCheckBox("Outline", self)
        self.outline_check.setToolTip("Draw only the outline of each segment (Ctrl+Shift+O)")
        self.outline_check.toggled.connect(self.outline_mode_changed)
        caption = QLabel("Opacity", self)
        caption.setStyleSheet(f"color: {theme.MUTED};")
        controls = QHBoxLayout()
        controls.addWidget(caption)
        controls.addWidget(self.opacity_slider, 1)
        controls.addWidget(self.outline_check)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty_hint)
        layout.addLayout(controls)

        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DEBOUNCE_MS)
        self._count_timer.timeout.connect(self._update_counts)
        self._update_hint()

    # -- content ---------------------------------------------------------------------------
    def set_segmentation(self, labelmap: LabelMap | None, segments: SegmentTable | None) -> None:
        """Follow one volume's label map and segment table (None: nothing open)."""
        self._detach()
        self.labelmap, self.segments = labelmap, segments
        voxel_volume = labelmap.geometry.voxel_volume_mm3 if labelmap is not None else 1.0
        self.model.set_segments(segments, voxel_volume)
        self._pending_box = None
        self._count_timer.stop()
        self.counter.reset(labelmap.array if labelmap is not None else None)
        self.model.set_counts(self.counter.counts())
        if labelmap is not None:
            self._bridges.append(EventBridge(labelmap.changed, self._on_labels_changed, self))
        if segments is not None:
            self._bridges.append(EventBridge(segments.changed, self._on_segments_changed, self))
        self._update_hint()

    def _detach(self) -> None:
        for bridge in self._bridges:
            bridge.detach()
            bridge.deleteLater()
        self._bridges.clear()

    def shutdown(self) -> None:
        self._detach()
        self._count_timer.stop()

    def _on_labels_changed(self, box: Box | None = None) -> None:
        if self.labelmap is None:
            return
        box = box or Box.full(self.labelmap.shape)
        self._pending_box = box if self._pending_box is None else self._pending_box.union(box)
        self._count_timer.start()

    def _update_counts(self) -> None:
        if self.labelmap is None:
            return
        box, self._pending_box = self._pending_box, None
        self.counter.update(self.labelmap.array, box)
        self.model.set_counts(self.counter.counts())
        self.counts_updated.emit()

    def flush_counts(self) -> None:
        """Count pending edits now (tests, and before exporting statistics)."""
        if self._count_timer.isActive() or self._pending_box is not None:
            self._count_timer.stop()
            self._update_counts()

    def _on_segments_changed(self, *_args) -> None:
        self.model.refresh()
        self._update_hint()
        active = self._active_label
        if self.segments is not None and active is not None and active in self.segments:
            if self.current_label() != active:
                self.select_label(active)
        elif active is not None:
            self.select_label(None)

    def _update_hint(self) -> None:
        self.empty_hint.setVisible(self.model.rowCount() == 0)

    def set_outline_mode(self, outline: bool) -> None:
        self.outline_check.setChecked(bool(outline))

    # -- clicks ----------------------------------------------------------------------------
    def _on_clicked(self, index: QModelIndex) -> None:
        label = self.model.label_at(index.row())
        if label is None or self.segments is None or label not in self.segments:
            return
        if index.column() == COLOR:
            self.choose_color(label)
        elif index.column() == LOCK:
            if self.editor is not None:
                self.editor.set_locked(label, not self.segments[label].locked)
            else:
                self.segments.update(label, locked=not self.segments[label].locked)

    def choose_color(self, label: int) -> QColorDialog:
        """Open a colour dialog (non-blocking) for segment ``label``."""
        segment = self.segments[label]
        dialog = QColorDialog(QColor(*segment.color), self)
        dialog.setWindowTitle(f"Colour of {segment.name}")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.colorSelected.connect(lambda color: self._apply_color(label, color))
        dialog.destroyed.connect(lambda *_: setattr(self, "color_dialog", None))
        self.color_dialog = dialog
        dialog.open()
        return dialog

    def _apply_color(self, label: int, color: QColor) -> None:
        if self.segments is not None and label in self.segments and color.isValid():
            rgb = (color.red(), color.green(), color.blue())
            if self.editor is not None:
                self.editor.recolor_segment(label, rgb)
            else:
                self.segments.update(label, color=rgb)

    # -- editing (the active segment = the current row) -------------------------------------
    def _button(self, text: str, icon: str, tip: str, slot) -> QPushButton:
        button = QPushButton(theme.icon(icon), text, self)
        button.setToolTip(tip)
        button.clicked.connect(lambda *_: slot())
        return button

    def set_editor(self, editor) -> None:
        """Route list edits through ``editor`` (undoable); None: plain table updates."""
        self.editor = editor
        self.model.editor = editor
        enabled = editor is not None
        for button in (self.add_button, self.delete_button, self.merge_button, self.up_button, self.down_button):
            button.setEnabled(enabled)

    def current_label(self) -> int | None:
        index = self.table.currentIndex()
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if index.isValid() and any(r.row() == index.row() for r in rows):
            return self.model.label_at(index.row())
        return self.model.label_at(rows[0].row()) if rows else None

    def selected_labels(self) -> list[int]:
        rows = sorted(r.row() for r in self.table.selectionModel().selectedRows())
        return [label for label in (self.model.label_at(r) for r in rows) if label is not None]

    def select_label(self, label: int | None) -> None:
        """Make ``label`` the current (active) row; None clears the selection."""
        if label is None or self.segments is None or label not in self.segments:
            self.table.clearSelection()
            self.table.setCurrentIndex(self.model.index(-1, -1))
        else:
            index = self.model.index(self.model.row_of(label), NAME)
            flags = self.table.selectionModel().SelectionFlag
            # Not selectRow(): it honours held modifier keys (Ctrl would toggle the row off).
            self.table.selectionModel().setCurrentIndex(index, flags.ClearAndSelect | flags.Rows)
        self._emit_active()

    def _on_selection_changed(self, *_args) -> None:
        self._emit_active()

    def _emit_active(self) -> None:
        label = self.current_label()
        if label != self._active_label:
            self._active_label = label
            self.active_segment_changed.emit(label)

    def _edit(self, action) -> bool:
        from medviewer.model.editing import EditRefused

        if self.editor is None:
            return False
        try:
            action()
        except EditRefused as exc:
            self.message.emit(str(exc))
            return False
        return True

    def add_segment(self, name: str | None = None) -> int | None:
        created = []
        if not self._edit(lambda: created.append(self.editor.create_segment(name))):
            return None
        label = created[0].label
        self.select_label(label)
        return label

    def delete_selected(self) -> None:
        labels = self.selected_labels()
        for label in labels:
            if not self._edit(lambda label=label: self.editor.delete_segment(label)):
                break
        self._emit_active()

    def merge_selected(self) -> None:
        labels = self.selected_labels()
        into = self.current_label()
        if into is None or len(labels) < 2:
            self.message.emit("Select two or more segments to merge (the current one keeps its name)")
            return
        if self._edit(lambda: self.editor.merge_segments(labels, into)):
            self.select_label(into)

    def move_selected(self, step: int) -> None:
        label = self.current_label()
        if label is None or self.segments is None:
            return
        if self._edit(lambda: self.editor.move_segment(label, self.segments.index_of(label) + step)):
            self.select_label(label)
