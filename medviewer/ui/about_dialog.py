"""Help > About: version, the library versions a bug report needs, model licences, notices.

The facts are gathered by plain functions (``component_versions``, ``model_licences``,
``third_party_notices``) so they are testable without a window; the dialog only lays
them out. torch is never imported here: its version comes from the package metadata,
which costs nothing and works when torch is absent.
"""

from __future__ import annotations

import html
import importlib.metadata as metadata
import platform
from dataclasses import dataclass

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

import medviewer
from medviewer.io.images import PICTURE_SUFFIXES, VOLUME_SUFFIXES
from medviewer.ui import theme

NOTICES_FILE = "THIRD_PARTY_NOTICES.md"
WEIGHTS_INCLUDED = "weights included"
WEIGHTS_NONE = "no weights of its own"
WEIGHTS_CHOSEN = "weights: the checkpoint you choose (under its authors' licence)"


@dataclass(frozen=True)
class ModelLicence:
    name: str
    version: str
    licence: str
    citation: str
    weights: str  # WEIGHTS_INCLUDED, WEIGHTS_NONE or WEIGHTS_CHOSEN

    @property
    def weights_bundled(self) -> bool:
        return self.weights == WEIGHTS_INCLUDED


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def component_versions() -> list[tuple[str, str]]:
    """(component, version) rows, in the order a bug report wants them."""
    try:
        from vtkmodules.vtkCommonCore import vtkVersion

        vtk_version = vtkVersion.GetVTKVersion()
    except ImportError:
        vtk_version = "not installed"
    return [
        ("medviewer", medviewer.__version__),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Qt", qVersion()),
        ("PySide6", pyside_version),
        ("VTK", vtk_version),
        ("torch", _distribution_version("torch")),
        ("numpy", _distribution_version("numpy")),
        ("SimpleITK", _distribution_version("SimpleITK")),
        ("pydicom", _distribution_version("pydicom")),
        ("Platform", f"{platform.system()} {platform.release()} {platform.machine()}"),
    ]


def model_licences(registry=None) -> list[ModelLicence]:
    """Licence and citation of every discovered model; bundled weights first."""
    if registry is None:
        from medviewer.ai.registry import ModelRegistry

        registry = ModelRegistry()
    rows = []
    for entry in registry.entries():
        info = entry.info
        if info is None:
            continue
        kind = info.checkpoint.kind
        weights = WEIGHTS_INCLUDED if kind in ("package_asset", "file") else WEIGHTS_NONE if kind == "none" else WEIGHTS_CHOSEN
        rows.append(ModelLicence(info.name, info.version, info.license or "not stated", info.citation, weights))
    return sorted(rows, key=lambda row: (not row.weights_bundled, row.name.lower()))


def third_party_notices() -> str:
    """The notices file shipped in resources/ (Markdown), or a line saying where it is missing."""
    path = medviewer.resource_path(NOTICES_FILE)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"The third-party notices file could not be read: {path} ({exc.strerror or exc})."


def _versions_html(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _models_html(rows: list[ModelLicence]) -> str:
    parts = []
    for row in rows:
        weights = html.escape(row.weights)
        citation = f"<br><i>Cite:</i> {html.escape(row.citation)}" if row.citation else ""
        parts.append(
            f"<p><b>{html.escape(row.name)}</b> {html.escape(row.version)}<br>"
            f"Licence: {html.escape(row.licence)} &mdash; {weights}{citation}</p>"
        )
    return "".join(parts) or "<p>No model plugins were found.</p>"


class AboutDialog(QDialog):
    """Three tabs: About (versions), Models (licences, citations), Third-party notices."""

    def __init__(self, parent: QWidget | None = None, registry=None):
        super().__init__(parent)
        self.setWindowTitle("About medviewer")
        self.setWindowIcon(theme.app_icon())
        self.resize(640, 560)
        self.versions = component_versions()
        self.models = model_licences(registry)

        header = QHBoxLayout()
        icon = QLabel(self)
        icon.setPixmap(theme.app_icon().pixmap(64, 64))
        self.title = title = QLabel(
            f"<h2>medviewer {html.escape(medviewer.__version__)}</h2>"
            "<p>View medical scans, segment them with local AI models, correct and export masks.<br>"
            f"Reads DICOM, {html.escape(' '.join(VOLUME_SUFFIXES))} and pictures "
            f"({html.escape(' '.join(PICTURE_SUFFIXES))}).<br>"
            "Licensed under Apache-2.0. <b>Not for diagnostic use.</b></p>",
            self,
        )
        title.setTextFormat(Qt.TextFormat.RichText)
        title.setWordWrap(True)
        header.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        header.addWidget(title, 1)

        self.tabs = QTabWidget(self)
        self.versions_view = self._browser(_versions_html(self.versions))
        self.models_view = self._browser(_models_html(self.models))
        self.notices_view = QTextBrowser(self)
        self.notices_view.setOpenExternalLinks(True)
        self.notices_view.setMarkdown(third_party_notices())
        self.tabs.addTab(self.versions_view, "Versions")
        self.tabs.addTab(self.models_view, "Models")
        self.tabs.addTab(self.notices_view, "Third-party notices")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        copy_button = buttons.addButton("Copy versions", QDialogButtonBox.ButtonRole.ActionRole)
        copy_button.setToolTip("Copy the versions above, e.g. into a bug report")
        copy_button.clicked.connect(self.copy_versions)
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)

    def _browser(self, content: str) -> QTextBrowser:
        browser = QTextBrowser(self)
        browser.setOpenExternalLinks(True)
        browser.setHtml(content)
        return browser

    def version_text(self) -> str:
        """The Versions tab as 'component: version' lines, ready for a bug report."""
        return "\n".join(f"{name}: {version}" for name, version in self.versions)

    def copy_versions(self) -> None:
        QGuiApplication.clipboard().setText(self.version_text())
