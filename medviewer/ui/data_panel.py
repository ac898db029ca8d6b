"""Data dock: the open volumes (pick the one shown as background) and the shown one's facts."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medviewer.model.volume import Volume
from medviewer.ui import theme

FACT_NAMES = ("Modality", "Description", "Size", "Spacing", "Orientation", "Voxel type", "Source", "Warnings")


def format_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def volume_title(volume: Volume) -> str:
    return volume.info.name or volume.info.series_description or "Untitled"


def volume_facts(volume: Volume) -> list[tuple[str, str]]:
    """Rows of the volume summary (no patient identifiers)."""
    g = volume.geometry
    nx, ny, nz = g.size_xyz
    sx, sy, sz = g.spacing
    return [
        ("Modality", volume.info.modality or "—"),
        ("Description", volume.info.series_description or "—"),
        ("Size", f"{nx} x {ny} x {nz}"),
        ("Spacing", f"{sx:.4g} x {sy:.4g} x {sz:.4g} mm"),
        ("Orientation", g.axis_codes() + (" (oblique)" if g.is_oblique() else "")),
        ("Voxel type", f"{volume.dtype} ({format_bytes(volume.nbytes)})"),
        ("Source", volume.info.source or "—"),
        ("Warnings", "; ".join(volume.info.warnings) if volume.info.warnings else "none"),
    ]


class DataPanel(QWidget):
    """List of open volumes (the selected one is displayed) and facts about it."""

    volume_chosen = Signal(int)  # index into the document's volumes
    close_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._updating = False

        volumes_box = QGroupBox("Open volumes", self)
        self.volume_list = QListWidget(volumes_box)
        self.volume_list.setToolTip("Click a volume to show it in the views; each volume has its own label map")
        self.volume_list.currentRowChanged.connect(self._on_row_changed)
        self.volume_list.setMaximumHeight(84)
        self.close_button = QToolButton(volumes_box)
        self.close_button.setIcon(theme.icon("mdi6.close-box-outline"))
        self.close_button.setToolTip("Close the shown volume (Ctrl+W)")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.close_requested)
        row = QHBoxLayout()
        row.addWidget(self.volume_list, 1)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        volumes_layout = QVBoxLayout(volumes_box)
        volumes_layout.addLayout(row)

        facts_box = QGroupBox("Series", self)
        self.facts = QFormLayout()
        self.facts.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.facts.setHorizontalSpacing(10)
        self.facts.setVerticalSpacing(3)
        self._fact_labels: dict[str, QLabel] = {}
        for name in FACT_NAMES:
            value = QLabel("—", facts_box)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            value.setWordWrap(True)
            caption = QLabel(name, facts_box)
            caption.setStyleSheet(f"color: {theme.MUTED};")
            self.facts.addRow(caption, value)
            self._fact_labels[name] = value
        facts_box.setLayout(self.facts)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(volumes_box)
        layout.addWidget(facts_box)
        layout.addStretch(1)
        self.set_volumes([], None)

    # -- volumes -------------------------------------------------------------------------
    def set_volumes(self, volumes: list[Volume], active: Volume | None) -> None:
        self._updating = True
        self.volume_list.clear()
        for volume in volumes:
            nx, ny, nz = volume.geometry.size_xyz
            item = QListWidgetItem(theme.icon("mdi6.cube-outline"), volume_title(volume))
            item.setToolTip(f"{volume.info.modality or '?'}  {nx} x {ny} x {nz}")
            self.volume_list.addItem(item)
        if active is not None and active in volumes:
            self.volume_list.setCurrentRow(volumes.index(active))
        self.volume_list.setEnabled(bool(volumes))
        self.close_button.setEnabled(active is not None)
        self._updating = False
        self.show_volume(active)

    def _on_row_changed(self, row: int) -> None:
        if not self._updating and row >= 0:
            self.volume_chosen.emit(row)

    def show_volume(self, volume: Volume | None) -> None:
        if volume is None:
            for label in self._fact_labels.values():
                label.setText("—")
            return
        for name, text in volume_facts(volume):
            self._fact_labels[name].setText(text)

    def fact(self, name: str) -> str:
        return self._fact_labels[name].text()
