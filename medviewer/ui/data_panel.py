"""Side panel: which volume is shown, its key facts, and its segments."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.model.segments import SegmentTable
from medviewer.model.volume import Volume
from medviewer.render.label_colors import DEFAULT_LABEL_ALPHA
from medviewer.ui import theme


def _swatch(color: tuple[int, int, int]) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(*color))
    return QIcon(pixmap)


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def volume_facts(volume: Volume) -> list[tuple[str, str]]:
    """Rows of the volume summary (no patient identifiers)."""
    g = volume.geometry
    nx, ny, nz = g.size_xyz
    sx, sy, sz = g.spacing
    return [
        ("Modality", volume.info.modality or "—"),
        ("Size", f"{nx} x {ny} x {nz}"),
        ("Spacing", f"{sx:.4g} x {sy:.4g} x {sz:.4g} mm"),
        ("Orientation", g.axis_codes() + (" (oblique)" if g.is_oblique() else "")),
        ("Voxel type", f"{volume.dtype} ({format_bytes(volume.nbytes)})"),
    ]


class DataPanel(QWidget):
    """Volume chooser and facts, segment list with visibility, overlay opacity."""

    volume_chosen = Signal(int)  # index into the document's volumes
    label_opacity_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._segments: SegmentTable | None = None
        self._updating = False

        volume_box = QGroupBox("Volume", self)
        self.volume_combo = QComboBox(volume_box)
        self.volume_combo.setToolTip("Volume shown in the view")
        self.volume_combo.currentIndexChanged.connect(self._on_volume_combo)
        self.facts = QFormLayout()
        self.facts.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.facts.setHorizontalSpacing(10)
        self._fact_labels: dict[str, QLabel] = {}
        for name in ("Modality", "Size", "Spacing", "Orientation", "Voxel type"):
            value = QLabel("—", volume_box)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            caption = QLabel(name, volume_box)
            caption.setStyleSheet(f"color: {theme.MUTED};")
            self.facts.addRow(caption, value)
            self._fact_labels[name] = value
        volume_layout = QVBoxLayout(volume_box)
        volume_layout.addWidget(self.volume_combo)
        volume_layout.addLayout(self.facts)

        segment_box = QGroupBox("Segments", self)
        self.segment_list = QTreeWidget(segment_box)
        self.segment_list.setHeaderLabels(("Name", "Label"))
        self.segment_list.setRootIsDecorated(False)
        self.segment_list.setToolTip("Untick a segment to hide it in the overlay")
        self.segment_list.header().setStretchLastSection(False)
        self.segment_list.header().resizeSection(1, 48)
        self.segment_list.header().setSectionResizeMode(0, self.segment_list.header().ResizeMode.Stretch)
        self.segment_list.itemChanged.connect(self._on_segment_item_changed)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, segment_box)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(DEFAULT_LABEL_ALPHA * 100))
        self.opacity_slider.setToolTip("Label overlay opacity")
        self.opacity_slider.valueChanged.connect(lambda v: self.label_opacity_changed.emit(v / 100.0))
        opacity_row = QHBoxLayout()
        caption = QLabel("Opacity", segment_box)
        caption.setStyleSheet(f"color: {theme.MUTED};")
        opacity_row.addWidget(caption)
        opacity_row.addWidget(self.opacity_slider, 1)
        segment_layout = QVBoxLayout(segment_box)
        segment_layout.addWidget(self.segment_list, 1)
        segment_layout.addLayout(opacity_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(volume_box)
        layout.addWidget(segment_box, 1)
        self.show_volume(None)

    # -- volumes -------------------------------------------------------------------------
    def set_volumes(self, volumes: list[Volume], active: Volume | None) -> None:
        self._updating = True
        self.volume_combo.clear()
        for volume in volumes:
            self.volume_combo.addItem(volume.info.name or volume.info.series_description or "Untitled")
        if active is not None and active in volumes:
            self.volume_combo.setCurrentIndex(volumes.index(active))
        self.volume_combo.setEnabled(bool(volumes))
        self._updating = False
        self.show_volume(active)

    def _on_volume_combo(self, index: int) -> None:
        if not self._updating and index >= 0:
            self.volume_chosen.emit(index)

    def show_volume(self, volume: Volume | None) -> None:
        if volume is None:
            for label in self._fact_labels.values():
                label.setText("—")
            self.volume_combo.setPlaceholderText("No volume open")
            return
        for name, text in volume_facts(volume):
            self._fact_labels[name].setText(text)

    # -- segments ------------------------------------------------------------------------
    def show_segments(self, segments: SegmentTable | None) -> None:
        self._segments = segments
        self._updating = True
        self.segment_list.clear()
        for segment in segments or ():
            item = QTreeWidgetItem([segment.name, str(segment.label)])
            item.setIcon(0, _swatch(segment.color))
            item.setData(0, Qt.ItemDataRole.UserRole, segment.label)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Checked if segment.visible else Qt.CheckState.Unchecked)
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.segment_list.addTopLevelItem(item)
        self._updating = False

    def _on_segment_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._updating or self._segments is None or column != 0:
            return
        label = item.data(0, Qt.ItemDataRole.UserRole)
        visible = item.checkState(0) == Qt.CheckState.Checked
        if label in self._segments and self._segments[label].visible != visible:
            self._segments.update(label, visible=visible)
