"""Export segmentation dialog: choose a format and a file, confirm overwriting, show errors.

Non-modal; every question (overwrite?) and error is a non-blocking message box kept in an
attribute, so tests can answer it. The export itself runs in the background
(:class:`~medviewer.ui.file_jobs.FileJobs`) on a copy of the labels taken when Export is
pressed; the dialog shows the outcome when the job reports back.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

log = logging.getLogger(__name__)

#: (shown name, format id for export_segmentation, file suffix)
EXPORT_CHOICES = (
    ("NIfTI label map (.nii.gz)", "nii.gz", ".nii.gz"),
    ("NRRD label map (.nrrd)", "nrrd", ".nrrd"),
    ("MetaImage label map (.mha)", "mha", ".mha"),
    ("3D Slicer segmentation (.seg.nrrd)", "seg.nrrd", ".seg.nrrd"),
    ("DICOM SEG (.dcm)", "dcm", ".dcm"),
    ("STL surface meshes (.stl)", "stl", ".stl"),
    ("OBJ surface meshes (.obj)", "obj", ".obj"),
    ("Statistics table (.csv)", "csv", ".csv"),
    ("Provenance record (.json)", "json", ".json"),
)
_SUFFIXES = sorted({c[2] for c in EXPORT_CHOICES}, key=len, reverse=True)


def replace_suffix(path: str, suffix: str) -> str:
    if not path:
        return path
    for known in _SUFFIXES:
        if path.lower().endswith(known):
            return path[: -len(known)] + suffix
    return path + suffix


class ExportDialog(QDialog):
    """Writes the active segmentation through :meth:`EditingController.export`."""

    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Export segmentation")
        self.setModal(False)
        self.confirm_box: QMessageBox | None = None
        self.error_box: QMessageBox | None = None
        self.last_result = None
        self.job = None  # the export running or last run
        self.format_combo = QComboBox(self)
        for text, fmt, _suffix in EXPORT_CHOICES:
            self.format_combo.addItem(text, fmt)
        self.path_edit = QLineEdit(self)
        self.path_edit.setPlaceholderText("File to write")
        volume = controller.document.active_volume
        name = (volume.info.name if volume is not None and volume.info.name else "segmentation").replace(" ", "_")
        self.path_edit.setText(str(Path.home() / f"{name}_segmentation.nii.gz"))
        browse = QPushButton("Browse...", self)
        browse.clicked.connect(self._browse)
        self.format_combo.currentIndexChanged.connect(self._on_format)
        self.export_button = QPushButton("Export", self)
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(lambda: self.export())
        close = QPushButton("Close", self)
        close.clicked.connect(self.close)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Format", self.format_combo)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        form.addRow("File", row)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        self.deidentify_check = QCheckBox("Remove patient identifiers and file paths (DICOM SEG, provenance)", self)
        self.deidentify_check.setToolTip("Patient name, ID, birth date and similar are replaced; the source "
                                         "series UIDs are kept so the export still matches its scan.")
        layout.addWidget(self.deidentify_check)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(560, 160)

    @property
    def fmt(self) -> str:
        return self.format_combo.currentData()

    def set_format(self, fmt: str) -> None:
        index = self.format_combo.findData(fmt)
        if index < 0:
            raise ValueError(f"unknown export format {fmt!r}")
        self.format_combo.setCurrentIndex(index)

    def _on_format(self, _index: int) -> None:
        suffix = EXPORT_CHOICES[self.format_combo.currentIndex()][2]
        self.path_edit.setText(replace_suffix(self.path_edit.text().strip(), suffix))

    def _browse(self) -> None:
        suffix = EXPORT_CHOICES[self.format_combo.currentIndex()][2]
        path, _ = QFileDialog.getSaveFileName(self, "Export segmentation", self.path_edit.text(), f"*{suffix}",
                                              options=QFileDialog.Option.DontConfirmOverwrite)
        if path:
            self.path_edit.setText(replace_suffix(path, suffix) if not path.lower().endswith(suffix) else path)

    def export(self, path: str | None = None, overwrite: bool = False):
        """Start exporting to ``path`` (default: the text field); returns the job, or None.

        Asks first when the file exists (also when a multi-file export finds one of its
        files there); the outcome lands in ``last_result`` / ``status`` / ``error_box``.
        """
        path = (path or self.path_edit.text()).strip()
        self.path_edit.setText(path)
        if not path:
            self._error("Choose a file to write.")
            return None
        if Path(path).exists() and not overwrite:
            box = QMessageBox(QMessageBox.Icon.Question, "Replace file?",
                              f"{path} already exists. Replace it?",
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
            box.setDefaultButton(QMessageBox.StandardButton.No)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            self._confirm_replace(path, f"{path} already exists. Replace it?")
            return None
        options = self._export_options()
        self.status.setText(f"Exporting to {path} ...")
        self.job = self.controller.files.export(path, self.fmt, overwrite, on_success=self._exported,
                                                on_error=lambda exc: self._export_failed(path, exc), **options)
        return self.job

    def _export_options(self) -> dict:
        """Extra keyword arguments for ``export_segmentation`` from the dialog's options."""
        return {"deidentify": True} if self.deidentify_check.isChecked() else {}

    def _confirm_replace(self, path: str, question: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Question, "Replace file?", question,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(
            lambda result: self.export(path, overwrite=True) if result == QMessageBox.StandardButton.Yes else
            self.status.setText("Export cancelled: the file was kept.")
        )
        box.destroyed.connect(lambda *_: setattr(self, "confirm_box", None))
        self.confirm_box = box
        box.open()

    def _exported(self, result) -> None:
        self.last_result = result
        lines = [f"Wrote {len(result.paths)} file(s): " + ", ".join(p.name for p in result.paths[:5])
                 + (" ..." if len(result.paths) > 5 else "")]
        lines += [f"Warning: {w}" for w in result.warnings] + list(result.notes)
        self.status.setText("\n".join(lines))
        self.controller.message.emit(lines[0])

    def _export_failed(self, path: str, exc: BaseException) -> None:
        from medviewer.io.errors import OutputExistsError

        if isinstance(exc, OutputExistsError):  # one of several files (meshes) is already there
            where = getattr(exc, "path", None) or path
            self._confirm_replace(path, f"{where} already exists. Replace the exported files?")
            return
        log.info("export to %s failed: %s", path, exc)
        self._error(f"Export to {path} failed:\n{exc}")

    def _error(self, text: str) -> None:
        self.status.setText(text)
        box = QMessageBox(QMessageBox.Icon.Warning, "Export failed", text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.destroyed.connect(lambda *_: setattr(self, "error_box", None))
        self.error_box = box
        box.open()
