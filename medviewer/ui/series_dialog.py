"""Series browser shown when a DICOM folder holds more than one series.

A table of the series (description, modality, size, slices, warnings) with a thumbnail of
each one's middle image. Thumbnails are decoded on worker threads after the dialog opens,
so a folder with many large series is listed at once and previews fill in as they come.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PySide6.QtCore import QSize, QThreadPool, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
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

from medviewer.jobs import JobControl
from medviewer.render.thumbnails import THUMBNAIL_SIZE, series_thumbnail
from medviewer.ui import theme
from medviewer.ui.workers import BackgroundJob

COLUMNS = ("Description", "Modality", "Size", "Slices", "Warnings")


def series_row(series) -> tuple[str, str, str, str, str]:
    """Column texts for one DicomSeries (description, modality, size, slices, warnings)."""
    description = series.description or "(no description)"
    size = f"{series.columns} x {series.rows}" if series.rows and series.columns else "?"
    warnings = "; ".join(series.warnings) if series.warnings else ""
    return (description, series.modality or "?", size, str(series.num_slices), warnings)


def thumbnail_icon(pixels: np.ndarray) -> QIcon:
    """A square icon with the grey thumbnail centred on black."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape
    image = QImage(pixels.data, width, height, width, QImage.Format.Format_Grayscale8).copy()
    canvas = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    canvas.fill(Qt.GlobalColor.black)
    painter = QPainter(canvas)
    painter.drawImage((THUMBNAIL_SIZE - width) // 2, (THUMBNAIL_SIZE - height) // 2, image)
    painter.end()
    return QIcon(canvas)


class SeriesDialog(QDialog):
    """Lists the series of a folder; ``selected_key()`` is the one the user chose."""

    def __init__(self, series: Sequence, folder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Choose a DICOM series")
        self.setWindowIcon(theme.icon("mdi6.folder-multiple-image"))
        self.resize(860, 420)
        self._series = list(series)
        self._jobs: list[BackgroundJob] = []
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        #: Series keys whose thumbnail arrived (tests, diagnostics).
        self.thumbnails_shown: set[str] = set()
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
        self.table.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        placeholder = self._placeholder_icon()
        self._items: dict[str, QTreeWidgetItem] = {}
        for series_item in self._series:
            texts = series_row(series_item)
            row = QTreeWidgetItem(list(texts))
            row.setData(0, Qt.ItemDataRole.UserRole, series_item.key)
            row.setIcon(0, placeholder)
            for column in (2, 3):
                row.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if series_item.warnings:
                row.setIcon(4, theme.icon("mdi6.alert", "#e0a030"))
                row.setToolTip(4, "\n".join(series_item.warnings))
            summary = getattr(series_item, "summary", None)
            if callable(summary):
                row.setToolTip(0, str(summary()))
            self.table.addTopLevelItem(row)
            self._items[series_item.key] = row
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
        self._start_thumbnails()

    @staticmethod
    def _placeholder_icon() -> QIcon:
        canvas = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        canvas.fill(Qt.GlobalColor.black)
        return QIcon(canvas)

    def _start_thumbnails(self) -> None:
        for series_item in self._series:
            if not getattr(series_item, "frames", None):
                continue  # nothing to decode (e.g. a summary without file list)

            def decode(control: JobControl, series=series_item):
                control.check()
                return series_thumbnail(series)

            job = BackgroundJob(decode, f"Thumbnail of {series_item.description}")
            job.signals.succeeded.connect(functools.partial(self._show_thumbnail, series_item.key))
            self._jobs.append(job)
            self._pool.start(job)

    def _show_thumbnail(self, key: str, pixels) -> None:
        item = self._items.get(key)
        if item is None or pixels is None:
            return
        item.setIcon(0, thumbnail_icon(pixels))
        self.thumbnails_shown.add(key)

    def wait_for_thumbnails(self, timeout_ms: int = 5000) -> bool:
        return self._pool.waitForDone(timeout_ms)

    def done(self, result: int) -> None:
        for job in self._jobs:
            job.cancel()
        self._pool.waitForDone(3000)
        super().done(result)

    def selected_key(self) -> str | None:
        item = self.table.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
