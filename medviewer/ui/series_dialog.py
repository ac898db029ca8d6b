"""Series picker shown when a DICOM folder holds more than one series."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medviewer.ui import theme

COLUMNS = ("Description", "Modality", "Size", "Slices", "Warnings")


def series_row(series) -> tuple[str, str, str, str, str]:
    """Column texts for one DicomSeries (description, modality, size, slices, warnings)."""
    description = series.description or "(no description)"
    size = f"{series.columns} x {series.rows}" if series.rows and series.columns else "?"
    warnings = "; ".join(series.warnings) if series.warnings else ""
    return (description, series.modality or "?", size, str(series.num_slices), warnings)


class SeriesDialog(QDialog):
    """Lists the series of a folder; ``selected_key()`` is the one the user chose."""

    def __init__(self, series: Sequence, folder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Choose a DICOM series")
        self.setWindowIcon(theme.icon("mdi6.folder-multiple-image"))
        self.resize(760, 360)
        self._series = list(series)
        intro = QLabel(
            f"<b>{len(self._series)} series</b> were found"
            + (f" in <i>{folder}</i>" if folder else "")
            + ". Choose the one to open:",
            self,
        )
        intro.setWordWrap(True)
        self.table = QTreeWidget(self)
        self.table.setRootIsDecorated(False)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setHeaderLabels(COLUMNS)
        for series_item in self._series:
            texts = series_row(series_item)
            row = QTreeWidgetItem(list(texts))
            row.setData(0, Qt.ItemDataRole.UserRole, series_item.key)
            for column in (2, 3):
                row.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if series_item.warnings:
                row.setIcon(4, theme.icon("mdi6.alert", "#e0a030"))
                row.setToolTip(4, "\n".join(series_item.warnings))
            summary = getattr(series_item, "summary", None)
            if callable(summary):
                row.setToolTip(0, str(summary()))
            self.table.addTopLevelItem(row)
        header = self.table.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, 4):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        if self._series:
            self.table.setCurrentItem(self.table.topLevelItem(0))
        self.table.itemDoubleClicked.connect(lambda *_: self.accept())

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)

    def selected_key(self) -> str | None:
        item = self.table.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
